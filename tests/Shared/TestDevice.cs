using System.Runtime.InteropServices;
using Parrot.Tensors;
using Parrot.Tensors.Cpu;

namespace Parrot.Tests.Shared;

/// <summary>
/// A second device for tests, not the CPU backend instance: it owns its own memory (a storage of its own device
/// identity, <see cref="Device"/>) and computes with the CPU kernels, so a model moved there gives exactly the CPU's
/// numbers, while any op that receives a tensor of another device throws, naming both devices. A model that
/// leaves one input, mask, table or cache on the CPU fails loudly here, as it would on a GPU.
/// Test-only: registered through the internal <c>Backends.RegisterInstance</c>; users never see it.
/// </summary>
internal static class TestDevice
{
    /// <summary>The identity: a CUDA ordinal no test machine has, so the code paths for GPUs run.</summary>
    public static readonly Device Device = new(DeviceKind.Cuda, 9);

    private static readonly Lazy<HostDeviceBackend> Instance = new(() =>
    {
        var b = new HostDeviceBackend(Device);
        Backends.RegisterInstance(Device, b);
        return b;
    });

    /// <summary>Registers the device (once) and returns it.</summary>
    public static Device Get() { _ = Instance.Value; return Device; }

    /// <summary>The backend (for its counters).</summary>
    public static HostDeviceBackend Backend { get { _ = Instance.Value; return Instance.Value; } }
}

/// <summary>
/// One <see cref="HostDeviceBackend.Copy"/>: source and destination layouts, bytes written and read, who asked, and
/// whether a CPU kernel asked from inside (a composite such as attention backward, which a GPU runs as one kernel).
/// </summary>
internal sealed record CopyRecord(int[] SrcShape, long[] SrcStrides, DType SrcType, int[] DstShape, long[] DstStrides, DType DstType,
    long WrittenBytes, long ReadBytes, string Callers, bool InsideCpuKernel)
{
    public override string ToString() =>
        $"[{string.Join(",", SrcShape)}]/({string.Join(",", SrcStrides)}) {SrcType.Name()} -> [{string.Join(",", DstShape)}]/({string.Join(",", DstStrides)}) {DstType.Name()}: {Callers}";
}

/// <summary>Host memory that claims another device.</summary>
internal sealed unsafe class HostDeviceStorage : Storage
{
    private HostDeviceStorage(nint p, long bytes, Device device) : base(p, bytes, device) { }

    public static HostDeviceStorage Allocate(long bytes, bool zero, Device device)
    {
        var p = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
        if (zero) NativeMemory.Clear((void*)p, (nuint)Math.Max(bytes, 1));
        return new HostDeviceStorage(p, bytes, device);
    }

    protected override void Free(nint pointer)
    {
        if (pointer != 0) NativeMemory.AlignedFree((void*)pointer);
    }
}

/// <summary>
/// The CPU kernels behind a device check on every tensor argument. Like the CUDA backend it checks indices on the
/// device (<see cref="IDeferredIndexChecks"/>): the Tensor front-ends queue the check instead of reading the indices
/// back, and the error comes at the next device→host copy; meanwhile its index ops are memory-safe for any index
/// (a bad index reads row 0 here, where the GPU kernels give 0 or NaN: either way the error is thrown before the
/// value is read).
/// </summary>
internal sealed class HostDeviceBackend : IBackend, IDeviceTransfer, IDeferredIndexChecks
{
    private static readonly CpuBackend Cpu = CpuBackend.Instance;
    private long _ops, _transfers, _toDevice, _toHost, _toHostBytes, _allocated;

    public HostDeviceBackend(Device device)
    {
        Device = device;
        IndexChecks = new DeferredIndexChecks(this, device);
    }

    public Device Device { get; }

    public DeferredIndexChecks IndexChecks { get; }

    /// <summary>Device→host copies: each is a host wait on a GPU (reading a value back).</summary>
    public long DeviceToHost => Interlocked.Read(ref _toHost);

    /// <summary>Bytes of all device→host copies so far (a greedy decode step reads back ids, not logits).</summary>
    public long DeviceToHostBytes => Interlocked.Read(ref _toHostBytes);

    /// <summary>Ops computed here.</summary>
    public long Ops => Interlocked.Read(ref _ops);
    /// <summary>Host↔device copies.</summary>
    public long Transfers => Interlocked.Read(ref _transfers);
    /// <summary>Host→device copies (the ones a decode step should keep to its new token ids).</summary>
    public long HostToDevice => Interlocked.Read(ref _toDevice);
    /// <summary>Bytes allocated here so far.</summary>
    public long AllocatedBytes => Interlocked.Read(ref _allocated);

