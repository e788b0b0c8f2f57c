using Parrot.Autograd;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// The deterministic CUDA scatter-add (native/indexing.cu: one thread per fiber for a short axis, else a counting sort
/// by key and one thread per key and vector element) and Gather's backward, which runs through it: off the CPU the
/// result's bits must be the CPU backend's (each destination element adds its contributions in ascending order along
/// the axis, rounded to the dtype at every addition), else the case throws naming the first element that differs. The
/// error against float64 is loose where 16-bit sums of ~1400 terms are rounded at every step; the bits are the check.
/// Also the index copy (index_copy_, the sampler's way of putting penalised values into its float64 row), exact.
/// </summary>
internal static class SelfTestScatterCases
{
    private static readonly DType[] Floats = [DType.F32, DType.BF16, DType.F16, DType.F64];

    internal static IEnumerable<SelfTestCase> All()
    {
        // [2000, 48] positions into 64 rows, 70 % of each column at row 5: the sorted path, the hot keys by compaction.
        yield return new("scatter add, hot index 70% (bit-exact vs CPU)",
            (r, t) => [Normal(r, t, 64, 48), Hot(r, 64, 2000, 48), Normal(r, t, 2000, 48)],
            x => SameBitsAsCpu(x, c => c[0].ScatterAdd(0, c[1], c[2]), "scatter add, hot index"), Tolerance: 0.1, Only: Floats);
        // An embedding-like column of ids [4000, 1] expanded to [4000, 64]: one group, a vector of 64 per key.
        yield return new("scatter add, expanded ids hot 70% (bit-exact vs CPU)",
            (r, t) => [Normal(r, t, 500, 64), HotIndices(r, 500, 4000, 17), Normal(r, t, 4000, 64)],
            x => SameBitsAsCpu(x, c =>
            {
                using var column = c[1].Reshape(4000, 1);
                using var ids = column.Expand(4000, 64);
                return c[0].ScatterAdd(0, ids, c[2]);
            }, "scatter add, expanded ids"), Tolerance: 0.1, Only: Floats);
        // A short axis (K 12 ≤ 32: one thread per fiber) along the middle of three dims, src a transposed view.
        yield return new("scatter add, short axis 1 of 3 (bit-exact vs CPU)",
            (r, t) => [Normal(r, t, 30, 20, 7), Indices(r, 20, 30, 12, 7), Normal(r, t, 30, 7, 12)],
            x => SameBitsAsCpu(x, c =>
            {
                using var src = c[2].Transpose(1, 2);
                return c[0].ScatterAdd(1, c[1], src);
            }, "scatter add, short axis"), Only: Floats);
        // Gather forward and backward (its rule scatters the gradient into zeros): x [40, 300], 70 % of each row's 200
        // picks at column 7; y.Backward(w) so the scattered gradient is w itself on both devices.
        yield return new("gather fwd+bwd, hot index 70% (bit-exact vs CPU)",
            (r, t) => [Normal(r, t, 40, 300), Hot(r, 300, 40, 200, axis: 1), Normal(r, t, 40, 200)],
            x => SameBitsAsCpu(x, GatherBothWays, "gather fwd+bwd"), Tolerance: 0.1, Only: Floats);
        // Integers (exact on any path): int32 wrapping, int64 and uint8 wrapping, sorted and walked.
        yield return new("scatter add int32/int64/u8 (bit-exact vs CPU)",
            (r, _) => [Ints(r, DType.I32, 50, 16), Hot(r, 50, 300, 16), Ints(r, DType.I32, 300, 16), Ints(r, DType.I64, 9, 4), Indices(r, 9, 20, 4), Ints(r, DType.I64, 20, 4),
                       Ints(r, DType.U8, 50, 16), Ints(r, DType.U8, 300, 16)],
            x => SameBitsAsCpu(x, c =>
            {
                using var a = c[0].ScatterAdd(0, c[1], c[2]);
                using var b = c[3].ScatterAdd(0, c[4], c[5]);
                using var u = c[6].ScatterAdd(0, c[1], c[7]);
                using var fa = a.To(DType.F64);
                using var fb = b.To(DType.F64);
                using var fu = u.To(DType.F64);
                using var ra = fa.Reshape(-1);
                using var rb = fb.Reshape(-1);
                using var ru = fu.Reshape(-1);
                return Tensor.Concat(0, ra, rb, ru);
            }, "scatter add, integers"), Exact: true, Only: [DType.F32]);
        // Index copy (native/indexing.cu's index_copy, one launch, element bits): the sampler's penalised chunk sums'
        // use — 300 distinct ids, 0 and the last among them, into row 2 of [4, 151936] rows —, every other of those ids
        // (a strided index) from every other value (a strided src) into row 1, whole rows along axis 0 of a [50, 33]
        // table from a transposed src with int32 ids, and the same ids along axis 1 of a transposed table (a dst whose
        // strides are not C order).
        yield return new("index copy, ids into a row, rows into a table (bit-exact vs CPU)",
            (r, t) => [Normal(r, t, 4, 151_936), DistinctIds(r, 151_936, 300, DType.I64), Normal(r, t, 1, 300),
                       Normal(r, t, 50, 33), DistinctIds(r, 50, 20, DType.I32), Normal(r, t, 33, 20)],
            x => SameBitsAsCpu(x, IndexCopyBoth, "index copy"), Exact: true, Only: Floats);
    }

