using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// Random on the device (native/random.cu on a GPU) against the CPU backend's draw of the same seed: uniform bit for
/// bit in every dtype (also in a tensor of more than 2³² elements on a GPU), normal within a few ulp, dropout's masks (on a GPU also replayed from a CUDA graph),
/// and a captured draw replayed. Each case draws in every dtype itself and throws on the first difference (naming
/// dtype, index and bits); what it returns is the same on every device, for the runner's comparison. The input only
/// carries the device.
/// </summary>
internal static class SelfTestRandomCases
{
    private const int N = (1 << 20) + 3; // odd: normal's last pair is half

    internal static IEnumerable<SelfTestCase> All()
    {
        static Tensor[] OnDevice(Random _, DType t) => [Tensor.Zeros([1], t)];
        yield return new("random uniform on the device = CPU (bits)", OnDevice, UniformBits, Exact: true, Only: [DType.F32]);
        yield return new("random normal on the device = CPU (ulp)", OnDevice, NormalUlps, Only: [DType.F32]);
        yield return new("dropout train step on the device = CPU mask", (r, t) => [Normal(r, t, 64, 257)], DropoutStep);
        yield return new("cuda graph replay = eager (random)", OnDevice, ReplayedRandom, Exact: true, Only: [DType.F32]);
    }

    /// <summary>Uniform parameters: [−2, 3), or [−300, 300) where the dtype is an integer (so it sees its range).</summary>
    private static (double Low, double High) UniformRange(DType t) => t.IsFloat() ? (-2, 3) : (-300, 300);

    /// <summary>
    /// Every dtype, N elements, seed 42 on the device and on the CPU: the same bytes. On a GPU also a u8 tensor of
    /// 2³² + 2¹⁶ elements (4 GiB on the device, and drawn again in host memory): the same bytes in the rows around
    /// flat index 2³¹, 2³² and the last row. Returns the float64 draw (the same everywhere when it passes).
    /// </summary>
    private static Tensor UniformBits(Tensor[] x)
    {
        var dev = x[0].Device;
        foreach (var t in AllDTypes)
        {
            var (lo, hi) = UniformRange(t);
            using var d = Draw(dev, t, RandomKind.Uniform, 42, lo, hi, [N]);
            using var c = Draw(Device.Cpu, t, RandomKind.Uniform, 42, lo, hi, [N]);
            SameBytes(d, c, $"uniform {t.Name()}", 0);
        }
        if (x[0].Backend is CudaBackend) UniformPast2To32(dev);
        return Draw(dev, DType.F64, RandomKind.Uniform, 42, -2, 3, [N]);
    }

    private static void UniformPast2To32(Device dev)
    {
        int[] shape = [(1 << 16) + 1, 1 << 16]; // rows of 2¹⁶: row 2¹⁵ starts at 2³¹, row 2¹⁶ at 2³²
        using var d = Draw(dev, DType.U8, RandomKind.Uniform, 7, 0, 256, shape);
        using var c = Draw(Device.Cpu, DType.U8, RandomKind.Uniform, 7, 0, 256, shape);
        foreach (int row in new[] { (1 << 15) - 1, (1 << 16) - 1 })
        {
            using var dw = d.Narrow(0, row, 2);
            using var cw = c.Narrow(0, row, 2);
            SameBytes(dw, cw, "uniform u8 [2^16 + 1, 2^16]", (long)row << 16);
        }
    }