    /// <summary>When set, every op's name is appended (in order): what a step launches, by name.</summary>
    public List<string>? OpLog { get; set; }

    private void On(string op, params Tensor?[] tensors)
    {
        Interlocked.Increment(ref _ops);
        lock (this) OpLog?.Add(op);
        foreach (var t in tensors)
            if (t is not null && t.Device != Device)
                throw new InvalidOperationException($"{op}: a tensor {t.ShapeString()} {t.DType} is on {t.Device}, but this op computes on {Device}");
    }

    /// <summary>When set, every allocation's size is appended (in order): a captured step needs the same sequence each time.</summary>
    public List<long>? AllocationLog { get; set; }

    public Storage Allocate(long bytes, bool zero)
    {
        Interlocked.Add(ref _allocated, bytes);
        lock (this) AllocationLog?.Add(bytes);
        return HostDeviceStorage.Allocate(bytes, zero, Device);
    }

    public unsafe void Transfer(Tensor src, Tensor dst)
    {
        if (!src.IsContiguous || !dst.IsContiguous || src.DType != dst.DType || src.Count != dst.Count)
            throw new ArgumentException($"Transfer: {src} → {dst} must be contiguous, of one dtype and size");
        if (src.Device != Device && dst.Device != Device)
            throw new InvalidOperationException($"Transfer: neither {src.Device} nor {dst.Device} is {Device}");
        Interlocked.Increment(ref _transfers);
        if (dst.Device == Device && src.Device != Device) Interlocked.Increment(ref _toDevice);
        long bytes = src.Count * src.ElementSize;
        if (src.Device == Device && dst.Device != Device)
        {
            Interlocked.Increment(ref _toHost);
            Interlocked.Add(ref _toHostBytes, bytes);
        }
        Buffer.MemoryCopy((void*)src.DataPointer, (void*)dst.DataPointer, bytes, bytes);
        if (dst.Device != Device) IndexChecks.Verify(); // as the CUDA backend: a value read back first meets the verdicts
    }

    public unsafe void CheckIndices(Tensor index, long size, long? ignore, Tensor slots, int slot)
    {
        On("CheckIndices", index, slots);
        var at = (long*)slots.DataPointer + 2 * slot;
        long flat = 0;
        foreach (var v in Values(index))
        {
            if ((ulong)v >= (ulong)size && v != ignore && flat < at[0]) { at[0] = flat; at[1] = v; }
            flat++;
        }
    }

    /// <summary>The index values in C order, read in place (this device's memory is host memory).</summary>
    private static unsafe List<long> Values(Tensor index)
    {
        var values = new List<long>((int)index.Count);
        if (index.Count == 0) return values;
        var shape = index.Shape.ToArray();
        var strides = index.Strides.ToArray();
        var pos = new int[shape.Length];
        for (long i = 0; i < index.Count; i++)
        {
            long off = 0;
            for (int d = 0; d < shape.Length; d++) off += pos[d] * strides[d];
            values.Add(index.DType == DType.I64 ? ((long*)index.DataPointer)[off] : ((int*)index.DataPointer)[off]);
            for (int d = shape.Length - 1; d >= 0 && ++pos[d] == shape[d]; d--) pos[d] = 0;
        }
        return values;
    }

    /// <summary>
    /// <paramref name="index"/> itself when every value is in [0, size) or <paramref name="keep"/>; else a copy (on this
    /// device, contiguous) with the bad values replaced by <paramref name="replacement"/> and their C-order positions.
    /// </summary>
    private Tensor Safe(Tensor index, long size, long? keep, long replacement, out List<int> bad)
    {
        bad = [];
        var values = Values(index);
        for (int i = 0; i < values.Count; i++)
            if ((ulong)values[i] >= (ulong)size && values[i] != keep) { bad.Add(i); values[i] = replacement; }
        if (bad.Count == 0) return index;
        var copy = Tensor.Empty(index.Shape.ToArray(), DType.I64, Device);
        for (int i = 0; i < values.Count; i++) unsafe { ((long*)copy.DataPointer)[i] = values[i]; }
        return copy;
    }

    private Tensor Safe(Tensor index, long size) => Safe(index, size, null, 0, out _);

    public void Copy(Tensor src, Tensor dst)
    {
        On("Copy", src, dst);
        lock (this) CopyLog?.Add(new CopyRecord(src.Shape.ToArray(), src.Strides.ToArray(), src.DType, dst.Shape.ToArray(), dst.Strides.ToArray(), dst.DType,
            dst.Count * dst.ElementSize, src.Count * src.ElementSize, CopyCallers(out bool inside), inside));
        Cpu.Copy(src, dst);
    }

