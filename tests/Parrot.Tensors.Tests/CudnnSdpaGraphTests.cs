using System.Reflection;
using Parrot.Tensors.Cuda;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Tests;

/// <summary>
/// cuDNN's fused attention without cuDNN: the forward and backward operation graphs (<see cref="CudnnSdpaGraphs"/>),
/// evaluated node by node in float64 (<see cref="CudnnGraphInterpreter"/>), against the CPU backend's float64 attention
/// (itself checked against naive loops in AttentionTests), the backward both atomic and deterministic (no dQ
/// accumulator); which calls may take the cuDNN path; the plan key; the deterministic switch and workspace limit; the
/// interop enum tables; and the reason given on a machine without cuDNN. Whether cuDNN accepts these graphs and how
/// fast its engines run them is for `parrot selftest --device cuda` on a GPU (rows "... (cuDNN SDPA)").
/// </summary>
public class CudnnSdpaGraphTests
{
    public sealed record Case(int B, int H, int Hkv, int T, int S, int D, int Dv, bool Causal, int Offset, bool Strided)
    {
        public override string ToString() => $"B{B} H{H}/{Hkv} T{T} S{S} D{D}/{Dv} {(Causal ? $"causal+{Offset}" : "full")}{(Strided ? " BTHD" : "")}";
    }

    /// <summary>Every case in both frontend styles (the current one with −∞ and with lowest as the hidden score).</summary>
    public static IEnumerable<TestCaseData> Styled()
    {
        foreach (var c in Cases())
        {
            yield return new TestCaseData(c, false, false).SetArgDisplayNames(c.ToString(), "frontend 1.5");
            yield return new TestCaseData(c, true, true).SetArgDisplayNames(c.ToString(), "current, -inf");
            yield return new TestCaseData(c, true, false).SetArgDisplayNames(c.ToString(), "current, lowest");
        }
    }

    /// <summary>The backward's cases: each style with the atomic (dQ accumulator) and the deterministic graph.</summary>
    public static IEnumerable<TestCaseData> StyledBackward()
    {
        foreach (var c in Cases())
            foreach (bool deterministic in new[] { false, true })
            {
                string dq = deterministic ? "deterministic" : "atomic";
                yield return new TestCaseData(c, false, false, deterministic).SetArgDisplayNames(c.ToString(), "frontend 1.5", dq);
                yield return new TestCaseData(c, true, true, deterministic).SetArgDisplayNames(c.ToString(), "current, -inf", dq);
                yield return new TestCaseData(c, true, false, deterministic).SetArgDisplayNames(c.ToString(), "current, lowest", dq);
            }
    }

    private static CudnnSdpaStyle Style(bool current) => current ? CudnnSdpaStyle.FrontendCurrent : CudnnSdpaStyle.Frontend15;

    public static IEnumerable<Case> Cases()
    {
        yield return new Case(1, 2, 2, 6, 6, 8, 8, true, 0, false);      // square, causal top-left, one head a kv head
        yield return new Case(2, 4, 2, 5, 7, 8, 16, true, 0, true);      // grouped heads, T < S top-left, Dv ≠ D, q/o/dq in [B, T, H, D]
        yield return new Case(1, 6, 2, 3, 9, 16, 8, true, 6, true);      // bottom-right: a chunk after a cache of 6
        yield return new Case(2, 3, 1, 4, 5, 8, 8, false, 0, false);     // no mask, one kv head for three query heads
    }

    private static long[] Bhsd(int b, int h, int s, int d) => [(long)h * s * d, (long)s * d, d, 1];
    private static long[] Bshd(int b, int h, int s, int d) => [(long)s * h * d, d, (long)h * d, 1];

