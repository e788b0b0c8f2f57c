using Parrot.Tensors;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>The ops `parrot selftest` checks, on small shapes chosen to cover broadcasting, strides and row ops.</summary>
internal static class SelfTestCases
{
    internal static IReadOnlyList<SelfTestCase> All { get; } = Build();

    /// <summary><paramref name="t"/>·<paramref name="factor"/> in t's dtype; t is disposed.</summary>
    private static Tensor Scaled(Tensor t, double factor)
    {
        using (t) return t * factor;
    }

    /// <summary>
    /// Tensor.SwiGluLinear; on a GPU also the unfused ops (MatMul, MatMul, SwiGlu), which must give the same bits: the
    /// fused kernel rounds the products as the separate ones store them.
    /// </summary>
    private static Tensor SwiGluLinearChecked(Tensor x, Tensor wGate, Tensor wUp)
    {
        var y = Tensor.SwiGluLinear(x, wGate, wUp);
        if (x.Device.Kind == DeviceKind.Cpu) return y;
        using var gT = wGate.Transpose(0, 1);
        using var uT = wUp.Transpose(0, 1);
        using var g = Tensor.MatMul(x, gT);
        using var u = Tensor.MatMul(x, uT);
        using var s = Tensor.SwiGlu(g, u);
        double[] a = y.ToDoubleArray(), b = s.ToDoubleArray();
        if (SelfTestCase.FirstBitDifference(a, b) is int i and >= 0)
        {
            y.Dispose();
            throw new InvalidOperationException($"fused result differs from the unfused ops at element {i}: {a[i]:R} vs {b[i]:R}");
        }
        return y;
    }

    /// <summary>
    /// [rows, n] of values from a small set (ties everywhere) with NaN, ±∞ and ±0 sprinkled in (1 in 50); row 0 of
    /// NaN only, row 1 of NaN and −∞, row 2 of ±0 only, row 3 of −∞ only, row 4 of NaN then −∞ (halves), row 5 of NaN and
    /// −∞ but its last element (each where there are so many rows; the rest drawn): the greedy pick's edge cases.
    /// </summary>
    private static Tensor PickRows(Random r, DType t, int rows, int n)
    {
        double[] set = [double.NaN, double.NegativeInfinity, double.PositiveInfinity, -0.0, 0, 0.5, 1];
        var v = new double[rows * n];
        for (int i = 0; i < v.Length; i++) v[i] = r.Next(50) == 0 ? set[r.Next(set.Length)] : r.Next(16) / 8.0 - 1;
        for (int j = 0; j < n && rows >= 3; j++)
        {
            v[j] = double.NaN;
            v[n + j] = j % 3 == 1 ? double.NegativeInfinity : double.NaN;
            v[2 * n + j] = j % 2 == 0 ? -0.0 : 0;
            if (rows >= 4) v[3 * n + j] = double.NegativeInfinity; // no number either (ArgMaxNumber: −1)
            if (rows < 7) continue;
            // Halves of different kinds of no number (CUDA's split path: chunks whose winner is NaN, others −∞; −1), and
            // NaN and −∞ whose only number is the last element (in the last chunk).
            v[4 * n + j] = j < n / 2 ? double.NaN : double.NegativeInfinity;
            v[5 * n + j] = j == n - 1 ? -3 : j % 2 == 0 ? double.NaN : double.NegativeInfinity;
        }
        using var f = Tensor.FromArray(v, rows, n);
        return f.To(t);
    }

    /// <summary>
    /// Tensor.AddRmsNormLinear (gate only: the bias) or, with an up weight, Tensor.AddRmsNormSwiGlu of x[0] + x[1] with norm
    /// weight x[2]: the sum and the product flattened into one vector. On a GPU the fused kernel must have run (decode rows:
    /// native/gemv.cu add_rms_norm_gemv_*), and its bits must equal the ops apart on the same device (AddRmsNorm, then
    /// MatMulBias or SwiGluLinear: add_rms_norm and gemv / swiglu_gemv) and the op with the fusion switched off
    /// (the default path; PARROT_DECODE_NORM_GEMV=1 turns the fusion on).
    /// </summary>
    private static Tensor NormLinearChecked(Tensor x, Tensor residual, Tensor gamma, Tensor weight, Tensor? bias, Tensor? up)
    {
        using var scope = TensorScope.Begin();
        Tensor Fused() => NormProductFlat(x, residual, gamma, weight, bias, up);
        if (x.Backend is not global::Parrot.Tensors.Cuda.CudaBackend cuda) return scope.Keep(Fused());
        long launches = cuda.NormGemvLaunches;
        bool was = cuda.NormGemvKernel;
        cuda.NormGemvKernel = true; // off by default since it was timed (slower in the 7B step); the row checks its bits
        Tensor fused;
        try { fused = Fused(); }
        finally { cuda.NormGemvKernel = was; }
        if (cuda.NormGemvLaunches == launches && x.DType is DType.F32 or DType.BF16)
            throw new InvalidOperationException("the fused kernel did not run (the operands were not eligible)");
        var (sum, h) = Tensor.AddRmsNorm(x, residual, gamma, 1e-6);
        var rows = h.Reshape(-1, h.Shape[^1]);
        var product = up is not null ? Tensor.SwiGluLinear(rows, weight, up) : bias is null ? Tensor.MatMul(rows, weight.Transpose(0, 1)) : Tensor.MatMulBias(rows, weight.Transpose(0, 1), bias);
        var apart = Tensor.Concat(0, sum.Reshape(-1), product.Reshape(-1));
        cuda.NormGemvKernel = false;
        Tensor off;
        try { off = Fused(); }
        finally { cuda.NormGemvKernel = was; }
        double[] a = fused.ToDoubleArray(), b = apart.ToDoubleArray(), c = off.ToDoubleArray();
        int ab = SelfTestCase.FirstBitDifference(a, b), bc = SelfTestCase.FirstBitDifference(b, c);
        if (ab >= 0 || bc >= 0)
        {
            int i = ab < 0 ? bc : bc < 0 ? ab : Math.Min(ab, bc);
            throw new InvalidOperationException($"fused result differs from the ops apart at element {i} ({(i < sum.Count ? "sum" : "product")}): {a[i]:R}, apart {b[i]:R}, switched off {c[i]:R}");
        }
        return scope.Keep(fused);
    }

    /// <summary>
    /// <see cref="Tensor.AddRmsNormLinear"/> (<paramref name="up"/> null) or <see cref="Tensor.AddRmsNormSwiGlu"/> of x +
    /// residual with norm weight γ (eps 1e-6): the sum and the product flattened into one vector.
    /// </summary>
    private static Tensor NormProductFlat(Tensor x, Tensor residual, Tensor gamma, Tensor weight, Tensor? bias, Tensor? up)
    {
        using var scope = TensorScope.Begin();
        var (sum, output) = up is null ? Tensor.AddRmsNormLinear(x, residual, gamma, 1e-6, weight, bias) : Tensor.AddRmsNormSwiGlu(x, residual, gamma, 1e-6, weight, up);
        return scope.Keep(Tensor.Concat(0, sum.Reshape(-1), output.Reshape(-1)));
    }