    /// <summary>
    /// Copies of c[0] and c[3] with IndexCopy: into row 2 of the first (ids c[1], values c[2]) and row 1 (every other
    /// id and value), rows of the second (ids c[4], values c[5]ᵀ) and, in a second copy of c[3] seen transposed,
    /// columns of that view (ids c[4], values c[5]); flattened and joined.
    /// </summary>
    private static Tensor IndexCopyBoth(Tensor[] c)
    {
        using var scope = TensorScope.Begin();
        var rows = c[0].Clone();
        rows.Backend.IndexCopy(rows.Narrow(0, 2, 1), 1, c[1], c[2]);
        rows.Backend.IndexCopy(rows.Narrow(0, 1, 1), 1, c[1].Slice(0, 0, null, 2), c[2].Slice(1, 0, null, 2));
        var table = c[3].Clone();
        table.Backend.IndexCopy(table, 0, c[4], c[5].Transpose(0, 1));
        var stored = c[3].Clone();
        stored.Backend.IndexCopy(stored.Transpose(0, 1), 1, c[4], c[5]);
        return scope.Keep(Tensor.Concat(0, rows.Reshape(-1), table.Reshape(-1), stored.Reshape(-1)));
    }

    /// <summary><paramref name="n"/> distinct ids of [0, max) in a random order, the first 0 and the second max − 1, as <paramref name="dtype"/>.</summary>
    private static Tensor DistinctIds(Random r, int max, int n, DType dtype)
    {
        var all = Enumerable.Range(1, max - 2).Select(i => (long)i).ToArray();
        r.Shuffle(all);
        long[] ids = [0, max - 1, .. all[..(n - 2)]];
        using var l = Tensor.FromArray(ids, n);
        return l.To(dtype);
    }

    /// <summary>
    /// Bench rows "scatter add …": the deterministic kernels against the atomic one (PARROT_DETERMINISTIC_SCATTER=0's
    /// path) in bf16 on two shapes — Gather's backward of an embedding-like lookup (4096 uniform ids expanded over 896,
    /// scattered into [151936, 896]: one group, vector width 896) and a materialised index ([4096, 896] uniform over 512
    /// rows: 896 groups of 4096 positions). One call between events; the time includes the sort's temporaries.
    /// </summary>
    internal static void Bench(CudaBackend cuda, Device device, Action<DeviceBench.Result> add)
    {
        var r = new Random(7);
        using var dw = Tensor.Zeros([151936, 896], DType.BF16, device);
        using var idsHost = Tensor.FromArray(Enumerable.Range(0, 4096).Select(_ => (long)r.Next(151936)).ToArray(), 4096, 1);
        using var ids = idsHost.To(device);
        using var expanded = ids.Expand(4096, 896);
        using var g = Tensor.Normal([4096, 896], 3, 0, 1, DType.BF16, device);
        using var x = Tensor.Zeros([512, 896], DType.BF16, device);
        using var indexHost = Indices(r, 512, 4096, 896);
        using var index = indexHost.To(device);
        bool before = cuda.DeterministicScatter;
        try
        {
            foreach (bool deterministic in new[] { true, false })
            {
                cuda.DeterministicScatter = deterministic;
                string note = deterministic ? "deterministic (the CPU's bits)" : "atomics (PARROT_DETERMINISTIC_SCATTER=0)";
                double ms = cuda.MedianMilliseconds(() => cuda.ScatterAdd(dw, 0, expanded, g));
                add(new("scatter add ids", "4096 ids x 896 -> 151936 rows", ms, 4096.0 * 896 / (ms * 1e-3) / 1e9, "Gelem/s", note));
                ms = cuda.MedianMilliseconds(() => cuda.ScatterAdd(x, 0, index, g));
                add(new("scatter add index", "[4096, 896] -> [512, 896]", ms, 4096.0 * 896 / (ms * 1e-3) / 1e9, "Gelem/s", note));
            }
        }
        finally { cuda.DeterministicScatter = before; }
    }