    /// <summary>
    /// float64 normal(0, 1), N elements, seed 9: within 4 ulp of the CPU's (CUDA's log and sincos against glibc's log,
    /// cos and sin). Every other dtype, normal(1.5, 2) (std 200 for integers): each stored value the CPU's or its neighbour
    /// (one step of the dtype), and at most 2 neighbours in all (a double within a few ulp of a rounding boundary: none
    /// in 2²² draws on the emulator). Returns the float64 draw.
    /// </summary>
    private static Tensor NormalUlps(Tensor[] x)
    {
        var dev = x[0].Device;
        var d64 = Draw(dev, DType.F64, RandomKind.Normal, 9, 0, 1, [N]);
        using (var c64 = Draw(Device.Cpu, DType.F64, RandomKind.Normal, 9, 0, 1, [N]))
        {
            double[] a = d64.ToArray<double>(), b = c64.ToArray<double>();
            long worst = 0; int at = 0;
            for (int i = 0; i < a.Length; i++)
            {
                long ulps = Math.Abs(BitConverter.DoubleToInt64Bits(a[i]) - BitConverter.DoubleToInt64Bits(b[i]));
                if (Math.Sign(a[i]) != Math.Sign(b[i]) && a[i] != b[i]) ulps = long.MaxValue;
                if (ulps > worst) (worst, at) = (ulps, i);
            }
            if (worst > 4)
            {
                d64.Dispose();
                throw new InvalidOperationException($"normal f64: element {at} is {a[at]:R} on the device, {b[at]:R} on the CPU ({worst} ulp apart; at most 4)");
            }
        }
        long neighbours = 0;
        foreach (var t in AllDTypes.Where(t => t != DType.F64))
        {
            double std = t.IsFloat() ? 2 : 200;
            using var d = Draw(dev, t, RandomKind.Normal, 9, 1.5, std, [N]);
            using var c = Draw(Device.Cpu, t, RandomKind.Normal, 9, 1.5, std, [N]);
            byte[] db = Bytes(d), cb = Bytes(c);
            int size = t.SizeOf();
            for (int i = 0; i < N; i++)
            {
                ulong u = Element(db, i, size), v = Element(cb, i, size);
                if (u == v) continue;
                if ((u > v ? u - v : v - u) != 1 || ++neighbours > 2)
                {
                    d64.Dispose();
                    throw new InvalidOperationException($"normal {t.Name()}: element {i} has bits {u:X} on the device, {v:X} on the CPU " +
                                                        $"({neighbours} neighbours so far; at most 2 values one step apart)");
                }
            }
        }
        return d64;
    }

    /// <summary>
    /// Dropout(0.3) in training, forward and backward (call 0), then three forward calls (1, 2, 3): on a GPU the forward
    /// is captured once in a CUDA graph after call 0 and replayed three times (the mask's seed is read from the module's
    /// device counter, so each replay draws the next call's mask); elsewhere the three calls run eagerly. On a GPU each
    /// replay's output must equal, bit for bit, eager call 1, 2, 3 of a second Dropout on the device (a graph that
    /// replayed one mask fails at replay 2), and the counter must read 4 after them. On every device other than the CPU,
    /// the dropped elements of all four calls (zeros of the outputs and of call 0's gradient) are the CPU's, exactly (one
    /// differing element would hide in the bf16 tolerance). On every device no call repeats the previous call's mask.
    /// Returns call 0's output and gradient and calls 1–3's outputs.
    /// </summary>
    private static Tensor DropoutStep(Tensor[] x)
    {
        using var scope = TensorScope.Begin();
        using var drop = new Dropout(0.3, seed: 5); // frees its device counter
        var outputs = DropoutCalls(drop, x[0], x[0].Backend as CudaBackend);
        // Each call its own mask (a counter that did not advance, or a graph replaying one mask, repeats it).
        var dropped = outputs.Skip(1).Select(t => t.ToDoubleArray().Select(v => v == 0).ToArray()).ToArray();
        for (int k = 1; k < dropped.Length; k++)
            if (dropped[k].AsSpan().SequenceEqual(dropped[k - 1]))
                throw new InvalidOperationException($"dropout: calls {k - 1} and {k} dropped the same elements (the mask did not change)");
        if (x[0].Device.Kind != DeviceKind.Cpu)
        {
            using var host = x[0].To(Device.Cpu);
            using var cpuDrop = new Dropout(0.3, seed: 5);
            var cpu = DropoutCalls(cpuDrop, host, null);
            string[] what = ["call 0's gradient", "call 0", "call 1", "call 2", "call 3"];
            for (int k = 0; k < outputs.Length; k++)
            {
                double[] a = outputs[k].ToDoubleArray(), b = cpu[k].ToDoubleArray();
                for (int i = 0; i < a.Length; i++)
                    if ((a[i] == 0) != (b[i] == 0))
                        throw new InvalidOperationException($"dropout {what[k]}: element {i} is {(a[i] == 0 ? "dropped" : "kept")} on the device, {(b[i] == 0 ? "dropped" : "kept")} on the CPU");
            }
        }
        if (x[0].Backend is CudaBackend)
        {
            // The replays against eager calls 1–3 on the device, bit for bit, and the counter they advanced.
            using var eagerDrop = new Dropout(0.3, seed: 5);
            var eager = DropoutCalls(eagerDrop, x[0], null);
            for (int k = 2; k < outputs.Length; k++)
            {
                byte[] r = Bytes(outputs[k]), e = Bytes(eager[k]);
                int size = outputs[k].DType.SizeOf();
                for (int i = 0; i < r.Length / size; i++)
                    if (Element(r, i, size) != Element(e, i, size))
                        throw new InvalidOperationException($"dropout: replay {k - 1} of the captured call has bits {Element(r, i, size):X} at element {i}, eager call {k - 1} {Element(e, i, size):X}");
            }
            if (drop.Calls != 4) throw new InvalidOperationException($"dropout: the counter reads {drop.Calls} after call 0 and three replays, not 4");
        }
        return scope.Keep(Tensor.Concat(0, [.. outputs.Select(t => t.Reshape(-1))]));
    }