    /// <summary>
    /// The fused norm + product (<see cref="Tensor.AddRmsNormLinear"/> / <see cref="Tensor.AddRmsNormSwiGlu"/>, the sum
    /// and the product flattened) with the fusion forced on, lean against plain (<see cref="LeanSameAsPlain"/>); on a
    /// GPU the fused kernel must have run for both.
    /// </summary>
    private static Tensor NormLeanSameAsPlain(Tensor x, Tensor residual, Tensor gamma, Tensor weight, Tensor? bias, Tensor? up)
    {
        Tensor Fused() => NormProductFlat(x, residual, gamma, weight, bias, up);
        if (x.Backend is not global::Parrot.Tensors.Cuda.CudaBackend cuda) return Fused();
        bool was = cuda.NormGemvKernel;
        long launches = cuda.NormGemvLaunches;
        cuda.NormGemvKernel = true;
        try
        {
            var result = LeanSameAsPlain(x, Fused);
            if (cuda.NormGemvLaunches < launches + 2) throw new InvalidOperationException("the fused norm kernel did not run (the operands were not eligible)");
            return result;
        }
        finally { cuda.NormGemvKernel = was; }
    }

    /// <summary>
    /// <paramref name="run"/> with <see cref="global::Parrot.Tensors.Cuda.CudaBackend.GemvLean"/> on and off on a CUDA
    /// backend: the lean kernel must have run and the two results must be the same bits (the lean kernels keep the
    /// plain ones' sums and order), else it throws; returns the lean result. Elsewhere just runs it.
    /// </summary>
    private static Tensor LeanSameAsPlain(Tensor on, Func<Tensor> run) =>
        SwitchedSameAsPlain(on, "lean gemv kernel", c => c.GemvLean, (c, v) => c.GemvLean = v, true, false, c => c.GemvLeanLaunches, run);

    /// <summary>
    /// <paramref name="run"/> with <see cref="global::Parrot.Tensors.Cuda.CudaBackend.GemvPrefetchBytes"/> at 64 MiB
    /// and at 0 on a CUDA backend (each with the lean setting it had): a launch must have prefetched and the two results
    /// must be the same bits (a prefetch is a hint: the same loads, the same sums), else it throws. Elsewhere just runs it.
    /// </summary>
    private static Tensor PrefetchSameAsPlain(Tensor on, Func<Tensor> run) =>
        SwitchedSameAsPlain(on, "gemv L2 prefetch", c => c.GemvPrefetchBytes, (c, v) => c.GemvPrefetchBytes = v, 64L << 20, 0L, c => c.GemvPrefetchLaunches, run);

    /// <summary>
    /// <paramref name="run"/> with a CUDA backend switch (<paramref name="get"/>/<paramref name="set"/>) at
    /// <paramref name="on"/>, then at <paramref name="off"/>, restored after: <paramref name="launches"/> must have moved
    /// in the first run (the switched path ran) and both results must be the same bits, else it throws naming
    /// <paramref name="what"/>; returns the first result. On other backends just runs it.
    /// </summary>
    private static Tensor SwitchedSameAsPlain<T>(Tensor on, string what, Func<global::Parrot.Tensors.Cuda.CudaBackend, T> get,
        Action<global::Parrot.Tensors.Cuda.CudaBackend, T> set, T onValue, T offValue, Func<global::Parrot.Tensors.Cuda.CudaBackend, long> launches, Func<Tensor> run)
    {
        if (on.Backend is not global::Parrot.Tensors.Cuda.CudaBackend cuda) return run();
        T was = get(cuda);
        long before = launches(cuda);
        Tensor switched, plain;
        try
        {
            set(cuda, onValue);
            switched = run();
            if (launches(cuda) == before) throw new InvalidOperationException($"the {what} did not run (the product took another path)");
            set(cuda, offValue);
            plain = run();
        }
        finally { set(cuda, was); }
        double[] a = switched.ToDoubleArray(), b = plain.ToDoubleArray();
        if (SelfTestCase.FirstBitDifference(a, b) is int i and >= 0)
            throw new InvalidOperationException($"{what}: element {i} is {a[i]:R}, {b[i]:R} without it");
        plain.Dispose();
        return switched;
    }

    /// <summary>
    /// Runs <paramref name="run"/> with the decode attention settings <paramref name="set"/> changes on a CUDA backend
    /// (restored after); on other devices just runs it.
    /// </summary>
    private static Tensor WithDecode(Tensor on, Action<global::Parrot.Tensors.Cuda.CudaBackend> set, Func<Tensor> run)
    {
        if (on.Backend is not global::Parrot.Tensors.Cuda.CudaBackend cuda) return run();
        int minKeys = cuda.DecodeMinKeys;
        set(cuda);
        try { return run(); }
        finally { cuda.DecodeMinKeys = minKeys; }
    }

    /// <summary>An additive [2, 1, 1, keys] mask hiding a random tail of keys per batch row (0 or −∞).</summary>
    private static Tensor PaddingMask(Random r, DType t, int keys = 32)
    {
        var m = new float[2 * keys];
        for (int b = 0; b < 2; b++)
        {
            int hidden = r.Next(1, 6);
            for (int j = keys - hidden; j < keys; j++) m[b * keys + j] = float.NegativeInfinity;
        }
        using var f = Tensor.FromArray(m, 2, 1, 1, keys);
        return f.To(t);
    }

    /// <summary>
    /// Causal attention forward of x[0..2] (q, k, v) with its log-sum-exp, then the backward with x[3] as the output
    /// gradient: dq, dk and dv flattened into one vector.
    /// </summary>
    private static Tensor AttentionGrads(Tensor[] x, Tensor? mask, int offset)
    {
        using var scope = TensorScope.Begin();
        var o = Tensor.ScaledDotProductAttention(x[0], x[1], x[2], out var lse, mask, causal: true, queryOffset: offset);
        double scale = 1 / Math.Sqrt(x[0].Shape[3]);
        var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(x[0], x[1], x[2], o, lse, x[3], mask, true, offset, scale);
        return scope.Keep(Tensor.Concat(0, dq!.Reshape((int)dq.Count), dk!.Reshape((int)dk.Count), dv!.Reshape((int)dv.Count)));
    }

    /// <summary>
    /// x: the projections q [B, T, heads·d], k and v [B, T, kvHeads·d] and caches [B, kvHeads, 12, d]. Rotates q and k at
    /// positions 3.., stores k and v at 3 in copies of the caches (fused: <see cref="Tensor.RopeAppend"/>; apart:
    /// ApplyRope ×2 and two copies); returns q rotated and both caches, flattened into one vector.
    /// </summary>
    private static Tensor RopeKvAppend(Tensor[] x, int heads, int kvHeads, int d, bool apart)
    {
        const int past = 3;
        using var scope = TensorScope.Begin();
        int b = x[0].Shape[0], t = x[0].Shape[1];
        var q = x[0].Reshape(b, t, heads, d).Transpose(1, 2);
        var k = x[1].Reshape(b, t, kvHeads, d).Transpose(1, 2);
        var v = x[2].Reshape(b, t, kvHeads, d).Transpose(1, 2);
        var kc = x[3].Clone();
        var vc = x[4].Clone();
        var (cos, sin) = Tensor.RopeTables(past, t, d, 10000.0, x[0].Device); // float32, as the model's
        Tensor qRot;
        if (!apart) qRot = Tensor.RopeAppend(q, k, v, cos, sin, kc.Narrow(2, past, t), vc.Narrow(2, past, t));
        else
        {
            qRot = q.ApplyRope(cos, sin);
            kc.Narrow(2, past, t).CopyFrom(k.ApplyRope(cos, sin));
            vc.Narrow(2, past, t).CopyFrom(v);
        }
        return scope.Keep(Tensor.Concat(0, qRot.Reshape(-1), kc.Reshape(-1), vc.Reshape(-1)));
    }

