namespace Parrot.Tensors.Tests;

/// <summary>
/// Fused scaled-dot-product attention against a float64 loop written here (scores, masks, exact softmax,
/// weighted sum), on the float64 values of the inputs. Tolerances on outputs (values are averages of v, |v| ≲ 4):
/// F64 1e-12; F32 2e-6 absolute + 1e-5 relative (the log-sum-exp too); BF16 one bf16 rounding of the output
/// (2^-8 relative) + 2e-3 absolute, the log-sum-exp (float32) within 1e-4·(1 + |L|).
/// </summary>
public class AttentionTests
{
    /// <summary>A problem: batch, heads, kv heads, queries, keys, head dims, causal, query offset and the mask kind.</summary>
    public sealed record Case(int B, int H, int Hkv, int T, int S, int D, int Dv, bool Causal, int Offset, string Mask)
    {
        public override string ToString() => $"B{B} H{H}/{Hkv} T{T} S{S} D{D}/{Dv} {(Causal ? $"causal+{Offset}" : "full")} mask:{Mask}";
    }

    public static IEnumerable<Case> Cases()
    {
        yield return new Case(1, 14, 2, 37, 37, 64, 64, true, 0, "none");        // Qwen2-0.5B heads, prefill
        yield return new Case(1, 14, 2, 1, 160, 64, 64, true, 159, "none");      // a decode step with the KV cache
        yield return new Case(1, 14, 2, 5, 70, 64, 64, true, 65, "none");        // several new tokens after a cache
        yield return new Case(2, 4, 4, 17, 33, 7, 5, false, 0, "full");          // multi-head, odd dims, T ≠ S, random mask
        yield return new Case(1, 3, 1, 1, 1, 1, 33, false, 0, "none");           // size-one dims
        yield return new Case(2, 6, 2, 9, 9, 64, 64, true, 0, "padding");        // right padding on the second row
        yield return new Case(2, 2, 1, 12, 12, 17, 17, true, 0, "tokens");       // a [T, S] mask broadcast over batch and heads
        yield return new Case(1, 2, 2, 10, 4, 16, 16, true, 0, "none");          // more queries than keys
        yield return new Case(1, 8, 2, 200, 200, 64, 64, true, 0, "padding");    // several key and query blocks, both threads
        yield return new Case(1, 2, 1, 3, 130, 33, 80, false, 0, "full");        // value width above one 64-column tile
    }

    private static Tensor? Mask(Case c)
    {
        switch (c.Mask)
        {
            case "none": return null;
            case "full": return Tensor.Normal([c.B, c.H, c.T, c.S], seed: 9, std: 2);
            case "tokens": return Tensor.Uniform([c.T, c.S], seed: 10, low: -3, high: 0);
            default:
            {
                // Real tokens get 0, padding −∞; the second sequence is two tokens shorter.
                var m = new float[c.B * c.S];
                for (int b = 0; b < c.B; b++)
                    for (int j = 0; j < c.S; j++) m[b * c.S + j] = b == 1 && j >= c.S - 2 ? float.NegativeInfinity : 0;
                return Tensor.FromArray(m, c.B, 1, 1, c.S);
            }
        }
    }