    /// <summary>
    /// Call 0 forward and backward, then calls 1–3 forward: replays of one captured forward where
    /// <paramref name="cuda"/> is given, eager calls otherwise. Returns [gradient of call 0, outputs of calls 0–3].
    /// </summary>
    private static Tensor[] DropoutCalls(Dropout drop, Tensor x, CudaBackend? cuda)
    {
        var v = new Variable(x, requiresGrad: true);
        var y = drop.Forward(v);
        y.Sum().Backward();
        var results = new List<Tensor> { v.Grad!, y.Value };
        var input = new Variable(x);
        if (cuda is null)
        {
            for (int k = 1; k <= 3; k++) results.Add(drop.Forward(input).Value);
            return [.. results];
        }
        // The output buffer lives outside the graph; the step's temporaries come from (and go back to) its pool.
        var output = Tensor.Empty(x.Shape, x.DType, x.Device);
        output.CopyFrom(y.Value); // the step's one op call 0 did not run: made ready eagerly (a capture cannot compile)
        void Step()
        {
            using var inner = TensorScope.Begin();
            output.CopyFrom(drop.Forward(input).Value);
        }
        using var graph = cuda.Capture(Step); // records call 1; runs nothing
        for (int k = 1; k <= 3; k++)
        {
            graph.Replay();
            results.Add(output.Clone());
        }
        return [.. results];
    }

    /// <summary>
    /// On a GPU: a uniform and a normal draw (f32, N elements) captured in a CUDA graph (the host round trip Random
    /// used to make would fail the capture), replayed into buffers overwritten after the capture: the eager draws'
    /// bits. Elsewhere the eager draws. Returns the uniform one (the CPU's bits; normal's may differ by an ulp).
    /// </summary>
    private static Tensor ReplayedRandom(Tensor[] x)
    {
        var dev = x[0].Device;
        using var u = Tensor.Empty([N], DType.F32, dev);
        using var n = Tensor.Empty([N], DType.F32, dev);
        void Step()
        {
            u.Backend.Random(u, RandomKind.Uniform, 3, -1, 1);
            n.Backend.Random(n, RandomKind.Normal, 4, 0, 1);
        }
        if (x[0].Backend is CudaBackend cuda)
        {
            Step(); // kernels compiled before the capture
            using var eagerU = u.Clone();
            using var eagerN = n.Clone();
            using var graph = cuda.Capture(Step);
            u.Backend.Fill(u, 0);
            n.Backend.Fill(n, 0);
            graph.Replay();
            SameBytes(u, eagerU, "replayed uniform", 0);
            SameBytes(n, eagerN, "replayed normal", 0);
        }
        else Step();
        return u.Clone();
    }

    private static readonly DType[] AllDTypes = Enum.GetValues<DType>();

    private static Tensor Draw(Device device, DType t, RandomKind kind, ulong seed, double p0, double p1, int[] shape)
    {
        var r = Tensor.Empty(shape, t, device);
        r.Backend.Random(r, kind, seed, p0, p1);
        return r;
    }

    /// <summary>Throws at the first element whose bytes differ; <paramref name="first"/> is the first element's flat index in the draw.</summary>
    private static void SameBytes(Tensor device, Tensor cpu, string what, long first)
    {
        byte[] a = Bytes(device), b = Bytes(cpu);
        int size = device.DType.SizeOf();
        for (int i = 0; i < a.Length / size; i++)
            if (Element(a, i, size) != Element(b, i, size))
                throw new InvalidOperationException($"{what}: element {first + i} has bits {Element(a, i, size):X} on the device, {Element(b, i, size):X} on the CPU");
    }

    private static unsafe byte[] Bytes(Tensor t)
    {
        using var host = t.Device.Kind == DeviceKind.Cpu ? t.Contiguous() : t.To(Device.Cpu);
        return new ReadOnlySpan<byte>((void*)host.DataPointer, checked((int)(host.Count * host.DType.SizeOf()))).ToArray();
    }

    private static ulong Element(byte[] b, int i, int size) => size switch
    {
        8 => BitConverter.ToUInt64(b, i * 8),
        4 => BitConverter.ToUInt32(b, i * 4),
        2 => BitConverter.ToUInt16(b, i * 2),
        _ => b[i],
    };
}
