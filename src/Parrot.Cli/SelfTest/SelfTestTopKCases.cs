using Parrot.Tensors;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// Top-k on the device (native/topk.cu) at the shapes that use it: vocabulary rows (152,064; k 1, 50, 1024: the
/// sampler's), MoE router rows (many rows of 8 to 64 experts, k 1 to 8), k above the shared-memory sort (scratch),
/// k = n, strided and non-last-axis inputs. On a GPU each call must give the CPU backend's bits — indices and value
/// bits (NaN, ±∞, ±0 and heavy ties in the rows) — or the row throws; the row's result is the indices, compared exactly
/// with the CPU and float64 runs as every exact row.
/// </summary>
internal static class SelfTestTopKCases
{
    internal static IEnumerable<SelfTestCase> All()
    {
        yield return new("topk on the device = CPU (152,064 long, k 1/50/1024)", (r, t) => [Rows(r, t, 4, 152_064)],
            x => Concat(TopKChecked(x[0], 1), TopKChecked(x[0], 50), TopKChecked(x[0], 1024)), Exact: true);
        yield return new("topk on the device = CPU (router rows 4096x64, 512x8)", (r, t) => [Rows(r, t, 4096, 64), Rows(r, t, 512, 8)],
            x => Concat(TopKChecked(x[0], 1), TopKChecked(x[0], 2), TopKChecked(x[0], 8), TopKChecked(x[1], 2), TopKChecked(x[1], 8)), Exact: true);
        yield return new("topk on the device = CPU (k 3000 of 10000: scratch sort; k = n)", (r, t) => [Rows(r, t, 3, 10_000), Rows(r, t, 4, 700)],
            x => Concat(TopKChecked(x[0], 3000), TopKChecked(x[1], 700), TopKChecked(x[1], 300)), Exact: true);
        yield return new("topk on the device = CPU (strided, axis 0)", (r, t) => [Rows(r, t, 600, 40)],
            x =>
            {
                using var stepped = x[0].Slice(1, 0, null, 3);
                return Concat(TopKChecked(x[0], 5, axis: 0), TopKChecked(stepped, 7));
            }, Exact: true);
        yield return new("topk on the device = CPU (f16, f64)", (r, t) => [Rows(r, t, 4, 20_000), Rows(r, t, 64, 64)],
            x => Concat(TopKChecked(x[0], 100), TopKChecked(x[1], 4)), Exact: true, Only: [DType.F16, DType.F64]);
        yield return new("topk on the device = CPU (int32, int64, u8)", (r, _) => [Ints(r, DType.I32, 3, 5000), Ints(r, DType.I64, 300, 33), Ints(r, DType.U8, 3, 5000)],
            x => Concat(TopKChecked(x[0], 64), TopKChecked(x[1], 3), TopKChecked(x[2], 600)), Exact: true, Only: [DType.F32]);
    }

    /// <summary>
    /// [rows, n] in the case's dtype, by row: N(0, 1) values (the logits' kind), values of a small set with NaN, ±∞ and ±0
    /// sprinkled in (1 in 30; heavy ties), one value throughout, ±0 with a NaN now and then.
    /// </summary>
    private static Tensor Rows(Random r, DType t, int rows, int n)
    {
        double[] set = [double.NaN, double.NegativeInfinity, double.PositiveInfinity, -0.0, 0, 0.5, 1];
        var v = new double[(long)rows * n];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < n; j++)
                v[(long)i * n + j] = (i % 4) switch
                {
                    0 => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble()),
                    1 => r.Next(30) == 0 ? set[r.Next(set.Length)] : r.Next(16) / 8.0 - 1,
                    2 => 0.5,
                    _ => r.Next(50) == 0 ? double.NaN : j % 2 == 0 ? -0.0 : 0,
                };
        using var f = Tensor.FromArray(v, rows, n);
        return f.To(t);
    }

    /// <summary>[rows, n] integers of <paramref name="t"/> from a narrow range (ties), the type's extremes now and then.</summary>
    private static Tensor Ints(Random r, DType t, int rows, int n)
    {
        var v = new long[(long)rows * n];
        long lo = t == DType.U8 ? 0 : t == DType.I32 ? int.MinValue : long.MinValue, hi = t == DType.U8 ? 255 : t == DType.I32 ? int.MaxValue : long.MaxValue;
        for (long i = 0; i < v.Length; i++) v[i] = r.Next(100) == 0 ? (r.Next(2) == 0 ? lo : hi) : t == DType.U8 ? r.Next(20) : r.Next(40) - 20;
        using var f = Tensor.FromArray(v, rows, n);
        return f.To(t);
    }

    /// <summary>The parts flattened and joined; the parts are disposed.</summary>
    private static Tensor Concat(params Tensor[] parts)
    {
        try
        {
            using var scope = TensorScope.Begin();
            return scope.Keep(Tensor.Concat(0, parts.Select(p => p.Reshape(-1)).ToArray()));
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    /// <summary>The indices of x.TopK(k); off the CPU, the values' and indices' bits must equal the CPU backend's.</summary>
    private static Tensor TopKChecked(Tensor x, int k, int axis = -1)
    {
        var (values, indices) = x.TopK(k, axis);
        using (values)
        {
            if (x.Device.Kind == DeviceKind.Cpu) return indices;
            using var host = x.To(Device.Cpu);
            var (hv, hi) = host.TopK(k, axis);
            using (hv)
            using (hi)
            {
                long[] got = indices.ToLongArray(), want = hi.ToLongArray();
                byte[] gotBits = Bits(values), wantBits = Bits(hv);
                int size = x.DType.SizeOf();
                for (int i = 0; i < want.Length; i++)
                    if (got[i] != want[i] || !gotBits.AsSpan(i * size, size).SequenceEqual(wantBits.AsSpan(i * size, size)))
                    {
                        indices.Dispose();
                        throw new InvalidOperationException($"top-k {x.ShapeString()} {x.DType.Name()} k {k}: element {i} is index {got[i]} "
                            + $"(bits {Convert.ToHexString(gotBits, i * size, size)}), the CPU's {want[i]} ({Convert.ToHexString(wantBits, i * size, size)})");
                    }
            }
            return indices;
        }
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