    /// <summary>
    /// When set, every <see cref="Copy"/> (a copy or cast kernel on a GPU: copy_cast, cast_*, or a device-to-device
    /// memcpy) is appended with its operands' layouts and the Parrot methods that asked for it: where a training step's
    /// copies come from.
    /// </summary>
    public List<CopyRecord>? CopyLog { get; set; }

    /// <summary>The first few Parrot.* frames above the backend (the op front-end, then the layer that called it).</summary>
    private static string CopyCallers(out bool insideCpuKernel)
    {
        var frames = new System.Diagnostics.StackTrace(2, false).GetFrames();
        var names = new List<string>();
        insideCpuKernel = frames.Any(f => f.GetMethod()?.DeclaringType == typeof(CpuBackend));
        foreach (var f in frames)
        {
            var m = f.GetMethod();
            var type = m?.DeclaringType;
            if (type?.Namespace is not string ns || !ns.StartsWith("Parrot.", StringComparison.Ordinal) || ns.StartsWith("Parrot.Tests", StringComparison.Ordinal)) continue;
            names.Add($"{type.Name}.{m!.Name}");
            if (names.Count == 6) break;
        }
        return string.Join(" < ", names);
    }
    public void Fill(Tensor dst, double value) { On("Fill", dst); Cpu.Fill(dst, value); }
    public void Unary(UnaryOp op, Tensor x, Tensor y) { On($"Unary {op}", x, y); Cpu.Unary(op, x, y); }
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y) { On($"Binary {op}", a, b, y); Cpu.Binary(op, a, b, y); }
    public void Where(Tensor cond, Tensor a, Tensor b, Tensor y) { On("Where", cond, a, b, y); Cpu.Where(cond, a, b, y); }
    public void Random(Tensor dst, RandomKind kind, ulong seed, double p0, double p1) { On("Random", dst); Cpu.Random(dst, kind, seed, p0, p1); }
    // As a GPU kernel would, this reads and advances the counter in this device's memory (no transfer is counted).
    public void RandomAt(Tensor dst, RandomKind kind, ulong baseSeed, Tensor counter, double p0, double p1)
    { On("RandomAt", dst, counter); Cpu.RandomAt(dst, kind, baseSeed, counter, p0, p1); }
    public void Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, int queryOffset, double scale, Tensor output, Tensor? logSumExp)
    { On(logSumExp is null ? "Attention" : "Attention+lse", q, k, v, mask, output, logSumExp); Cpu.Attention(q, k, v, mask, causal, queryOffset, scale, output, logSumExp); }
    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor dO, Tensor logSumExp, Tensor? mask, bool causal, int queryOffset, double scale, Tensor? dq, Tensor? dk, Tensor? dv)
    { On("AttentionBackward", q, k, v, o, dO, logSumExp, mask, dq, dk, dv); Cpu.AttentionBackward(q, k, v, o, dO, logSumExp, mask, causal, queryOffset, scale, dq, dk, dv); }
    // As a GPU kernel would, these read the positions in this device's memory (no transfer is counted).
    public void RopeAppendAt(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, Tensor positions, Tensor kCache, Tensor vCache, Tensor qRot)
    { On("RopeAppendAt", q, k, v, cos, sin, positions, kCache, vCache, qRot); Cpu.RopeAppendAt(q, k, v, cos, sin, positions, kCache, vCache, qRot); }
    public void AttentionAt(Tensor q, Tensor kCache, Tensor vCache, Tensor positions, double scale, Tensor output)
    { On("AttentionAt", q, kCache, vCache, positions, output); Cpu.AttentionAt(q, kCache, vCache, positions, scale, output); }
    public void IndexSelect(Tensor x, int axis, Tensor index, Tensor y) { On("IndexSelect", x, index, y); Cpu.IndexSelect(x, axis, Safe(index, x.Shape[axis]), y); }
    public void Gather(Tensor x, int axis, Tensor index, Tensor y) { On("Gather", x, index, y); Cpu.Gather(x, axis, Safe(index, x.Shape[axis]), y); }
    public void ScatterAdd(Tensor dst, int axis, Tensor index, Tensor src) { On("ScatterAdd", dst, index, src); Cpu.ScatterAdd(dst, axis, Safe(index, dst.Shape[axis]), src); }
    // Straight to the CPU kernel, which refuses a repeated or out-of-range index where the GPU kernel skips or races: no
    // front-end queues a check for this op, so here a caller that breaks the contract fails at the call.
    public void IndexCopy(Tensor dst, int axis, Tensor index, Tensor src) { On("IndexCopy", dst, index, src); Cpu.IndexCopy(dst, axis, index, src); }
    public void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y) { On("Rope", x, cos, sin, y); Cpu.Rope(x, cos, sin, y); }
    public void MatMul(Tensor a, Tensor b, Tensor c) { On("MatMul", a, b, c); Cpu.MatMul(a, b, c); }
    public void Softmax(Tensor x, Tensor y, bool log) { On("Softmax", x, y); Cpu.Softmax(x, y, log); }
    public void LayerNorm(Tensor x, Tensor? weight, Tensor? bias, double eps, Tensor y) { On("LayerNorm", x, weight, bias, y); Cpu.LayerNorm(x, weight, bias, eps, y); }
    public void RmsNorm(Tensor x, Tensor weight, double eps, Tensor y) { On("RmsNorm", x, weight, y); Cpu.RmsNorm(x, weight, eps, y); }
    // One op, as the one kernel a GPU launches for it (the CPU kernels compute it as the add then the norm).
    public void AddRmsNorm(Tensor x, Tensor residual, Tensor weight, double eps, Tensor sum, Tensor y)
    { On("AddRmsNorm", x, residual, weight, sum, y); Cpu.AddRmsNorm(x, residual, weight, eps, sum, y); }
    public void AddRmsNormLinear(Tensor x, Tensor residual, Tensor normWeight, double eps, Tensor weight, Tensor? bias, Tensor? upWeight, Tensor sum, Tensor y)
    {
        On("AddRmsNormLinear", x, residual, normWeight, weight, bias, upWeight, sum, y);
        Cpu.AddRmsNormLinear(x, residual, normWeight, eps, weight, bias, upWeight, sum, y);
    }
    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor lossPerRow, Tensor? logSumExp)
    {
        On("CrossEntropy", logits, targets, lossPerRow, logSumExp);
        // As the GPU kernel: a bad target's row gets NaN instead of an exception (the deferred check reports it).
        Cpu.CrossEntropy(logits, Safe(targets, logits.Shape[1], ignoreIndex, ignoreIndex, out var bad), ignoreIndex, lossPerRow, logSumExp);
        foreach (var row in bad) { using var r = lossPerRow.Narrow(0, row, 1); Cpu.Fill(r, double.NaN); }
    }
    public void AdamW(Tensor param, Tensor grad, Tensor m, Tensor v, AdamWStep step) { On("AdamW", param, grad, m, v); Cpu.AdamW(param, grad, m, v, step); }
    public void Reduce(ReduceOp op, Tensor x, int[] axes, Tensor y) { On($"Reduce {op}", x, y); Cpu.Reduce(op, x, axes, y); }
    public void ArgReduce(ArgReduceOp op, Tensor x, int axis, Tensor y) { On($"ArgReduce {op}", x, y); Cpu.ArgReduce(op, x, axis, y); }
    public void TopK(Tensor x, int k, Tensor values, Tensor indices) { On("TopK", x, values, indices); Cpu.TopK(x, k, values, indices); }
    public void RmsNormBackward(Tensor x, Tensor weight, double eps, Tensor dy, Tensor dx, Tensor? dweight)
    { On("RmsNormBackward", x, weight, dy, dx, dweight); Cpu.RmsNormBackward(x, weight, eps, dy, dx, dweight); }
    public void LayerNormBackward(Tensor x, Tensor? weight, double eps, Tensor dy, Tensor dx, Tensor? dweight, Tensor? dbias)
    { On("LayerNormBackward", x, weight, dy, dx, dweight, dbias); Cpu.LayerNormBackward(x, weight, eps, dy, dx, dweight, dbias); }
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log) { On("SoftmaxBackward", y, dy, dx); Cpu.SoftmaxBackward(y, dy, dx, log); }
    public void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor logSumExp, Tensor dloss, Tensor dlogits)
    { On("CrossEntropyBackward", logits, targets, logSumExp, dloss, dlogits); Cpu.CrossEntropyBackward(logits, Safe(targets, logits.Shape[1], ignoreIndex, ignoreIndex, out _), ignoreIndex, logSumExp, dloss, dlogits); }
    public void EmbeddingBackward(Tensor ids, Tensor dy, Tensor dweight) { On("EmbeddingBackward", ids, dy, dweight); Cpu.EmbeddingBackward(Safe(ids, dweight.Shape[0]), dy, dweight); }
    public void SwiGlu(Tensor gate, Tensor up, Tensor y) { On("SwiGlu", gate, up, y); Cpu.SwiGlu(gate, up, y); }
    public void SwiGluBackward(Tensor dy, Tensor gate, Tensor up, Tensor dgate, Tensor dup) { On("SwiGluBackward", dy, gate, up, dgate, dup); Cpu.SwiGluBackward(dy, gate, up, dgate, dup); }
}