    private static double[] Random(long n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, (int)n).Select(_ => r.NextDouble() * 2 - 1).ToArray();
    }

    /// <summary>Memory holding a logical row-major [d0..d3] array at <paramref name="strides"/>.</summary>
    private static double[] Lay(double[] logical, int[] dims, long[] strides)
    {
        long size = 1;
        for (int i = 0; i < 4; i++) size += (dims[i] - 1) * strides[i];
        var mem = new double[size];
        long n = 0;
        for (int a = 0; a < dims[0]; a++)
            for (int b = 0; b < dims[1]; b++)
                for (int c = 0; c < dims[2]; c++)
                    for (int d = 0; d < dims[3]; d++)
                        mem[a * strides[0] + b * strides[1] + c * strides[2] + d * strides[3]] = logical[n++];
        return mem;
    }

    private static double[] Unlay(double[] mem, int[] dims, long[] strides)
    {
        var v = new double[dims.Aggregate(1L, (x, y) => x * y)];
        long n = 0;
        for (int a = 0; a < dims[0]; a++)
            for (int b = 0; b < dims[1]; b++)
                for (int c = 0; c < dims[2]; c++)
                    for (int d = 0; d < dims[3]; d++)
                        v[n++] = mem[a * strides[0] + b * strides[1] + c * strides[2] + d * strides[3]];
        return v;
    }

    private static void Close(double[] got, double[] want, string what)
    {
        Assert.That(got, Has.Length.EqualTo(want.Length), what);
        double worst = 0;
        for (int i = 0; i < got.Length; i++) worst = Math.Max(worst, Math.Abs(got[i] - want[i]));
        Assert.That(worst, Is.LessThan(1e-10), $"{what}: largest difference {worst:G3}");
    }

    private sealed record Problem(CudnnSdpaProblem P, double[] Q, double[] K, double[] V, double[] DOut, int[] QShape, int[] KShape, int[] VShape, int[] OShape);

    private static Problem Make(Case c, bool backward)
    {
        Assert.That(CudnnSdpaProblem.Check(backward, DType.BF16, DType.BF16, c.H, c.Hkv, c.T, c.S, c.D, c.Dv, false, c.Causal, c.Offset, out var mask), Is.Null);
        int[] qs = [c.B, c.H, c.T, c.D], ks = [c.B, c.Hkv, c.S, c.D], vs = [c.B, c.Hkv, c.S, c.Dv], os = [c.B, c.H, c.T, c.Dv];
        long[] rowMajorQ = c.Strided ? Bshd(c.B, c.H, c.T, c.D) : Bhsd(c.B, c.H, c.T, c.D);
        long[] rowMajorO = c.Strided ? Bshd(c.B, c.H, c.T, c.Dv) : Bhsd(c.B, c.H, c.T, c.Dv);
        var p = new CudnnSdpaProblem(backward, DType.BF16, c.B, c.H, c.Hkv, c.T, c.S, c.D, c.Dv, mask, true,
            rowMajorQ, Bhsd(c.B, c.Hkv, c.S, c.D), Bhsd(c.B, c.Hkv, c.S, c.Dv), rowMajorO, [(long)c.H * c.T, c.T, 1],
            backward ? Bhsd(c.B, c.H, c.T, c.Dv) : null, backward ? rowMajorQ : null,
            backward ? Bhsd(c.B, c.Hkv, c.S, c.D) : null, backward ? Bshd(c.B, c.Hkv, c.S, c.Dv) : null);
        long n(int[] s) => s.Aggregate(1L, (x, y) => x * y);
        return new Problem(p, Random(n(qs), 1), Random(n(ks), 2), Random(n(vs), 3), Random(n(os), 4), qs, ks, vs, os);
    }

    private static Tensor T64(double[] v, int[] shape) => Tensor.FromArray(v, shape);

    [TestCaseSource(nameof(Styled))]
    public void ForwardGraphComputesAttentionAndItsLogSumExp(Case c, bool currentFrontend, bool negativeInfinity)
    {
        var pr = Make(c, backward: false);
        var p = pr.P;
        double scale = 0.37;
        var mem = new Dictionary<long, double[]>
        {
            [CudnnSdpaGraphs.UidQ] = Lay(pr.Q, pr.QShape, p.Q), [CudnnSdpaGraphs.UidK] = Lay(pr.K, pr.KShape, p.K),
            [CudnnSdpaGraphs.UidV] = Lay(pr.V, pr.VShape, p.V), [CudnnSdpaGraphs.UidO] = Lay(new double[pr.DOut.Length], pr.OShape, p.O),
            [CudnnSdpaGraphs.UidStats] = new double[c.B * c.H * c.T],
        };
        var g = CudnnSdpaGraphs.Forward(p, Style(currentFrontend), negativeInfinity);
        _ = new CudnnGraphInterpreter(g, mem, scale);

        using var q = T64(pr.Q, pr.QShape);
        using var k = T64(pr.K, pr.KShape);
        using var v = T64(pr.V, pr.VShape);
        using var o = Tensor.ScaledDotProductAttention(q, k, v, out var lse, null, c.Causal, c.Offset, scale);
        using (lse)
        {
            Close(Unlay(mem[CudnnSdpaGraphs.UidO], pr.OShape, p.O), o.ToDoubleArray(), "O");
            Close(mem[CudnnSdpaGraphs.UidStats], lse.ToDoubleArray(), "stats (log-sum-exp)");
        }
    }

    [TestCaseSource(nameof(StyledBackward))]
    public void BackwardGraphComputesTheGradients(Case c, bool currentFrontend, bool negativeInfinity, bool deterministic)
    {
        var pr = Make(c, backward: true);
        var p = pr.P with { Deterministic = deterministic };
        double scale = 0.29;
        using var q = T64(pr.Q, pr.QShape);
        using var k = T64(pr.K, pr.KShape);
        using var v = T64(pr.V, pr.VShape);
        using var dO = T64(pr.DOut, pr.OShape);
        using var o = Tensor.ScaledDotProductAttention(q, k, v, out var lse, null, c.Causal, c.Offset, scale);
        using var _l = lse;
        var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(q, k, v, o, lse, dO, null, c.Causal, c.Offset, scale);
        using var _q = dq; using var _k = dk; using var _v = dv;

        var mem = new Dictionary<long, double[]>
        {
            [CudnnSdpaGraphs.UidQ] = Lay(pr.Q, pr.QShape, p.Q), [CudnnSdpaGraphs.UidK] = Lay(pr.K, pr.KShape, p.K),
            [CudnnSdpaGraphs.UidV] = Lay(pr.V, pr.VShape, p.V), [CudnnSdpaGraphs.UidO] = Lay(o.ToDoubleArray(), pr.OShape, p.O),
            [CudnnSdpaGraphs.UidStats] = lse.ToDoubleArray(), [CudnnSdpaGraphs.UidDOut] = Lay(pr.DOut, pr.OShape, p.DOut!),
            [CudnnSdpaGraphs.UidDq] = Lay(new double[pr.Q.Length], pr.QShape, p.Dq!),
            [CudnnSdpaGraphs.UidDk] = Lay(new double[pr.K.Length], pr.KShape, p.Dk!),
            [CudnnSdpaGraphs.UidDv] = Lay(new double[pr.V.Length], pr.VShape, p.Dv_!),
            [CudnnSdpaGraphs.UidSoftmaxSum] = new double[c.B * c.H * c.T],
        };
        // The deterministic graph gets no accumulator memory: a graph that still used one would fail to read it here.
        if (!deterministic) mem[CudnnSdpaGraphs.UidDqAccum] = new double[pr.Q.Length];
        _ = new CudnnGraphInterpreter(CudnnSdpaGraphs.Backward(p, Style(currentFrontend), negativeInfinity), mem, scale);
        Close(Unlay(mem[CudnnSdpaGraphs.UidDq], pr.QShape, p.Dq!), dq!.ToDoubleArray(), "dQ");
        Close(Unlay(mem[CudnnSdpaGraphs.UidDk], pr.KShape, p.Dk!), dk!.ToDoubleArray(), "dK");
        Close(Unlay(mem[CudnnSdpaGraphs.UidDv], pr.VShape, p.Dv_!), dv!.ToDoubleArray(), "dV");
    }

    [Test]
    public void GraphsBindTheOperandsTheDispatchSupplies()
    {
        var pr = Make(Cases().ElementAt(2), backward: true);
        var fwd = CudnnSdpaGraphs.Forward(pr.P with { Backward = false });
        // By-value scalars are filled by the plan (scale at each call, constants once); the rest the backend binds.
        Assert.That(fwd.Bound.Where(t => !t.ByValue).Select(t => t.Uid), Is.EqualTo(new[] { 1L, 2, 3, 4, 5 }));
        Assert.That(fwd.Bound.Where(t => t.ByValue).Select(t => t.Uid), Is.EqualTo(new[] { 10L, 20, 22, 23 }), "scale, lowest, s_kv, s_q");
        Assert.That(fwd.Constants[CudnnSdpaGraphs.UidSkv] - fwd.Constants[CudnnSdpaGraphs.UidSq], Is.EqualTo(6), "bottom-right shift S − T");
        var bwd = CudnnSdpaGraphs.Backward(pr.P);
        Assert.That(bwd.Bound.Where(t => !t.ByValue).Select(t => t.Uid), Is.EqualTo(new[] { 1L, 2, 3, 4, 5, 6, 7, 8, 9, 11 }));
        var accum = bwd.Tensors.Single(t => t.Uid == CudnnSdpaGraphs.UidDqAccum);
        Assert.That((accum.DataType, accum.Reordering), Is.EqualTo((Cudnn.DataType.Float, Cudnn.Reordering.F16x16)), "float32 dQ accumulator, F16x16 as the frontend marks it");
        Assert.That(fwd.Tensors.Single(t => t.Name == "div").DataType, Is.EqualTo(Cudnn.DataType.BFloat16), "P enters bmm2 in the i/o type");
        var noStats = CudnnSdpaGraphs.Forward(pr.P with { Backward = false, Stats = false, Mask = CudnnSdpaMask.None });
        Assert.That(noStats.Bound.Select(t => t.Uid), Is.EqualTo(new[] { 1L, 2, 3, 4, 10 }), "inference: stats virtual, no mask constants");
        Assert.That(noStats.Ops.Select(o => o.Name), Is.EqualTo(new[] { "bmm1", "attn_scale", "Max", "sub_M", "exp_sub_M", "SumExp", "log", "add", "div", "bmm2" }));

        // The current frontend's backward binds softmax_sum (float32 [B, H, T, 1]) and drops the F16x16 reordering.
        var cur = CudnnSdpaGraphs.Backward(pr.P, CudnnSdpaStyle.FrontendCurrent, negativeInfinity: true);
        Assert.That(cur.Bound.Where(t => !t.ByValue).Select(t => t.Uid), Is.EqualTo(new[] { 1L, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12 }));
        Assert.That(cur.Tensors.Single(t => t.Uid == CudnnSdpaGraphs.UidDqAccum).Reordering, Is.EqualTo(Cudnn.Reordering.None));
        Assert.That(cur.Constants[CudnnSdpaGraphs.UidNegInf], Is.EqualTo(double.NegativeInfinity));
        Assert.That(cur.Ops.Select(o => o.Name).SkipWhile(n => n != "sub_s_m").Skip(1).First(), Is.EqualTo("gen_row_index"), "masked after the stats are subtracted");
        Assert.That(cur.Ops.Any(o => o.Name == "dP_dropout_mask"), Is.False);
        Assert.That(CudnnSdpa.StyleOrder(91300)[0], Is.EqualTo(CudnnSdpaStyle.FrontendCurrent));
        Assert.That(CudnnSdpa.StyleOrder(90600)[0], Is.EqualTo(CudnnSdpaStyle.Frontend15));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void TheDeterministicBackwardDropsTheDqAccumulatorAndNothingElse(bool current)
    {
        // cudnn-frontend's set_deterministic_algorithm(true): no non-virtual float32 dQ_accum (its presence is how the
        // backend API asks for the atomic dQ path), matmul_dS_K writes dQ itself; every other node and tensor as before.
        var style = Style(current);
        foreach (var c in Cases())
        {
            var p = Make(c, backward: true).P;
            var atomic = CudnnSdpaGraphs.Backward(p, style, negativeInfinity: true);
            var det = CudnnSdpaGraphs.Backward(p with { Deterministic = true }, style, negativeInfinity: true);
            long[] boundAtomic = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, .. current ? new long[] { 12 } : []];
            long[] boundDet = [1, 2, 3, 4, 5, 6, 7, 8, 9, .. current ? new long[] { 12 } : []];
            Assert.That(atomic.Bound.Where(t => !t.ByValue).Select(t => t.Uid), Is.EqualTo(boundAtomic), $"{c}: the atomic graph binds dQ_accum");
            Assert.That(det.Bound.Where(t => !t.ByValue).Select(t => t.Uid), Is.EqualTo(boundDet), $"{c}: the deterministic one does not (softmax_sum stays in the current style)");
            Assert.That(det.Tensors.Any(t => t.Uid == CudnnSdpaGraphs.UidDqAccum || t.Name == "dQ_accum"), Is.False);
            Assert.That(det.Tensors.Any(t => t.Reordering != Cudnn.Reordering.None), Is.False, "no F16x16 tensor left");
            var product = det.Ops.OfType<CudnnMatmulSpec>().Single(m => m.Name == "matmul_dS_K");
            Assert.That((product.C.Uid, product.C.DataType), Is.EqualTo((CudnnSdpaGraphs.UidDq, Cudnn.DataType.BFloat16)), "dS·K written into dQ in the i/o type");
            Assert.That(det.Ops.Select(o => o.Name), Is.EqualTo(atomic.Ops.Select(o => o.Name).Where(n => n != "identity_dQ")));
            string Describe(CudnnTensorSpec t) => $"{t.Uid} {t.Name} {t.DataType} [{string.Join(',', t.Dims)}] [{string.Join(',', t.Strides)}] {t.Virtual} {t.ByValue} {t.Reordering}";
            Assert.That(det.Tensors.Select(Describe), Is.EqualTo(atomic.Tensors.Where(t => t.Uid != CudnnSdpaGraphs.UidDqAccum).Select(Describe)));
            Assert.That(det.Constants, Is.EqualTo(atomic.Constants));
        }
        var fwd = Make(Cases().First(), backward: false).P;
        Assert.That(CudnnSdpaGraphs.Forward(fwd with { Deterministic = true }, style).Ops.Select(o => o.Name),
            Is.EqualTo(CudnnSdpaGraphs.Forward(fwd, style).Ops.Select(o => o.Name)), "one forward graph either way");
    }

    [Test]
    public void EveryTensorOfEveryGraphHasANonOverlappingLayout()
    {
        // cuDNN takes strides as given; a virtual tensor whose strides overlap (two elements at one offset) describes no
        // layout an engine can write. Each dim of extent > 1, in order of stride, must step past all smaller ones.
        var pr = Make(Cases().ElementAt(2), backward: true);
        foreach (var style in new[] { CudnnSdpaStyle.Frontend15, CudnnSdpaStyle.FrontendCurrent })
            foreach (var g in new[] { CudnnSdpaGraphs.Forward(pr.P with { Backward = false }, style, negativeInfinity: true), CudnnSdpaGraphs.Backward(pr.P, style, negativeInfinity: true),
                         CudnnSdpaGraphs.Backward(pr.P with { Deterministic = true }, style, negativeInfinity: true) })
                foreach (var t in g.Tensors)
                {
                    var dims = t.Dims.Zip(t.Strides).Where(x => x.First > 1).OrderBy(x => x.Second).ToArray();
                    long span = 1;
                    foreach (var (dim, stride) in dims)
                    {
                        Assert.That(stride, Is.GreaterThanOrEqualTo(span), $"{style}: tensor {t.Name} dims [{string.Join(", ", t.Dims)}] strides [{string.Join(", ", t.Strides)}] overlap");
                        span = stride * dim;
                    }
                }
    }

    [Test]
    public void EligibilityNamesWhatCudnnCannotTake()
    {
        string? Why(bool bwd = false, DType dt = DType.BF16, DType? odt = null, int h = 4, int hkv = 2, int t = 64, int s = 64, int d = 64, int dv = 64,
            bool mask = false, bool causal = true, int offset = 0) => CudnnSdpaProblem.Check(bwd, dt, odt ?? dt, h, hkv, t, s, d, dv, mask, causal, offset, out _);
        Assert.That(Why(), Is.Null);
        Assert.That(Why(dt: DType.F16), Is.Null);
        Assert.That(Why(d: 256, dv: 256), Is.Null, "forward to 256");
        Assert.That(Why(dt: DType.F32), Does.Contain("bf16 or f16"));
        Assert.That(Why(odt: DType.F32), Does.Contain("output dtype"));
        Assert.That(Why(bwd: true, d: 256, dv: 256), Does.Contain("128"));
        Assert.That(Why(d: 100, dv: 100), Does.Contain("multiples of 8"));
        Assert.That(Why(h: 6, hkv: 4), Does.Contain("multiple"));
        Assert.That(Why(mask: true), Does.Contain("padding"));
        Assert.That(Why(t: 8, s: 64, offset: 3), Does.Contain("query offset 3"));
        Assert.That(CudnnSdpaProblem.Check(false, DType.BF16, DType.BF16, 4, 2, 8, 64, 64, 64, false, true, 56, out var br), Is.Null);
        Assert.That(br, Is.EqualTo(CudnnSdpaMask.BottomRight));
        Assert.That(CudnnSdpaProblem.Check(false, DType.BF16, DType.BF16, 4, 2, 8, 64, 64, 64, false, true, 0, out var tl), Is.Null);
        Assert.That(tl, Is.EqualTo(CudnnSdpaMask.TopLeft));
        Assert.That(CudnnSdpaProblem.Check(false, DType.BF16, DType.BF16, 4, 2, 8, 64, 64, 64, false, false, 17, out var none), Is.Null, "no mask: the offset does not matter");
        Assert.That(none, Is.EqualTo(CudnnSdpaMask.None));
    }

    [Test]
    public void LayoutNeedsContiguousHeadDimsAnd16ByteRows()
    {
        Assert.That(CudnnSdpaProblem.CheckLayout("q", Bhsd(2, 4, 64, 64), 4096, 2), Is.Null);
        Assert.That(CudnnSdpaProblem.CheckLayout("q", Bshd(2, 4, 64, 64), 4096, 2), Is.Null, "[B, S, H, D] seen as [B, H, S, D]");
        Assert.That(CudnnSdpaProblem.CheckLayout("k", [64 * 64 * 4, 64 * 64, 1, 64], 4096, 2), Does.Contain("head-dim stride"));
        Assert.That(CudnnSdpaProblem.CheckLayout("k", [64 * 68 * 4, 64 * 68, 68 + 2, 1], 4096, 2), Does.Contain("16 bytes"));
        Assert.That(CudnnSdpaProblem.CheckLayout("k", [64 * 64 * 4, 64 * 64, 0, 1], 4096, 2), Does.Contain("broadcast"));
        Assert.That(CudnnSdpaProblem.CheckLayout("v", Bhsd(2, 4, 64, 64), 4096 + 8, 2), Does.Contain("aligned"));
        Assert.That(CudnnSdpaProblem.CheckStats(DType.F32, [4 * 64, 64, 1], 4, 64, 4096), Is.Null);
        Assert.That(CudnnSdpaProblem.CheckStats(DType.F32, [64, 1, 4], 4, 64, 4096), Does.Contain("packed"));
        Assert.That(CudnnSdpaProblem.CheckStats(DType.BF16, [4 * 64, 64, 1], 4, 64, 4096), Does.Contain("float32"));
    }

    [Test]
    public void PlanKeyTellsApartWhatChangesThePlanAndNothingElse()
    {
        var a = Make(Cases().ElementAt(1), backward: true).P;
        var b = Make(Cases().ElementAt(1), backward: true).P;
        Assert.That(a.Key, Is.EqualTo(b.Key), "equal problems share a plan (the scale is passed per call)");
        Assert.That((a with { Dk = [1, 2, 3, 4] }).Key, Is.Not.EqualTo(a.Key), "a gradient's strides");
        Assert.That((a with { Mask = CudnnSdpaMask.None }).Key, Is.Not.EqualTo(a.Key));
        Assert.That((a with { DType = DType.F16 }).Key, Is.Not.EqualTo(a.Key));
        Assert.That((a with { Hkv = 4 }).Key, Is.Not.EqualTo(a.Key));
        Assert.That((a with { Backward = false }).Key, Is.Not.EqualTo(a.Key));
        Assert.That((a with { Stats = false }).Key, Is.Not.EqualTo(a.Key));
        Assert.That((a with { Deterministic = true }).Key, Is.Not.EqualTo(a.Key), "a deterministic and an atomic backward never share a plan");
        Assert.That(a.Key, Does.Contain("dq=atomic"));
        Assert.That((a with { Deterministic = true }).Key, Does.Contain("dq=deterministic"));
        var f = a with { Backward = false };
        Assert.That((f with { Deterministic = true }).Key, Is.EqualTo(f.Key), "the forward has one graph: no second plan for it");
    }

    [Test]
    public void TheDeterministicBackwardIsDeclinedOnBlackwellDatacenterGpus()
    {
        // cudnn-frontend on sm_10x: set_deterministic_algorithm(true) is refused below cuDNN 9.18 and from 9.18 on runs
        // only on an engine it pins by id and knobs (override_heuristics_query), never on the heuristics' pick of the
        // graph without dQ_accum, which is all these graphs get. Hopper (sm_90), Ampere (sm_8x) and sm_12x take the graph
        // through heuristics in the frontend too.
        foreach (int major in new[] { 8, 9, 12 })
            Assert.That(CudnnSdpa.DeterministicRefusal(major), Is.Null, $"sm_{major}x");
        Assert.That(CudnnSdpa.DeterministicRefusal(10), Does.Contain("sm_10x").And.Contain("PARROT_CUDNN_DETERMINISTIC=0"));
    }

    [Test]
    public void BackwardsOverKeyCountsNotAMultipleOf128AreKeptFromCudnnUpTo9150()
    {
        // cudnn-frontend pads such backwards with a workaround mask up to 9.15.0 (NaN gradients otherwise).
        Assert.That(CudnnSdpa.KeyTailRefusal(true, 300, 91400), Does.Contain("300 keys").And.Contain("our attention kernels"));
        Assert.That(CudnnSdpa.KeyTailRefusal(true, 300, 91500), Is.Not.Null);
        Assert.That(CudnnSdpa.KeyTailRefusal(true, 300, 91501), Is.Null);
        Assert.That(CudnnSdpa.KeyTailRefusal(true, 512, 91400), Is.Null);
        Assert.That(CudnnSdpa.KeyTailRefusal(false, 300, 91400), Is.Null, "forwards: the frontend adds no workaround");
    }

    [Test]
    public void DeterministicSwitchIsOnUnlessTheEnvironmentSaysZero()
    {
        Assert.That(CudaBackend.CudnnDeterministicDefault(null), Is.True);
        Assert.That(CudaBackend.CudnnDeterministicDefault(""), Is.True);
        Assert.That(CudaBackend.CudnnDeterministicDefault("1"), Is.True);
        Assert.That(CudaBackend.CudnnDeterministicDefault("0"), Is.False);
        Assert.That(CudaBackend.CudnnDeterministicDefault(" 0 "), Is.False);
    }

    [Test]
    public void DeterministicWorkspaceLimitIsASixteenthOfTheDeviceUnlessGivenInMib()
    {
        const long h100 = 80L << 30;
        Assert.That(CudaBackend.DeterministicWorkspaceLimitDefault(null, h100), Is.EqualTo(5L << 30));
        Assert.That(CudaBackend.DeterministicWorkspaceLimitDefault("", h100), Is.EqualTo(5L << 30));
        Assert.That(CudaBackend.DeterministicWorkspaceLimitDefault(" 1024 ", h100), Is.EqualTo(1L << 30));
        Assert.That(CudaBackend.DeterministicWorkspaceLimitDefault("0", h100), Is.Zero, "0: the deterministic cuDNN backward never runs");
        foreach (var bad in new[] { "-5", "abc", "1.5", "1e3", "99999999999999999999" })
            Assert.That(CudaBackend.DeterministicWorkspaceLimitDefault(bad, h100), Is.EqualTo(5L << 30), bad);
        Assert.That(CudnnSdpa.WorkspaceRefusal(512L << 20, 5L << 30), Is.Null, "B4 H16 T2048: 512 MiB");
        Assert.That(CudnnSdpa.WorkspaceRefusal(5L << 30, 5L << 30), Is.Null, "at the limit");
        Assert.That(CudnnSdpa.WorkspaceRefusal((16L << 30) + 1, 5L << 30), Does.Contain("16384 MiB workspace").And.Contain("5120 MiB")
            .And.Contain("PARROT_CUDNN_DETERMINISTIC_WORKSPACE_MB"));
        Assert.That(CudaBackend.WorkspaceShape(4096), Is.EqualTo(new[] { 1024 }));
        Assert.That(CudaBackend.WorkspaceShape(4097), Is.EqualTo(new[] { 1025 }));
        Assert.That(CudaBackend.WorkspaceShape(9L << 30), Is.EqualTo(new[] { 9 * 256, 1 << 20 }), "9 GiB: rows of 2^20 words");
    }

    [Test]
    public void InteropEnumTablesHaveDistinctValues()
    {
        foreach (var table in new[] { typeof(Cudnn.Descriptor), typeof(Cudnn.AttrType), typeof(Cudnn.Attr), typeof(Cudnn.DataType),
                     typeof(Cudnn.PointwiseMode), typeof(Cudnn.ReduceOp), typeof(Cudnn.HeurMode), typeof(Cudnn.Reordering) })
        {
            var values = table.GetFields(BindingFlags.Static | BindingFlags.NonPublic | BindingFlags.Public).Where(f => f.IsLiteral)
                .Select(f => (f.Name, Value: (int)f.GetRawConstantValue()!)).ToList();
            Assert.That(values, Is.Not.Empty, table.Name);
            var dup = values.GroupBy(v => v.Value).FirstOrDefault(g => g.Count() > 1);
            Assert.That(dup, Is.Null, $"{table.Name}: {string.Join(", ", dup?.Select(v => v.Name) ?? [])} share a value");
        }
    }

    [Test]
    public void WithoutCudnnTheReasonSaysSoAndNamesTheLibrary()
    {
        var why = CudnnSdpa.LibraryProblem(out long version);
        if (CudaLibrary.TryLoad(CudaLibrary.Cudnn, out _, out _))
        {
            Assert.That(version, Is.GreaterThan(0));
            Assert.That(why is null || why.Contains("older than 9.0"), Is.True, why);
            return;
        }
        Assert.That(why, Does.StartWith("cuDNN is not installed").And.Contain("libcudnn.so.9"));
        Assert.That(version, Is.Zero);
    }

    [Test]
    public void CudnnAttentionIsOnUnlessTheEnvironmentSaysZero()
    {
        Assert.That(CudaBackend.CudnnAttentionDefault(null), Is.True);
        Assert.That(CudaBackend.CudnnAttentionDefault("1"), Is.True);
        Assert.That(CudaBackend.CudnnAttentionDefault(""), Is.True);
        Assert.That(CudaBackend.CudnnAttentionDefault("0"), Is.False);
        Assert.That(CudaBackend.CudnnAttentionDefault(" 0 "), Is.False);
    }

    [Test]
    public void DecodingStaysOnOurKernelsUnlessCudnnIsRequired()
    {
        Assert.That(CudaBackend.TriesCudnnForward(true, false, false, 1, true), Is.False, "one-token decode");
        Assert.That(CudaBackend.TriesCudnnForward(true, true, false, CudaBackend.DecodeMaxRows, true), Is.False, "8 rows: still decoding");
        Assert.That(CudaBackend.TriesCudnnForward(true, false, false, CudaBackend.DecodeMaxRows + 1, true), Is.True, "training (log-sum-exp saved)");
        Assert.That(CudaBackend.TriesCudnnForward(false, true, false, 512, true), Is.False, "PARROT_CUDNN_ATTENTION=0");
        Assert.That(CudaBackend.TriesCudnnForward(false, false, true, 1, false), Is.True, "required: decoding too");
    }

    [Test]
    public void InferenceForwardsTryCudnnOnlyWhenAskedFor()
    {
        // A plan per new problem costs ~0.75 s: a prefill of a new prompt length must not wait for one by default.
        Assert.That(CudaBackend.TriesCudnnForward(true, false, false, 512, withLogSumExp: false), Is.False, "prefill, default");
        Assert.That(CudaBackend.TriesCudnnForward(true, true, false, 512, withLogSumExp: false), Is.True, "PARROT_CUDNN_ATTENTION=1");
        Assert.That(CudaBackend.CudnnAttentionInferenceDefault(null), Is.False);
        Assert.That(CudaBackend.CudnnAttentionInferenceDefault(""), Is.False);
        Assert.That(CudaBackend.CudnnAttentionInferenceDefault("0"), Is.False);
        Assert.That(CudaBackend.CudnnAttentionInferenceDefault(" 1 "), Is.True);
    }

    [Test]
    public void NoPlanNorHandleIsMadeWhileACaptureRecords()
    {
        // build: false (a CUDA graph capture records) before anything was probed: refused with the reason, and without
        // touching the context (null here), the library or the handle.
        using var sdpa = new CudnnSdpa(null!);
        var problem = new CudnnSdpaProblem(false, DType.BF16, 1, 2, 2, 16, 16, 64, 64, CudnnSdpaMask.TopLeft, false,
            [2048, 1024, 64, 1], [2048, 1024, 64, 1], [2048, 1024, 64, 1], [2048, 1024, 64, 1], []);
        Assert.That(sdpa.Plan(problem, build: false, out var why), Is.Null);
        Assert.That(why, Does.Contain("CUDA graph capture"));
    }
}