    /// <summary>
    /// The float64 reference: o [B, H, T, Dv] and the log-sum-exp [B, H, T]; a row that sees no key is NaN with
    /// a log-sum-exp of −∞.
    /// </summary>
    internal static (double[] O, double[] Lse) Reference(double[] q, double[] k, double[] v, double[]? mask, Case c, double scale)
    {
        var o = new double[c.B * c.H * c.T * c.Dv];
        var lse = new double[c.B * c.H * c.T];
        var s = new double[c.S];
        for (int b = 0; b < c.B; b++)
            for (int h = 0; h < c.H; h++)
                for (int i = 0; i < c.T; i++)
                {
                    int hk = h / (c.H / c.Hkv);
                    long row = ((long)b * c.H + h) * c.T + i;
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < c.S; j++)
                    {
                        if (c.Causal && j > c.Offset + i) { s[j] = double.NegativeInfinity; continue; }
                        double dot = 0;
                        for (int d = 0; d < c.D; d++) dot += q[row * c.D + d] * k[(((long)b * c.Hkv + hk) * c.S + j) * c.D + d];
                        s[j] = dot * scale + (mask is null ? 0 : mask[row * c.S + j]);
                        max = Math.Max(max, s[j]);
                    }
                    if (double.IsNegativeInfinity(max))
                    {
                        for (int e = 0; e < c.Dv; e++) o[row * c.Dv + e] = double.NaN;
                        lse[row] = double.NegativeInfinity;
                        continue;
                    }
                    double sum = 0;
                    for (int j = 0; j < c.S; j++) sum += Math.Exp(s[j] - max);
                    for (int e = 0; e < c.Dv; e++)
                    {
                        double acc = 0;
                        for (int j = 0; j < c.S; j++) acc += Math.Exp(s[j] - max) * v[(((long)b * c.Hkv + hk) * c.S + j) * c.Dv + e];
                        o[row * c.Dv + e] = acc / sum;
                    }
                    lse[row] = max + Math.Log(sum);
                }
        return (o, lse);
    }

    /// <summary>The mask's values at every [b, h, i, j], broadcast as NumPy does.</summary>
    internal static double[]? FullMask(Tensor? mask, Case c)
    {
        if (mask is null) return null;
        var data = mask.ToDoubleArray();
        var shape = mask.Shape.ToArray();
        int[] full = [c.B, c.H, c.T, c.S];
        var r = new double[c.B * c.H * c.T * c.S];
        for (long f = 0; f < r.Length; f++) r[f] = TestUtil.AtBroadcast(data, shape, TestUtil.Unflatten(f, full));
        return r;
    }

    private static (double Rtol, double Atol, double LseRtol) Tolerance(DType dt) => dt switch
    {
        DType.F64 => (1e-12, 1e-12, 1e-12),
        DType.BF16 => (1.0 / 256, 2e-3, 1e-4),
        _ => (1e-5, 2e-6, 1e-5),
    };

    private static void Check(Tensor q, Tensor k, Tensor v, Tensor? mask, Case c, double scale, string what)
    {
        var (eo, else_) = Reference(q.ToDoubleArray(), k.ToDoubleArray(), v.ToDoubleArray(), FullMask(mask, c), c, scale);
        using var scope = TensorScope.Begin();
        var o = Tensor.ScaledDotProductAttention(q, k, v, out var lse, mask, c.Causal, c.Offset, scale);
        Assert.That(o.Shape.ToArray(), Is.EqualTo(new[] { c.B, c.H, c.T, c.Dv }), what);
        Assert.That(o.DType, Is.EqualTo(q.DType), what);
        Assert.That(lse.Shape.ToArray(), Is.EqualTo(new[] { c.B, c.H, c.T }), what);
        var (rtol, atol, lseRtol) = Tolerance(q.DType);
        TestUtil.AssertClose(o.ToDoubleArray(), eo, rtol, atol, $"{what} output");
        TestUtil.AssertClose(lse.ToDoubleArray(), else_, lseRtol, lseRtol, $"{what} log-sum-exp");
        // Without asking for the log-sum-exp: the same output.
        var o2 = Tensor.ScaledDotProductAttention(q, k, v, mask, c.Causal, c.Offset, scale);
        Assert.That(o2.ToDoubleArray(), Is.EqualTo(o.ToDoubleArray()), $"{what}: output without the log-sum-exp");
    }

    [Test]
    public void MatchesFloat64Loop([ValueSource(nameof(Cases))] Case c, [Values(DType.F32, DType.F64, DType.BF16)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var q = Tensor.Normal([c.B, c.H, c.T, c.D], seed: 1, dtype: dtype);
        var k = Tensor.Normal([c.B, c.Hkv, c.S, c.D], seed: 2, dtype: dtype);
        var v = Tensor.Normal([c.B, c.Hkv, c.S, c.Dv], seed: 3, dtype: dtype);
        Check(q, k, v, Mask(c), c, 1 / Math.Sqrt(Math.Max(c.D, 1)), $"{c} {dtype}");
    }

    [Test]
    public void DefaultScaleIsOneOverRootD()
    {
        using var scope = TensorScope.Begin();
        var c = new Case(1, 2, 1, 6, 6, 20, 20, true, 0, "none");
        var q = Tensor.Normal([1, 2, 6, 20], seed: 4, std: 3);
        var k = Tensor.Normal([1, 1, 6, 20], seed: 5);
        var v = Tensor.Normal([1, 1, 6, 20], seed: 6);
        var expected = Reference(q.ToDoubleArray(), k.ToDoubleArray(), v.ToDoubleArray(), null, c, 1 / Math.Sqrt(20)).O;
        TestUtil.AssertClose(Tensor.ScaledDotProductAttention(q, k, v, causal: true).ToDoubleArray(), expected, 1e-5, 2e-6, "default scale");
        var big = Reference(q.ToDoubleArray(), k.ToDoubleArray(), v.ToDoubleArray(), null, c, 0.7).O;
        TestUtil.AssertClose(Tensor.ScaledDotProductAttention(q, k, v, causal: true, scale: 0.7).ToDoubleArray(), big, 1e-5, 2e-6, "scale 0.7");
    }

    [Test]
    public void NonContiguousOperandsAreReadInPlace([Values(DType.F32, DType.BF16)] DType dtype)
    {
        // The layer's layout: q from a [B, T, H, D] projection, transposed; k and v the prefix of a longer
        // cache; and a head dim with a stride (a [.., D, S] tensor transposed).
        using var scope = TensorScope.Begin();
        var c = new Case(2, 6, 3, 11, 21, 16, 24, true, 10, "full");
        var q = Tensor.Normal([2, 11, 6, 16], seed: 11, dtype: dtype).Transpose(1, 2);
        var k = Tensor.Normal([2, 3, 16, 40], seed: 12, dtype: dtype).Transpose(2, 3).Narrow(2, 0, 21);
        var v = Tensor.Normal([2, 3, 50, 48], seed: 13, dtype: dtype).Narrow(2, 5, 21).Slice(3, step: 2);
        var mask = Tensor.Normal([2, 6, 21, 11], seed: 14).Transpose(2, 3);
        Assert.That(q.IsContiguous || k.IsContiguous || v.IsContiguous || mask.IsContiguous, Is.False);
        Check(q, k, v, mask, c, 0.25, $"strided {dtype}");
    }

    [Test]
    public void OutputIsLaidOutForTheOutputProjection()
    {
        using var scope = TensorScope.Begin();
        var q = Tensor.Normal([2, 4, 3, 8], seed: 1);
        var kv = Tensor.Normal([2, 2, 3, 8], seed: 2);
        var o = Tensor.ScaledDotProductAttention(q, kv, kv, causal: true);
        Assert.That(o.Transpose(1, 2).IsContiguous, Is.True);
        Assert.That(o.Contiguous().ToDoubleArray(), Is.EqualTo(o.ToDoubleArray()));
    }

    [Test]
    public void RowsThatSeeNoKeyAreNaN()
    {
        using var scope = TensorScope.Begin();
        var q = Tensor.Normal([1, 2, 3, 8], seed: 1);
        var k = Tensor.Normal([1, 1, 4, 8], seed: 2);
        var v = Tensor.Normal([1, 1, 4, 8], seed: 3);
        // Row 1 of every head masks all keys; row 2 masks all but key 3.
        var m = new float[3 * 4];
        for (int j = 0; j < 4; j++) { m[4 + j] = float.NegativeInfinity; m[8 + j] = j == 3 ? 0 : float.NegativeInfinity; }
        var mask = Tensor.FromArray(m, 3, 4);
        foreach (var dt in new[] { DType.F32, DType.F64 })
        {
            var o = Tensor.ScaledDotProductAttention(q.To(dt), k.To(dt), v.To(dt), out var lse, mask);
            var ov = o.ToDoubleArray();
            var lv = lse.ToDoubleArray();
            for (int h = 0; h < 2; h++)
            {
                Assert.That(ov.Skip((h * 3 + 1) * 8).Take(8), Is.All.NaN, $"{dt} head {h} masked row");
                Assert.That(lv[h * 3 + 1], Is.EqualTo(double.NegativeInfinity), $"{dt} head {h} masked row log-sum-exp");
                // One visible key: the output is that key's value.
                var v3 = v.ToDoubleArray().Skip(3 * 8).Take(8).ToArray();
                TestUtil.AssertClose(ov.Skip((h * 3 + 2) * 8).Take(8).ToArray(), v3, 1e-6, 1e-6, $"{dt} single key");
            }
        }
        // No keys at all, and a causal offset that hides every key from the first query... which cannot happen with
        // offset ≥ 0 and S ≥ 1, so check S = 0 instead.
        var empty = Tensor.ScaledDotProductAttention(q, Tensor.Zeros([1, 1, 0, 8]), Tensor.Zeros([1, 1, 0, 5]), out var lse0);
        Assert.That(empty.ToDoubleArray(), Is.All.NaN);
        Assert.That(lse0.ToDoubleArray(), Is.All.EqualTo(double.NegativeInfinity));
    }

    [Test]
    public void EmptyQueriesGiveAnEmptyResult()
    {
        using var scope = TensorScope.Begin();
        var o = Tensor.ScaledDotProductAttention(Tensor.Zeros([1, 2, 0, 8]), Tensor.Zeros([1, 1, 4, 8]), Tensor.Zeros([1, 1, 4, 6]), causal: true);
        Assert.That(o.Shape.ToArray(), Is.EqualTo(new[] { 1, 2, 0, 6 }));
    }

    [Test]
    public void LargeScoresDoNotOverflow()
    {
        using var scope = TensorScope.Begin();
        var c = new Case(1, 2, 2, 70, 70, 32, 32, true, 0, "none");
        var q = Tensor.Normal([1, 2, 70, 32], seed: 21, std: 30);
        var k = Tensor.Normal([1, 2, 70, 32], seed: 22, std: 30);
        var v = Tensor.Normal([1, 2, 70, 32], seed: 23);
        // Scores of size ~1000: exp would overflow without the running max. Row maxima move between key blocks,
        // so this also checks the rescaling of what was accumulated.
        var (eo, _) = Reference(q.ToDoubleArray(), k.ToDoubleArray(), v.ToDoubleArray(), null, c, 1.0 / 8);
        TestUtil.AssertClose(Tensor.ScaledDotProductAttention(q, k, v, causal: true, scale: 1.0 / 8).ToDoubleArray(), eo, 1e-4, 1e-4, "large scores");
    }

    [Test]
    public void KernelExpIsAccurateOverTheSoftmaxRange()
    {
        // The kernel's own e^x for x ≤ 0: within 2e-7 relative where the result is a normal float, 0 below the
        // float range and for −∞, NaN for NaN.
        var xs = Enumerable.Range(0, 20000).Select(i => -87.3f * i / 19999f).Concat([-1e-30f, -0f, -87.5f, -100f, -1e6f, float.NegativeInfinity, float.NaN]).ToArray();
        for (int i = 0; i < xs.Length; i += 16)
        {
            var chunk = new float[16];
            Array.Copy(xs, i, chunk, 0, Math.Min(16, xs.Length - i));
            var y = Parrot.Tensors.Cpu.AttentionF32.ExpNonPositive(System.Runtime.Intrinsics.Vector512.Create(chunk));
            for (int j = 0; j < 16 && i + j < xs.Length; j++)
            {
                float x = chunk[j], got = y[j];
                if (float.IsNaN(x)) { Assert.That(float.IsNaN(got), $"exp({x})"); continue; }
                double want = Math.Exp(x);
                if (x < -87.33f) Assert.That(got, Is.EqualTo(0f), $"exp({x})");
                else Assert.That(got, Is.EqualTo(want).Within(2e-7 * want), $"exp({x})");
            }
        }
    }

    [Test]
    public void BadInputThrowsNamingTheOp()
    {
        using var scope = TensorScope.Begin();
        var q = Tensor.Zeros([1, 4, 3, 8]);
        var k = Tensor.Zeros([1, 2, 5, 8]);
        var v = Tensor.Zeros([1, 2, 5, 8]);
        void Throws<T>(TestDelegate f, string what) where T : Exception =>
            Assert.That(Assert.Throws<T>(f)!.Message, Does.Contain("ScaledDotProductAttention"), what);
        Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(Tensor.Zeros([4, 3, 8]), k, v), "rank");
        Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, Tensor.Zeros([1, 3, 5, 8]), Tensor.Zeros([1, 3, 5, 8])), "heads not a multiple");
        Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, Tensor.Zeros([1, 2, 5, 7]), v), "head dim");
        Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, k, Tensor.Zeros([1, 2, 6, 8])), "k and v lengths");
        Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, Tensor.Zeros([2, 2, 5, 8]), Tensor.Zeros([2, 2, 5, 8])), "batch");
        Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, k.To(DType.F64), v), "mixed dtypes");
        Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q.To(DType.I32), k.To(DType.I32), v.To(DType.I32)), "integers");
        Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, k, v, Tensor.Zeros([3, 4])), "mask does not broadcast");
        Throws<ArgumentException>(() => Tensor.ScaledDotProductAttention(q, k, v, Tensor.Zeros([3, 5], DType.Bool)), "boolean mask");
        Throws<ArgumentOutOfRangeException>(() => Tensor.ScaledDotProductAttention(q, k, v, causal: true, queryOffset: -1), "negative offset");
        Throws<ArgumentOutOfRangeException>(() => Tensor.ScaledDotProductAttention(q, k, v, scale: double.NaN), "NaN scale");
        var dead = Tensor.Zeros([1, 2, 5, 8]);
        dead.Dispose();
        Throws<ObjectDisposedException>(() => Tensor.ScaledDotProductAttention(q, dead, v), "disposed");
    }
}
