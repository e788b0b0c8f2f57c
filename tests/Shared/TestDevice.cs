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

/// <summary>The CPU kernels behind a device check on every tensor argument.</summary>
internal sealed class HostDeviceBackend(Device device) : IBackend, IDeviceTransfer
{
    private static readonly CpuBackend Cpu = CpuBackend.Instance;
    private long _ops, _transfers, _toDevice, _allocated;

    public Device Device { get; } = device;

    /// <summary>Ops computed here.</summary>
    public long Ops => Interlocked.Read(ref _ops);
    /// <summary>Host↔device copies.</summary>
    public long Transfers => Interlocked.Read(ref _transfers);
    /// <summary>Host→device copies (the ones a decode step should keep to its new token ids).</summary>
    public long HostToDevice => Interlocked.Read(ref _toDevice);
    /// <summary>Bytes allocated here so far.</summary>
    public long AllocatedBytes => Interlocked.Read(ref _allocated);

    private void On(string op, params Tensor?[] tensors)
    {
        Interlocked.Increment(ref _ops);
        foreach (var t in tensors)
            if (t is not null && t.Device != Device)
                throw new InvalidOperationException($"{op}: a tensor {t.ShapeString()} {t.DType} is on {t.Device}, but this op computes on {Device}");
    }

    public Storage Allocate(long bytes, bool zero)
    {
        Interlocked.Add(ref _allocated, bytes);
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
        Buffer.MemoryCopy((void*)src.DataPointer, (void*)dst.DataPointer, bytes, bytes);
    }

    public void Copy(Tensor src, Tensor dst) { On("Copy", src, dst); Cpu.Copy(src, dst); }
    public void Fill(Tensor dst, double value) { On("Fill", dst); Cpu.Fill(dst, value); }
    public void Unary(UnaryOp op, Tensor x, Tensor y) { On($"Unary {op}", x, y); Cpu.Unary(op, x, y); }
    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y) { On($"Binary {op}", a, b, y); Cpu.Binary(op, a, b, y); }
    public void Where(Tensor cond, Tensor a, Tensor b, Tensor y) { On("Where", cond, a, b, y); Cpu.Where(cond, a, b, y); }
    public void Random(Tensor dst, RandomKind kind, ulong seed, double p0, double p1) { On("Random", dst); Cpu.Random(dst, kind, seed, p0, p1); }
    public void Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, int queryOffset, double scale, Tensor output, Tensor? logSumExp)
    { On("Attention", q, k, v, mask, output, logSumExp); Cpu.Attention(q, k, v, mask, causal, queryOffset, scale, output, logSumExp); }
    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor dO, Tensor logSumExp, Tensor? mask, bool causal, int queryOffset, double scale, Tensor? dq, Tensor? dk, Tensor? dv)
    { On("AttentionBackward", q, k, v, o, dO, logSumExp, mask, dq, dk, dv); Cpu.AttentionBackward(q, k, v, o, dO, logSumExp, mask, causal, queryOffset, scale, dq, dk, dv); }
    public void IndexSelect(Tensor x, int axis, Tensor index, Tensor y) { On("IndexSelect", x, index, y); Cpu.IndexSelect(x, axis, index, y); }
    public void Gather(Tensor x, int axis, Tensor index, Tensor y) { On("Gather", x, index, y); Cpu.Gather(x, axis, index, y); }
    public void ScatterAdd(Tensor dst, int axis, Tensor index, Tensor src) { On("ScatterAdd", dst, index, src); Cpu.ScatterAdd(dst, axis, index, src); }
    public void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y) { On("Rope", x, cos, sin, y); Cpu.Rope(x, cos, sin, y); }
    public void MatMul(Tensor a, Tensor b, Tensor c) { On("MatMul", a, b, c); Cpu.MatMul(a, b, c); }
    public void Softmax(Tensor x, Tensor y, bool log) { On("Softmax", x, y); Cpu.Softmax(x, y, log); }
    public void LayerNorm(Tensor x, Tensor? weight, Tensor? bias, double eps, Tensor y) { On("LayerNorm", x, weight, bias, y); Cpu.LayerNorm(x, weight, bias, eps, y); }
    public void RmsNorm(Tensor x, Tensor weight, double eps, Tensor y) { On("RmsNorm", x, weight, y); Cpu.RmsNorm(x, weight, eps, y); }
    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor lossPerRow, Tensor? logSumExp)
    { On("CrossEntropy", logits, targets, lossPerRow, logSumExp); Cpu.CrossEntropy(logits, targets, ignoreIndex, lossPerRow, logSumExp); }
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
    { On("CrossEntropyBackward", logits, targets, logSumExp, dloss, dlogits); Cpu.CrossEntropyBackward(logits, targets, ignoreIndex, logSumExp, dloss, dlogits); }
    public void EmbeddingBackward(Tensor ids, Tensor dy, Tensor dweight) { On("EmbeddingBackward", ids, dy, dweight); Cpu.EmbeddingBackward(ids, dy, dweight); }
    public void SwiGlu(Tensor gate, Tensor up, Tensor y) { On("SwiGlu", gate, up, y); Cpu.SwiGlu(gate, up, y); }
    public void SwiGluBackward(Tensor dy, Tensor gate, Tensor up, Tensor dgate, Tensor dup) { On("SwiGluBackward", dy, gate, up, dgate, dup); Cpu.SwiGluBackward(dy, gate, up, dgate, dup); }
}