    /// <summary>
    /// x: the input [B, T, hidden], the packed q/k/v weight [(heads + 2·kvHeads)·d, hidden] and bias, caches [B, kvHeads,
    /// 12, d]. Projects with Variable.SplitLinear over row views of the packed weight (as a
    /// packed Attention layer does in inference), then rotates and appends at positions 3.. as <see cref="RopeKvAppend"/>.
    /// </summary>
    private static Tensor PackedQkv(Tensor[] x, int heads, int kvHeads, int d)
    {
        const int past = 3;
        using var scope = TensorScope.Begin();
        using var ng = global::Parrot.Autograd.Graph.NoGrad();
        int b = x[0].Shape[0], t = x[0].Shape[1], nq = heads * d, nk = kvHeads * d;
        int[] starts = [0, nq, nq + nk], sizes = [nq, nk, nk];
        var ws = starts.Select((s, i) => new global::Parrot.Autograd.Variable(x[1].Narrow(0, s, sizes[i]))).ToArray();
        var bs = starts.Select((s, i) => new global::Parrot.Autograd.Variable(x[2].Narrow(0, s, sizes[i]))).ToArray();
        var p = global::Parrot.Autograd.Variable.SplitLinear(new global::Parrot.Autograd.Variable(x[0]), ws, bs);
        var q = p[0].Value.Reshape(b, t, heads, d).Transpose(1, 2);
        var k = p[1].Value.Reshape(b, t, kvHeads, d).Transpose(1, 2);
        var v = p[2].Value.Reshape(b, t, kvHeads, d).Transpose(1, 2);
        var kc = x[3].Clone();
        var vc = x[4].Clone();
        var (cos, sin) = Tensor.RopeTables(past, t, d, 10000.0, x[0].Device);
        var qRot = Tensor.RopeAppend(q, k, v, cos, sin, kc.Narrow(2, past, t), vc.Narrow(2, past, t));
        return scope.Keep(Tensor.Concat(0, qRot.Reshape(-1), kc.Reshape(-1), vc.Reshape(-1)));
    }