    /// <summary>y = x.Gather(1, index), then y.Backward(w): y and x's gradient flattened and joined.</summary>
    private static Tensor GatherBothWays(Tensor[] c)
    {
        using var scope = TensorScope.Begin();
        var x = new Variable(c[0].Clone(), requiresGrad: true);
        var y = x.Gather(1, c[1]);
        y.Backward(c[2]);
        return scope.Keep(Tensor.Concat(0, y.Value.Reshape(-1), x.Grad!.Reshape(-1)));
    }

    /// <summary>
    /// op(x); off the CPU also op of the inputs copied to the CPU, whose bits the result must have (throws naming the
    /// first element that differs).
    /// </summary>
    private static Tensor SameBitsAsCpu(Tensor[] x, Func<Tensor[], Tensor> op, string what)
    {
        var y = op(x);
        if (x[0].Device.Kind == DeviceKind.Cpu) return y;
        var host = x.Select(t => t.To(Device.Cpu)).ToArray();
        try
        {
            using var want = op(host);
            byte[] got = Bits(y), expected = Bits(want);
            int size = y.DType.SizeOf();
            for (int i = 0; i < expected.Length; i += size)
                if (!got.AsSpan(i, size).SequenceEqual(expected.AsSpan(i, size)))
                {
                    y.Dispose();
                    throw new InvalidOperationException($"{what} {y.DType.Name()}: element {i / size} has bits {Convert.ToHexString(got, i, size)}, "
                        + $"the CPU's {Convert.ToHexString(expected, i, size)}");
                }
            return y;
        }
        finally
        {
            foreach (var t in host) t.Dispose();
        }
    }

    /// <summary>Int64 indices in [0, max) of [rows, cols]: along <paramref name="axis"/>, 7 of every 10 are max / 3 + 2.</summary>
    private static Tensor Hot(Random r, int max, int rows, int cols, int axis = 0)
    {
        var v = new long[rows * cols];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                v[i * cols + j] = (axis == 0 ? i : j) % 10 < 7 ? max / 3 + 2 : r.Next(max);
        return Tensor.FromArray(v, rows, cols);
    }

    /// <summary>Integers of <paramref name="t"/> over its range's edges and small values: sums wrap in int32 and uint8.</summary>
    private static Tensor Ints(Random r, DType t, params int[] shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        var v = new long[n];
        for (long i = 0; i < n; i++)
            v[i] = t == DType.U8 ? r.Next(256) : t == DType.I32 ? r.NextInt64(int.MinValue / 4, int.MaxValue / 4) : r.NextInt64(long.MinValue / 2, long.MaxValue / 2);
        using var l = Tensor.FromArray(v, shape);
        return l.To(t);
    }

    /// <summary>The raw bytes of t's elements in C order.</summary>
    private static unsafe byte[] Bits(Tensor t)
    {
        using var host = t.To(Device.Cpu);
        using var c = host.Contiguous();
        var b = new byte[c.Count * c.DType.SizeOf()];
        fixed (byte* p = b) Buffer.MemoryCopy((void*)c.DataPointer, p, b.Length, b.Length);
        return b;
    }
}
