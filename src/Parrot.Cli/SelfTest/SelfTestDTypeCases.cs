using Parrot.Tensors;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// Ops the CUDA backend once refused for their operands' dtypes: float maps of int32/int64 inputs (Tensor.Map gives
/// F32, computed in float as the CPU: native/elementwise.cu's unary with x and y of two dtypes); integer matrix
/// products (native/matmul_int.cu), which wrap as the CPU's and must give its bits: on a GPU each product is compared
/// with the CPU's in full 64-bit integers (the runner's double comparison would round int64) and the row throws on a
/// difference; LayerNorm with weight and bias, and RoPE with cos and sin, of two float dtypes (the narrower converted
/// exactly to one holding both, CudaBackend.PairDType).
/// </summary>
internal static class SelfTestDTypeCases
{
    private static readonly UnaryOp[] AnyInput =
    [
        UnaryOp.Neg, UnaryOp.Abs, UnaryOp.Exp, UnaryOp.Tanh, UnaryOp.Sigmoid, UnaryOp.Silu, UnaryOp.GeluErf, UnaryOp.GeluTanh,
        UnaryOp.QuickGelu, UnaryOp.Relu, UnaryOp.Sin, UnaryOp.Cos, UnaryOp.Square, UnaryOp.Erf,
    ];

    private static readonly UnaryOp[] PositiveInput = [UnaryOp.Log, UnaryOp.Sqrt, UnaryOp.Rsqrt, UnaryOp.Reciprocal];

    internal static IEnumerable<SelfTestCase> All()
    {
        // Small integers (exp of 9 is 8103: no term drowns the others), positive ones for log/sqrt/rsqrt/reciprocal;
        // int64 too, and a transposed view (the strided kernel rather than a contiguous walk).
        yield return new("unary of int32 → f32 (exp, log, sqrt, sin …)",
            (r, _) => [Ints(r, DType.I32, -9, 10, 24, 40), Ints(r, DType.I32, 1, 200, 24, 40), Ints(r, DType.I64, -9, 10, 40, 24)],
            x =>
            {
                var parts = new List<Tensor>();
                using var t = x[2].Transpose(0, 1);
                foreach (var op in AnyInput) { parts.Add(Map(x[0], op)); parts.Add(Map(t, op)); }
                foreach (var op in PositiveInput) parts.Add(Map(x[1], op));
                try { return Tensor.Concat(0, [.. parts]); }
                finally { foreach (var p in parts) p.Dispose(); }
            }, Only: [DType.F32]);
        // Whole-range values: nearly every sum wraps. Batched with b broadcast, each operand broadcast along one batch
        // dim, a transposed a, K not a multiple of the 16-wide tiles.
        yield return new("matmul int32/int64 (batched, broadcast, wrapping)",
            (r, _) =>
            [
                Ints(r, DType.I32, int.MinValue, int.MaxValue, 3, 2, 37, 50), Ints(r, DType.I32, int.MinValue, int.MaxValue, 50, 21),
                Ints(r, DType.I64, long.MinValue, long.MaxValue, 2, 1, 9, 17), Ints(r, DType.I64, long.MinValue, long.MaxValue, 3, 17, 18),
                Ints(r, DType.I64, long.MinValue, long.MaxValue, 33, 20),
            ],
            x =>
            {
                using var at = x[4].Transpose(0, 1);
                using var p1 = MatMulChecked(x[0], x[1]);
                using var p1l = p1.To(DType.I64);
                using var p2 = MatMulChecked(x[2], x[3]);
                using var p3 = MatMulChecked(at, x[4]);
                using var f1 = p1l.Reshape(-1);
                using var f2 = p2.Reshape(-1);
                using var f3 = p3.Reshape(-1);
                return Tensor.Concat(0, f1, f2, f3);
            }, Exact: true, Only: [DType.F32]);
        // Weight bf16 and bias f32 (a half-converted checkpoint), then weight f32 and bias f16; x in the case's dtype.
        yield return new("layer norm, weight and bias of two dtypes",
            (r, t) => [SelfTestCase.Normal(r, t, 40, 384), SelfTestCase.Normal(r, DType.BF16, 384), SelfTestCase.Normal(r, DType.F32, 384), SelfTestCase.Normal(r, DType.F16, 384)],
            x =>
            {
                using var w32 = x[1].To(DType.F32);
                using var a = x[0].LayerNorm(x[1], x[2]);
                using var b = x[0].LayerNorm(w32, x[3]);
                using var fa = a.Reshape(-1);
                using var fb = b.Reshape(-1);
                return Tensor.Concat(0, fa, fb);
            });
        // cos bf16 with sin f32, cos f16 with sin bf16 (both become f32 on the GPU), broadcast over batch and heads.
        yield return new("rope, cos and sin of two dtypes", (r, t) => [SelfTestCase.Normal(r, t, 2, 4, 24, 64)], x =>
        {
            var (cos, sin) = Tensor.RopeTables(0, 24, 64, 10000.0, x[0].Device);
            using (cos) using (sin)
            {
                using var cb = cos.To(DType.BF16);
                using var ch = cos.To(DType.F16);
                using var sb = sin.To(DType.BF16);
                using var a = x[0].ApplyRope(cb, sin);
                using var b = x[0].ApplyRope(ch, sb);
                using var fa = a.Reshape(-1);
                using var fb = b.Reshape(-1);
                return Tensor.Concat(0, fa, fb);
            }
        });
    }

    /// <summary>op(x) flattened, as F32 (neg, abs, relu and square keep the integer dtype: exact in F32 here).</summary>
    private static Tensor Map(Tensor x, UnaryOp op)
    {
        using var y = x.Map(op);
        using var f = y.To(DType.F32);
        return f.Reshape(-1);
    }

    /// <summary>a·b; off the CPU also compared with the CPU's product in 64-bit integers (throws on any difference).</summary>
    private static Tensor MatMulChecked(Tensor a, Tensor b)
    {
        var c = Tensor.MatMul(a, b);
        if (a.Device.Kind == DeviceKind.Cpu) return c;
        using var ha = a.To(Device.Cpu);
        using var hb = b.To(Device.Cpu);
        using var want = Tensor.MatMul(ha, hb);
        long[] got = c.ToLongArray(), expected = want.ToLongArray();
        for (int i = 0; i < expected.Length; i++)
            if (got[i] != expected[i])
            {
                c.Dispose();
                throw new InvalidOperationException($"integer matmul {a.ShapeString()}·{b.ShapeString()} {a.DType.Name()}: element {i} is {got[i]}, the CPU's {expected[i]}");
            }
        return c;
    }

    /// <summary>Integers of <paramref name="t"/> drawn uniformly from [lo, hi).</summary>
    private static Tensor Ints(Random r, DType t, long lo, long hi, params int[] shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        var v = new long[n];
        for (long i = 0; i < n; i++) v[i] = r.NextInt64(lo, hi);
        using var l = Tensor.FromArray(v, shape);
        return l.To(t);
    }
}