    private static List<SelfTestCase> Build()
    {
        var c = new List<SelfTestCase>();
        Tensor[] One(Random r, DType t) => [Normal(r, t, 48, 80)];
        Tensor[] Pos(Random r, DType t) => [Positive(r, t, 0.1, 4, 48, 80)];
        Tensor[] Two(Random r, DType t) => [Normal(r, t, 48, 80), Normal(r, t, 80)];

        // Elementwise: copies, casts, unary maps, broadcasting and strided binary ops, where, comparisons.
        c.Add(new("copy (transposed view)", One, x => x[0].Transpose(0, 1).Contiguous()));
        c.Add(new("cast to bf16 and back", One, x => { using var h = x[0].To(DType.BF16); return h.To(x[0].DType); }));
        c.Add(new("cast to f32", One, x => x[0].To(DType.F32)));
        // Out-of-range values and NaN into integers: toward zero, saturated, NaN 0, as the CPU (a GPU's plain uint8
        // conversion kept the low byte of 32 bits: 300 gave 44).
        c.Add(new("cast out of range → u8/i32/i64", (r, t) => [Tensor.FromArray(new double[] { 300, -5, double.NaN, 1e10, -1e10, 254.7, -0.7, 1e20 }).To(t)], x =>
        {
            using var u = x[0].To(DType.U8); using var i = x[0].To(DType.I32); using var l = x[0].To(DType.I64);
            using var uf = u.To(DType.F64); using var @if = i.To(DType.F64); using var lf = l.To(DType.F64);
            return Tensor.Concat(0, uf, @if, lf);
        }, Exact: true));
        c.Add(new("fill", One, x => { var y = x[0].Clone(); y.Fill(0.375); return y; }));
        foreach (var (name, op) in new (string, UnaryOp)[]
        {
            ("neg", UnaryOp.Neg), ("abs", UnaryOp.Abs), ("exp", UnaryOp.Exp), ("tanh", UnaryOp.Tanh), ("sigmoid", UnaryOp.Sigmoid),
            ("silu", UnaryOp.Silu), ("gelu (erf)", UnaryOp.GeluErf), ("gelu (tanh)", UnaryOp.GeluTanh), ("quick gelu", UnaryOp.QuickGelu),
            ("relu", UnaryOp.Relu), ("sin", UnaryOp.Sin), ("cos", UnaryOp.Cos), ("square", UnaryOp.Square), ("erf", UnaryOp.Erf),
        })
            c.Add(new(name, One, x => x[0].Map(op)));
        foreach (var (name, op) in new (string, UnaryOp)[] { ("log", UnaryOp.Log), ("sqrt", UnaryOp.Sqrt), ("rsqrt", UnaryOp.Rsqrt), ("reciprocal", UnaryOp.Reciprocal) })
            c.Add(new(name, Pos, x => x[0].Map(op)));
        c.Add(new("add (broadcast row)", Two, x => x[0] + x[1]));
        c.Add(new("sub (broadcast, transposed)", (r, t) => [Normal(r, t, 80, 48), Normal(r, t, 80, 1)], x => { using var tr = x[0].Transpose(0, 1); using var b = x[1].Transpose(0, 1); return tr - b; }));
        c.Add(new("mul (broadcast row)", Two, x => x[0] * x[1]));
        c.Add(new("mul (same shape, odd length)", (r, t) => [Normal(r, t, 7, 37), Normal(r, t, 7, 37)], x => x[0] * x[1]));
        c.Add(new("silu (odd length)", (r, t) => [Normal(r, t, 7, 37)], x => x[0].Map(UnaryOp.Silu)));
        c.Add(new("div", (r, t) => [Normal(r, t, 48, 80), Positive(r, t, 0.5, 2, 48, 80)], x => x[0] / x[1]));
        c.Add(new("pow", (r, t) => [Positive(r, t, 0.1, 3, 48, 80), Normal(r, t, 48, 80)], x => x[0].Pow(x[1])));
        c.Add(new("maximum", Two, x => x[0].Maximum(x[1])));
        c.Add(new("minimum", Two, x => x[0].Minimum(x[1])));
        c.Add(new("greater than (bool)", Two, x => x[0].Gt(x[1]), Exact: true));
        c.Add(new("where", (r, t) => [Normal(r, t, 48, 80), Normal(r, t, 48, 80), Normal(r, t, 80)],
            x => { using var zero = Tensor.Zeros([1], x[0].DType, x[0].Device); using var m = x[0].Gt(zero); return Tensor.Where(m, x[1], x[2]); }));

        // Reductions.
        c.Add(new("sum (last axis)", One, x => x[0].Sum(-1)));
        c.Add(new("sum (first axis)", One, x => x[0].Sum(0)));
        c.Add(new("mean (all)", One, x => x[0].Mean([0, 1], false)));
        c.Add(new("max (last axis)", One, x => x[0].Max(-1)));
        c.Add(new("min (first axis)", One, x => x[0].Min(0)));
        c.Add(new("sum of squares", One, x => x[0].SumOfSquares(-1)));
        c.Add(new("argmax (last axis)", One, x => x[0].ArgMax(-1), Exact: true));
        c.Add(new("argmin (first axis)", One, x => x[0].ArgMin(0), Exact: true));
        // Many outputs of few elements (CUDA: reduce_columns) and few long rows (CUDA: argmax split over chunks).
        c.Add(new("sum (leading axis, 4096 outputs)", (r, t) => [Normal(r, t, 8, 4096)], x => x[0].Sum(0)));
        c.Add(new("max (leading axes, 2048 outputs)", (r, t) => [Normal(r, t, 3, 5, 2048)], x => x[0].Max([0, 1], false)));
        // Few outputs of very many elements (CUDA: reduce_split, chunks over many blocks merged by the last): a whole
        // tensor's sum, max and mean (strided: the transposed view), and 3 rows of 200,003 with the sum of squares.
        c.Add(new("sum / max / mean (all of 700x1000)", (r, t) => [Normal(r, t, 700, 1000)], x =>
        {
            using var tr = x[0].Transpose(0, 1);
            using var s = x[0].Sum([0, 1], false).Reshape(1); using var m = x[0].Max([0, 1], false).Reshape(1); using var a = tr.Mean([0, 1], false).Reshape(1);
            return Tensor.Concat(0, s, m, a);
        }));
        c.Add(new("sum of squares (3 rows of 200003)", (r, t) => [Normal(r, t, 3, 200_003)], x => x[0].SumOfSquares(-1)));
        c.Add(new("argmax (one row of 40000)", (r, t) => [Normal(r, t, 1, 40000)], x => x[0].ArgMax(-1), Exact: true));
        c.Add(new("argmin (3 rows of 20000)", (r, t) => [Normal(r, t, 3, 20000)], x => x[0].ArgMin(-1), Exact: true));
        // The greedy pick's rule (NaN below every number): vocabulary rows (CUDA: split over chunks, one row as in
        // decode and several), and rows of 1 and of 300 (a block per row); ties, NaN, ±∞ and ±0 everywhere.
        c.Add(new("argmax, NaN lowest (152,064 long)", (r, t) => [PickRows(r, t, 1, 152_064), PickRows(r, t, 5, 152_064)],
            x => { using var a = x[0].ArgMaxNaNLowest(1); using var b = x[1].ArgMaxNaNLowest(1); return Tensor.Concat(0, a, b); },
            Exact: true, Only: [DType.F32, DType.BF16, DType.F16, DType.F64]));
        c.Add(new("argmax, NaN lowest (short rows)", (r, t) => [PickRows(r, t, 6, 1), PickRows(r, t, 40, 300)],
            x => { using var a = x[0].ArgMaxNaNLowest(1); using var b = x[1].ArgMaxNaNLowest(1); return Tensor.Concat(0, a, b); },
            Exact: true, Only: [DType.F32, DType.BF16, DType.F16, DType.F64]));
        // The greedy pick itself (GreedyToken): NaN-lowest's choice, −1 for the rows with no number (NaN and −∞ only).
        c.Add(new("argmax, number or -1 (152,064 long)", (r, t) => [PickRows(r, t, 1, 152_064), PickRows(r, t, 7, 152_064)],
            x => { using var a = x[0].ArgMaxNumber(1); using var b = x[1].ArgMaxNumber(1); return Tensor.Concat(0, a, b); },
            Exact: true, Only: [DType.F32, DType.BF16, DType.F16, DType.F64]));
        c.Add(new("argmax, number or -1 (short rows)", (r, t) => [PickRows(r, t, 7, 1), PickRows(r, t, 40, 300)],
            x => { using var a = x[0].ArgMaxNumber(1); using var b = x[1].ArgMaxNumber(1); return Tensor.Concat(0, a, b); },
            Exact: true, Only: [DType.F32, DType.BF16, DType.F16, DType.F64]));
        c.Add(new("top-k values", One, x => { var (v, i) = x[0].TopK(5); i.Dispose(); return v; }));

        // Row ops.
        c.Add(new("softmax", (r, t) => [Normal(r, t, 32, 1000)], x => x[0].Softmax(-1)));
        c.Add(new("log-softmax", (r, t) => [Normal(r, t, 32, 1000)], x => x[0].LogSoftmax(-1)));
        c.Add(new("softmax (strided rows)", (r, t) => [Normal(r, t, 96, 40)], x => { using var tr = x[0].Transpose(0, 1); return tr.Softmax(-1); }));
        c.Add(new("layer norm", (r, t) => [Normal(r, t, 40, 384), Normal(r, t, 384), Normal(r, t, 384)], x => x[0].LayerNorm(x[1], x[2])));
        c.Add(new("rms norm", (r, t) => [Normal(r, t, 40, 384), Normal(r, t, 384)], x => x[0].RmsNorm(x[1])));
        c.Add(new("add + rms norm (residual step)", (r, t) => [Normal(r, t, 40, 384), Normal(r, t, 40, 384), Normal(r, t, 384)], x =>
        {
            var (sum, y) = Tensor.AddRmsNorm(x[0], x[1], x[2]);
            using (sum) using (y) return Tensor.Concat(0, sum.Reshape(-1), y.Reshape(-1));
        }));
        c.Add(new("add + rms norm (one row of 3584)", (r, t) => [Normal(r, t, 1, 3584), Normal(r, t, 1, 3584), Normal(r, t, 3584)], x =>
        {
            var (sum, y) = Tensor.AddRmsNorm(x[0], x[1], x[2]);
            using (sum) using (y) return Tensor.Concat(0, sum.Reshape(-1), y.Reshape(-1));
        }));
        // Decode runs AddRmsNorm in place of the residual add and the next norm (Qwen2Model.ForwardWithCache), so on the
        // device the fused op must give the bits of the two apart: the difference is exactly zero (decode rows of the
        // 7B and 0.5B widths, with the threads per row CudaBackend gives one row, and several rows).
        foreach (var (rows, n) in new[] { (1, 3584), (1, 896), (40, 384) })
            c.Add(new($"add + rms norm = the ops apart ({rows}x{n})", (r, t) => [Normal(r, t, rows, n), Normal(r, t, rows, n), Normal(r, t, n)], x =>
            {
                using var scope = TensorScope.Begin();
                var (sum, y) = Tensor.AddRmsNorm(x[0], x[1], x[2]);
                var apart = x[0] + x[1];
                var yApart = apart.RmsNorm(x[2]);
                return scope.Keep(Tensor.Concat(0, (sum - apart).Reshape(-1), (y - yApart).Reshape(-1)));
            }, Exact: true));
        c.Add(new("rope", (r, t) => [Normal(r, t, 2, 4, 24, 64)], x =>
        {
            var (cos, sin) = Tensor.RopeTables(0, 24, 64, 10000.0, x[0].Device);
            using (cos) using (sin)
            {
                using var c2 = cos.To(x[0].DType);
                using var s2 = sin.To(x[0].DType);
                return x[0].ApplyRope(c2, s2);
            }
        }));
        // Inference's rotations and KV-cache append (one kernel on a GPU): q rotated and both whole caches (the slots
        // written at position 3, the rest as they were); then the fused step against the four ops apart on the same
        // device, which must give the same bits (the difference is exactly zero).
        Tensor[] RopeKvInputs(Random r, DType t, int b, int s, int heads, int kvHeads, int d) =>
            [Normal(r, t, b, s, heads * d), Normal(r, t, b, s, kvHeads * d), Normal(r, t, b, s, kvHeads * d), Normal(r, t, b, kvHeads, 12, d), Normal(r, t, b, kvHeads, 12, d)];
        c.Add(new("rope + kv append (fused)", (r, t) => RopeKvInputs(r, t, 2, 5, 4, 2, 64), x => RopeKvAppend(x, 4, 2, 64, apart: false)));
        c.Add(new("rope + kv append (fused, decode)", (r, t) => RopeKvInputs(r, t, 1, 1, 28, 4, 128), x => RopeKvAppend(x, 28, 4, 128, apart: false)));
        c.Add(new("rope + kv append = the ops apart", (r, t) => RopeKvInputs(r, t, 2, 5, 4, 2, 64), x =>
        {
            using var fused = RopeKvAppend(x, 4, 2, 64, apart: false);
            using var apart = RopeKvAppend(x, 4, 2, 64, apart: true);
            return fused - apart;
        }, Exact: true));
        // Attention's packed q/k/v projections in inference: one product over the packed weight (a gemv on a GPU for the
        // decode row), q, k and v as column ranges of its output (row stride (H + 2·Hkv)·D) going straight into the
        // fused rope + kv append.
        Tensor[] PackedQkvInputs(Random r, DType t, int b, int s, int hidden, int heads, int kvHeads, int d) =>
            [Normal(r, t, b, s, hidden), Normal(r, t, (heads + 2 * kvHeads) * d, hidden), Normal(r, t, (heads + 2 * kvHeads) * d), Normal(r, t, b, kvHeads, 12, d), Normal(r, t, b, kvHeads, 12, d)];
        c.Add(new("packed q/k/v + rope + kv append (decode)", (r, t) => PackedQkvInputs(r, t, 1, 1, 512, 28, 4, 128), x => PackedQkv(x, 28, 4, 128)));
        c.Add(new("packed q/k/v + rope + kv append (B2 T5)", (r, t) => PackedQkvInputs(r, t, 2, 5, 256, 4, 2, 64), x => PackedQkv(x, 4, 2, 64)));
        c.Add(new("cross-entropy (mean)", (r, t) => [Normal(r, t, 64, 3000), Indices(r, 3000, 64)], x => Tensor.CrossEntropy(x[0], x[1])));

        // Indexing.
        c.Add(new("embedding", (r, t) => [Normal(r, t, 500, 64), Indices(r, 500, 4, 33)], x => Tensor.Embedding(x[0], x[1])));
        c.Add(new("index select (axis 1)", (r, t) => [Normal(r, t, 30, 70), Indices(r, 70, 25)], x => x[0].IndexSelect(1, x[1])));
        c.Add(new("gather (axis 1)", (r, t) => [Normal(r, t, 30, 70), Indices(r, 70, 30, 20)], x => x[0].Gather(1, x[1])));
        c.Add(new("scatter-add (axis 0)", (r, t) => [Normal(r, t, 50, 16), Indices(r, 50, 200, 16), Normal(r, t, 200, 16)],
            x => x[0].ScatterAdd(0, x[1], x[2])));
        // A bad id and a bad target raise a clear error naming them (the CPU at the op; CUDA, whose checks run on the
        // device without a host wait, at the next read), nothing faults, and the device computes on afterwards.
        c.Add(new("bad id and target raise (named)", (r, t) => [Normal(r, t, 500, 64), BadAt(Indices(r, 500, 4, 33), 70, 500), BadAt(Indices(r, 500, 132), 9, -7)],
            x => RaisesNamed(x), Exact: true));

        // Matrix products.
        c.Add(new("matmul 2-D", (r, t) => [Normal(r, t, 96, 128), Normal(r, t, 128, 80)], x => Tensor.MatMul(x[0], x[1])));
        c.Add(new("matmul batched", (r, t) => [Normal(r, t, 3, 40, 64), Normal(r, t, 3, 64, 72)], x => Tensor.MatMul(x[0], x[1])));
        c.Add(new("matmul broadcast b", (r, t) => [Normal(r, t, 3, 40, 64), Normal(r, t, 64, 72)], x => Tensor.MatMul(x[0], x[1])));
        c.Add(new("matmul transposed b (x·wᵀ)", (r, t) => [Normal(r, t, 50, 64), Normal(r, t, 96, 64)], x => { using var w = x[1].Transpose(0, 1); return Tensor.MatMul(x[0], w); }));
        c.Add(new("matmul + bias (Linear: x·wᵀ + b)", (r, t) => [Normal(r, t, 50, 64), Normal(r, t, 96, 64), Normal(r, t, 96)],
            x => { using var w = x[1].Transpose(0, 1); return Tensor.MatMulBias(x[0], w, x[2]); }));
        c.Add(new("matmul to float32", (r, t) => [Normal(r, t, 96, 128), Normal(r, t, 128, 80)], x => Tensor.MatMul(x[0], x[1], x[0].DType == DType.F64 ? null : DType.F32)));
        // Decode: 1..4 rows by a weight's transposed view (CUDA: native/gemv.cu); N and K not multiples of the block's
        // rows or of a warp's step, the weight's rows padded, x rows picked out of a larger activation.
        for (int m = 1; m <= 4; m++)
        {
            int rows = m;
            c.Add(new($"matmul decode x·wᵀ (m {rows})", (r, t) => [Normal(r, t, rows, 1000), Normal(r, t, 513, 1000)],
                x => { using var w = x[1].Transpose(0, 1); return Tensor.MatMul(x[0], w); }));
        }
        c.Add(new("matmul decode x·wᵀ to float32", (r, t) => [Normal(r, t, 2, 1000), Normal(r, t, 513, 1000)],
            x => { using var w = x[1].Transpose(0, 1); return Tensor.MatMul(x[0], w, x[0].DType == DType.F64 ? null : DType.F32); }));
        // The lean gemv kernels (CudaBackend.GemvLean, PARROT_GEMV_LEAN=1: x loaded per step, fewer registers): on CUDA
        // forced on and off, the same bits (else the row throws); elsewhere the product as above. bf16 only (f32 has none).
        foreach (var (m, n, k) in new[] { (1, 513, 1000), (2, 513, 1000), (3, 513, 1000), (4, 513, 1000), (1, 4608, 3584) })
        {
            var (rows, nn, kk) = (m, n, k);
            c.Add(new($"matmul decode x·wᵀ, lean kernel = plain (m {rows}, {nn}x{kk})", (r, t) => [Normal(r, t, rows, kk), Normal(r, t, nn, kk)],
                x => LeanSameAsPlain(x[0], () => { using var w = x[1].Transpose(0, 1); return Tensor.MatMul(x[0], w); }), Only: [DType.BF16]));
        }
        // K 1003 (the one-by-one tail after the last whole vector) with x rows 1003 elements apart (element loads) and the
        // weight's rows padded to 1008 (the kernel's 16-byte rows).
        c.Add(new("matmul decode x·wᵀ, lean kernel = plain (m 2, 513x1003, ragged K, element loads of x)", (r, t) => [Normal(r, t, 2, 1003), Normal(r, t, 513, 1008)],
            x => LeanSameAsPlain(x[0], () => { using var w = x[1].Narrow(1, 0, 1003); using var wt = w.Transpose(0, 1); return Tensor.MatMul(x[0], wt); }), Only: [DType.BF16]));
        foreach (int m in new[] { 1, 4 })
        {
            int rows = m;
            c.Add(new($"swiglu linear (decode, fused), lean kernel = plain m {rows}", (r, t) => [Normal(r, t, rows, 1000), Scaled(Normal(r, t, 513, 1000), 0.03), Normal(r, t, 513, 1000)],
                x => LeanSameAsPlain(x[0], () => Tensor.SwiGluLinear(x[0], x[1], x[2])), Only: [DType.BF16]));
        }
        // The gemv L2 prefetch (CudaBackend.GemvPrefetchBytes, PARROT_GEMV_PREFETCH): on CUDA at 64 MiB and off, the same
        // bits (else the row throws), plain and lean; K 3584 leaves steps past the first loop step's loads to prefetch.
        foreach (var (m, n, k, lean) in new[] { (1, 3584, 3584, false), (4, 513, 3584, false), (1, 4608, 3584, true) })
        {
            var (rows, nn, kk, withLean) = (m, n, k, lean);
            c.Add(new($"matmul decode x·wᵀ, L2 prefetch = plain (m {rows}, {nn}x{kk}{(withLean ? ", lean kernel" : "")})", (r, t) => [Normal(r, t, rows, kk), Normal(r, t, nn, kk)],
                x => PrefetchSameAsPlain(x[0], () =>
                {
                    Tensor Product() { using var w = x[1].Transpose(0, 1); return Tensor.MatMul(x[0], w); }
                    return withLean ? LeanSameAsPlain(x[0], Product) : Product();
                }), Only: withLean ? [DType.BF16] : null)); // the lean kernels are bf16 only
        }
        foreach (int m in new[] { 1, 3 })
        {
            int rows = m;
            c.Add(new($"swiglu linear (decode, fused), L2 prefetch = plain m {rows}", (r, t) => [Normal(r, t, rows, 3584), Scaled(Normal(r, t, 513, 3584), 0.016), Normal(r, t, 513, 3584)],
                x => PrefetchSameAsPlain(x[0], () => Tensor.SwiGluLinear(x[0], x[1], x[2]))));
        }
        // The first half of a gated MLP in decode: on CUDA one launch (native/gemv.cu, swiglu_gemv_*), also checked
        // there bit for bit against the unfused products and SwiGlu. Weights scaled by 1/√K so the gates cover silu's bend.
        foreach (int m in new[] { 1, 3 })
        {
            int rows = m;
            c.Add(new($"swiglu linear (decode, fused) m {rows}", (r, t) => [Normal(r, t, rows, 1000), Scaled(Normal(r, t, 513, 1000), 0.03), Normal(r, t, 513, 1000)],
                x => SwiGluLinearChecked(x[0], x[1], x[2])));
        }
        // Decode's residual step with the product that reads its norm (Qwen2 decode: the input norm with the packed q/k/v
        // product and its bias, the post-attention norm with the MLP's gate, up and SwiGLU): one kernel on a GPU, checked
        // there bit for bit against the ops apart and the switched-off path, and here against the CPU. Qwen2-7B's layer
        // shapes (K 3584: q/k/v N 4608, gate/up N 18944) and 0.5B's (K 896: N 1152 and 4864); weights scaled by 1/√K.
        Tensor[] NormInputs(Random r, DType t, int rows, int k, int n, bool swiglu) =>
        [
            Scaled(Normal(r, t, rows, k), 4), Normal(r, t, rows, k), Positive(r, t, 0.5, 1.5, k), Scaled(Normal(r, t, n, k), (swiglu ? 3 : 1) / Math.Sqrt(k)),
            swiglu ? Normal(r, t, n, k) : Normal(r, t, n),
        ];
        foreach (var (rows, k, n) in new[] { (1, 3584, 4608), (4, 3584, 4608), (1, 896, 1152), (3, 896, 1152) })
            c.Add(new($"add + rms norm + linear (decode, fused) {rows}x{k} · {n}", (r, t) => NormInputs(r, t, rows, k, n, false),
                x => NormLinearChecked(x[0], x[1], x[2], x[3], x[4], null), Only: rows * k * 4 > 48 * 1024 ? [DType.BF16] : null)); // f32: above the kernel's shared memory
        foreach (var (rows, k, n) in new[] { (1, 3584, 18944), (2, 896, 4864) })
            c.Add(new($"add + rms norm + swiglu (decode, fused) {rows}x{k} · {n}", (r, t) => NormInputs(r, t, rows, k, n, true),
                x => NormLinearChecked(x[0], x[1], x[2], x[3], null, x[4])));
        // The fused kernels' lean forms (CudaBackend.GemvLean): forced on and off with the fusion on, the same bits.
        foreach (var (rows, k, n, swiglu) in new[] { (1, 3584, 4608, false), (1, 3584, 18944, true), (4, 896, 1152, false) })
            c.Add(new($"add + rms norm + {(swiglu ? "swiglu" : "linear")} (decode, fused), lean kernel = plain {rows}x{k} · {n}", (r, t) => NormInputs(r, t, rows, k, n, swiglu),
                x => NormLeanSameAsPlain(x[0], x[1], x[2], x[3], swiglu ? null : x[4], swiglu ? x[4] : null), Only: [DType.BF16]));
        // The largest rows the plan fuses (bf16, 4 rows of 6064: 48512 bytes of dynamic shared memory + 640 static, just
        // under the 48 KiB a launch gets without the opt-in attribute): the launch must succeed.
        c.Add(new("add + rms norm + swiglu (decode, fused) 4x6064 · 64, shared memory at the limit", (r, t) => NormInputs(r, t, 4, 6064, 64, true),
            x => NormLinearChecked(x[0], x[1], x[2], x[3], null, x[4]), Only: [DType.BF16]));
        c.Add(new("matmul decode padded w, strided x", (r, t) => [Normal(r, t, 3, 5, 1000), Normal(r, t, 700, 1016)], x =>
        {
            using var last = x[0].Narrow(1, 4, 1);  // [3, 1, 1000], rows 5000 elements apart
            using var w = x[1].Narrow(1, 0, 1000);  // [700, 1000], rows 1016 apart
            using var wt = w.Transpose(0, 1);
            return Tensor.MatMul(last, wt);
        }));
        // One output column and K = 1025 (no whole 16-byte vectors): ldw is padded, K splits over 4 warps and the last
        // warp's slice starts past K; it must not add the row's ragged tail a second time.
        c.Add(new("matmul decode N 1, K 1025", (r, t) => [Normal(r, t, 2, 1025), Normal(r, t, 1, 1025)],
            x => { using var w = x[1].Transpose(0, 1); return Tensor.MatMul(x[0], w); }));

        // Optimiser: three AdamW steps on float32 master weights with gradients in the case's dtype.
        c.Add(new("adamw (3 steps)", (r, t) => [Normal(r, DType.F32, 4000), Normal(r, t, 4000)], x =>
        {
            var p = x[0].Clone();
            using var m = Tensor.Zeros(p.Shape, p.DType, p.Device);
            using var v = Tensor.Zeros(p.Shape, p.DType, p.Device);
            for (int s = 1; s <= 3; s++) p.Backend.AdamW(p, x[1], m, v, new AdamWStep(1e-2, 0.9, 0.999, 1e-8, 0.1, s));
            return p;
        }));

        c.AddRange(SelfTestFusedCases.All());
        c.AddRange(SelfTestModelCases.All());
        c.AddRange(SelfTestGraphCases.All());
        c.AddRange(SelfTestDecodeCases.All());
        c.AddRange(SelfTestRopeAttendCases.All());
        c.AddRange(SelfTestDecodeMmaCases.All());
        c.AddRange(SelfTestTopKCases.All());
        c.AddRange(SelfTestScatterCases.All());
        c.AddRange(SelfTestBatchCases.All());
        c.AddRange(SelfTestRandomCases.All());
        c.AddRange(SelfTestDTypeCases.All());

        // Attention (composite reference when the fused kernel is absent). These rows take the backend's default dispatch:
        // on a GPU unmasked bf16 calls of more than 8 query rows that save the log-sum-exp (the "log-sum-exp" row and the
        // backward rows: training) run on cuDNN's fused attention where it is installed (CudaBackend.CudnnAttention); the
        // forward-only rows below ask for no log-sum-exp (inference) and so run on our kernels, as the rest; the rows
        // marked "ours" below force our kernels.
        c.Add(new("attention (causal, GQA)", (r, t) => [Normal(r, t, 1, 4, 32, 64), Normal(r, t, 1, 2, 32, 64), Normal(r, t, 1, 2, 32, 64)],
            x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal: true)));
        c.Add(new("attention (mask, kv-cache offset)", (r, t) => [Normal(r, t, 2, 4, 8, 80), Normal(r, t, 2, 4, 32, 80), Normal(r, t, 2, 4, 32, 80), PaddingMask(r, t)],
            x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], x[3], causal: true, queryOffset: 24)));
        // bf16 runs these on cuDNN or tensor cores (attention_mma.cu: head dims 64, 80, 128) over several 64-row and
        // 64-key tiles with ragged ends; f32 on the FMA flash kernel.
        c.Add(new("attention D128 (causal, GQA, T100)", (r, t) => [Normal(r, t, 1, 4, 100, 128), Normal(r, t, 1, 2, 100, 128), Normal(r, t, 1, 2, 100, 128)],
            x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal: true)));
        c.Add(new("attention D64 (mask, offset, S150)", (r, t) => [Normal(r, t, 2, 4, 20, 64), Normal(r, t, 2, 2, 150, 64), Normal(r, t, 2, 2, 150, 64), PaddingMask(r, t, 150)],
            x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], x[3], causal: true, queryOffset: 130)));
        c.Add(new("attention decode T1 (GQA, offset)", (r, t) => [Normal(r, t, 2, 4, 1, 128), Normal(r, t, 2, 2, 40, 128), Normal(r, t, 2, 2, 40, 128)],
            x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, queryOffset: 39)));
        // Up to 8 query rows run the decode kernel on CUDA (attention_decode.cu): Qwen2's grouped heads (7 query heads
        // a kv head) at the last position of a 160-key cache (one key range at the default of ≥ 128 keys a range: the
        // block writes o itself); 3 rows with a padding mask; 600 keys in several ranges, with the log-sum-exp beside the output.
        c.Add(new("attention decode T1 GQA7 D128 S160", (r, t) => [Normal(r, t, 1, 14, 1, 128), Normal(r, t, 1, 2, 160, 128), Normal(r, t, 1, 2, 160, 128)],
            x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, queryOffset: 159)));
        // The same step in 5 ranges of 32 keys (CudaBackend.DecodeMinKeys 32, the default before 2026-11-27 23:07: merged
        // in the launch by the last block).
        c.Add(new("attention decode T1 GQA7 D128 S160 min keys 32", (r, t) => [Normal(r, t, 1, 14, 1, 128), Normal(r, t, 1, 2, 160, 128), Normal(r, t, 1, 2, 160, 128)],
            x => WithDecode(x[0], c => c.DecodeMinKeys = 32, () => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, queryOffset: 159))));
        // The static decode step's attention (positions on the device, the grid sized for a 1024-key cache: 8 ranges
        // allowed at 128 keys a range) against the eager launch over each row's own keys (1 and 5 ranges): the same bits on any device (a
        // mismatch throws), and the output against float64 as every case.
        c.Add(new("attention at positions = eager (key ranges)",
            (r, t) => [Normal(r, t, 2, 14, 1, 128), Normal(r, t, 2, 2, 1024, 128), Normal(r, t, 2, 2, 1024, 128), Tensor.FromArray(new long[] { 159, 700 }, 2)],
            x =>
            {
                using var scope = TensorScope.Begin();
                var o = Tensor.AttentionAt(x[0], x[1], x[2], x[3]);
                SameAsEagerPerRow(x, o, "AttentionAt");
                return scope.Keep(o);
            }));
        c.Add(new("attention decode T3 mask D64 S70", (r, t) => [Normal(r, t, 2, 4, 3, 64), Normal(r, t, 2, 2, 70, 64), Normal(r, t, 2, 2, 70, 64), PaddingMask(r, t, 70)],
            x => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], x[3], causal: true, queryOffset: 67)));
        c.Add(new("attention decode T2 S600 split+lse", (r, t) => [Normal(r, t, 1, 7, 2, 128), Normal(r, t, 1, 1, 600, 128), Normal(r, t, 1, 1, 600, 128)],
            x =>
            {
                using var scope = TensorScope.Begin();
                var o = Tensor.ScaledDotProductAttention(x[0], x[1], x[2], out var lse, causal: true, queryOffset: 598);
                return scope.Keep(Tensor.Concat(0, o.Contiguous().Reshape((int)o.Count), lse.To(x[0].DType).Reshape((int)lse.Count)));
            }));
        c.Add(new("attention log-sum-exp", (r, t) => [Normal(r, t, 1, 4, 16, 128), Normal(r, t, 1, 1, 16, 128), Normal(r, t, 1, 1, 16, 128)],
            x => { using var o = Tensor.ScaledDotProductAttention(x[0], x[1], x[2], out var lse, causal: true); return lse; }));
        c.Add(new("attention backward (causal, GQA)",
            (r, t) => [Normal(r, t, 1, 4, 32, 64), Normal(r, t, 1, 2, 32, 64), Normal(r, t, 1, 2, 32, 64), Normal(r, t, 1, 4, 32, 64)],
            x => AttentionGrads(x, null, 0)));
        c.Add(new("attention backward (mask, offset)",
            (r, t) => [Normal(r, t, 2, 4, 8, 80), Normal(r, t, 2, 2, 32, 80), Normal(r, t, 2, 2, 32, 80), Normal(r, t, 2, 4, 8, 80), PaddingMask(r, t)],
            x => AttentionGrads(x, x[4], 24)));
        c.Add(new("attention bwd D128 causal GQA T100",
            (r, t) => [Normal(r, t, 1, 4, 100, 128), Normal(r, t, 1, 2, 100, 128), Normal(r, t, 1, 2, 100, 128), Normal(r, t, 1, 4, 100, 128)],
            x => AttentionGrads(x, null, 0)));
        c.Add(new("attention bwd D64 mask offset S150",
            (r, t) => [Normal(r, t, 2, 4, 20, 64), Normal(r, t, 2, 2, 150, 64), Normal(r, t, 2, 2, 150, 64), Normal(r, t, 2, 4, 20, 64), PaddingMask(r, t, 150)],
            x => AttentionGrads(x, x[4], 130)));
        c.AddRange(SelfTestCudnnCases.All());
        // Our tensor-core kernels in bf16 with cuDNN's attention switched off for the row (the rows above take the default
        // dispatch, which sends unmasked bf16 calls to cuDNN): the backward with Qwen2-0.5B's grouped heads (7 query heads a
        // kv head: the dK/dV kernel's split per query head and its reduce), and head dim 128 with a mask and an offset
        // (ragged tiles, the per-element checks); the forward as each kernel: the 128-row kernels (the default for head
        // dims 64 and 128) and the per-head-dim ones (head dim 80, and PARROT_ATTENTION_FWD=per-dim).
        c.Add(new("attention bwd GQA7 D64 T130 ours",
            (r, t) => [Normal(r, t, 1, 14, 130, 64), Normal(r, t, 1, 2, 130, 64), Normal(r, t, 1, 2, 130, 64), Normal(r, t, 1, 14, 130, 64)],
            x => OnOurKernels(x[0], true, () => AttentionGrads(x, null, 0))));
        c.Add(new("attention bwd D128 mask offset ours",
            (r, t) => [Normal(r, t, 2, 4, 70, 128), Normal(r, t, 2, 2, 100, 128), Normal(r, t, 2, 2, 100, 128), Normal(r, t, 2, 4, 70, 128), PaddingMask(r, t, 100)],
            x => OnOurKernels(x[0], true, () => AttentionGrads(x, x[4], 30))));
        c.Add(new("attention D80 (mask, offset) fwd per-dim",
            (r, t) => [Normal(r, t, 2, 4, 70, 80), Normal(r, t, 2, 2, 100, 80), Normal(r, t, 2, 2, 100, 80), PaddingMask(r, t, 100)],
            x => OnOurKernels(x[0], true, () => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], x[3], causal: true, queryOffset: 30))));
        // Head dim 128 causal with grouped heads, an additive mask and a query offset, 200 query rows (a ragged second
        // 128-row block), and head dim 64 causal GQA (the diagonal tiles' per-element path), on each forward kernel.
        foreach (bool m128 in new[] { true, false })
        {
            string kernel = m128 ? "m128" : "per-dim";
            c.Add(new($"attention D128 causal GQA mask offset T200 fwd {kernel}",
                (r, t) => [Normal(r, t, 2, 4, 200, 128), Normal(r, t, 2, 2, 230, 128), Normal(r, t, 2, 2, 230, 128), PaddingMask(r, t, 230)],
                x => OnOurKernels(x[0], m128, () => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], x[3], causal: true, queryOffset: 30))));
            c.Add(new($"attention D64 causal GQA T150 fwd {kernel}",
                (r, t) => [Normal(r, t, 1, 4, 150, 64), Normal(r, t, 1, 2, 150, 64), Normal(r, t, 1, 2, 150, 64)],
                x => OnOurKernels(x[0], m128, () => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], null, causal: true))));
        }
        return c;
    }

    /// <summary>
    /// <paramref name="f"/> on our attention kernels: the CUDA backend's cuDNN attention off (<c>CudnnAttention</c>,
    /// <c>CudnnAttentionRequired</c>) and its forward on the 128-row kernels for head dims 64 and 128
    /// (<c>AttentionForwardM128</c>, <paramref name="m128"/>) or on the per-head-dim ones; the switches back to what
    /// they were afterwards. Other backends run it as it is.
    /// </summary>
    internal static Tensor OnOurKernels(Tensor x, bool m128, Func<Tensor> f)
    {
        if (x.Backend is not global::Parrot.Tensors.Cuda.CudaBackend cuda) return f();
        (bool cudnn, bool required, bool wasM128) = (cuda.CudnnAttention, cuda.CudnnAttentionRequired, cuda.AttentionForwardM128);
        (cuda.CudnnAttention, cuda.CudnnAttentionRequired, cuda.AttentionForwardM128) = (false, false, m128);
        try { return f(); }
        finally { (cuda.CudnnAttention, cuda.CudnnAttentionRequired, cuda.AttentionForwardM128) = (cudnn, required, wasM128); }
    }

    private static Tensor BadAt(Tensor index, int flat, long value)
    {
        var v = index.ToLongArray();
        v[flat] = value;
        var shape = index.Shape.ToArray();
        index.Dispose();
        return Tensor.FromArray(v, shape);
    }

    /// <summary>
    /// [1, 1, 1] when the bad id is named at its position, the bad target at its row, and a read afterwards is clean;
    /// throws (a FAIL row saying what went wrong) otherwise, so the case cannot pass by all devices agreeing on less.
    /// </summary>
    private static Tensor RaisesNamed(Tensor[] x)
    {
        static double Named(Func<Tensor> run, string words)
        {
            try { using var y = run(); _ = y.ToDoubleArray(); }
            catch (ArgumentOutOfRangeException e)
            {
                if (e.Message.Contains(words, StringComparison.Ordinal)) return 1;
                throw new InvalidOperationException($"the error does not say \"{words}\": {e.Message}");
            }
            throw new InvalidOperationException($"no error was raised where one should say \"{words}\"");
        }
        double id = Named(() => Tensor.Embedding(x[0], x[1]), "id 500 at position [2, 4]");
        double target = Named(() =>
        {
            using var scope = TensorScope.Begin();
            var h = Tensor.Embedding(x[0], x[1].Narrow(0, 0, 2).Reshape(66)); // rows 0–1 of the ids: all valid
            var logits = Tensor.MatMul(h, x[0].Transpose(0, 1));             // [66, 500]
            return scope.Keep(Tensor.CrossEntropy(logits, x[2].Narrow(0, 0, 66)));
        }, "target -7 at row 9");
        using var fine = Tensor.Embedding(x[0], x[2].Narrow(0, 10, 4));
        double after = fine.ToDoubleArray().Length == 4 * 64 ? 1 : 0;
        return Tensor.FromArray([id, target, after]);
    }

    /// <summary>
    /// <see cref="Tensor.AttentionAt"/>'s output <paramref name="o"/> for q, k, v, positions = <paramref name="x"/>[0..3]
    /// against the eager causal attention over each row's own keys (0 … position): the same bits, else it throws.
    /// </summary>
    internal static void SameAsEagerPerRow(Tensor[] x, Tensor o, string what)
    {
        var pos = x[3].ToLongArray();
        for (int b = 0; b < pos.Length; b++)
        {
            int n = (int)pos[b] + 1;
            using var want = Tensor.ScaledDotProductAttention(x[0].Narrow(0, b, 1), x[1].Narrow(0, b, 1).Narrow(2, 0, n), x[2].Narrow(0, b, 1).Narrow(2, 0, n),
                causal: true, queryOffset: (int)pos[b]);
            if (!o.Narrow(0, b, 1).ToFloatArray().AsSpan().SequenceEqual(want.ToFloatArray()))
                throw new InvalidOperationException($"{what}: row {b} at position {pos[b]} differs from the eager attention over its {n} keys");
        }
    }
}
