using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Tensors.Cpu;

/// <summary>
/// Flash-style attention in float32 (F32, BF16 and F16 storage). Nothing of size T × S is ever stored:
/// <list type="number">
/// <item>Per (batch, kv head) group, the keys are packed once, transposed to [D, S] float32, and the values to
/// [S, Dv] float32 rows padded to whole vectors. Every query head of the group reads these same copies, which
/// is how grouped-query attention avoids the expand copy of the composite version.</item>
/// <item>A work item is a block of consecutive queries of every head of one group (about
/// <see cref="TargetRows"/> rows). It walks the keys in blocks of <see cref="KeyBlock"/>: scores of the block
/// (a small matrix product, the queries pre-scaled), the additive mask and the causal cut, then the online
/// softmax (running max m and sum l per row; a new max rescales what was accumulated), then the block's
/// probabilities times its values are added into the row's output. At the end the output is divided by l and
/// ln l + m is the row's log-sum-exp.</item>
/// <item>Causal items stop at the last key their last query sees, so the blocks above the diagonal are never
/// touched; items are handed out largest first from a shared counter, so the two cores finish together.</item>
/// </list>
/// The micro-kernels keep a 4-row × 64-column tile in 16 Vector512 accumulators (scores: rows × keys over the
/// head dim; output: rows × value columns over the keys); without AVX-512 (<see cref="VectorWidth.Use512"/> false)
/// the Vector256 kernels of AttentionF32.Vector256.cs run instead.
/// </summary>
internal static unsafe partial class AttentionF32
{
    /// <summary>Keys per block: four vectors, the width of a score tile.</summary>
    private const int KeyBlock = 64;

    /// <summary>Rows (queries × heads of a group) per work item: enough to amortise reading a key block, small enough that the item's scratch stays in L2.</summary>
    private const int TargetRows = 64;

    /// <summary>Below this many multiply-adds a call stays on one thread (a decode step's attention is ~0.3M).</summary>
    private const long ParallelMinWork = 1L << 20;

    private const int Lanes = 16;

    public static void Run(AttentionProblem p)
    {
        int groups = p.B * p.KvHeads, rep = p.Group;
        int sPad = RoundUp(Math.Max(p.S, 1), KeyBlock), dvPad = RoundUp(Math.Max(p.Dv, 1), Lanes);
        long kFloats = (long)p.D * sPad, vFloats = (long)sPad * dvPad;
        long work = p.Rows * p.S * (p.D + p.Dv) / (p.Causal ? 2 : 1);
        int workers = work >= ParallelMinWork ? CpuParallel.Workers : 1;

        // From the tensor allocator's cache: a fresh native block of this size would be faulted in page by page on
        // every call.
        nint packed = CpuAllocator.Allocate((kFloats + vFloats) * groups * sizeof(float), out long packedBytes);
        try { RunPacked(p, (float*)packed, kFloats, vFloats, sPad, dvPad, workers); }
        finally { CpuAllocator.Free(packed, packedBytes); }
    }

    private static void RunPacked(AttentionProblem p, float* packedBase, long kFloats, long vFloats, int sPad, int dvPad, int workers)
    {
        int groups = p.B * p.KvHeads, rep = p.Group;
        CpuParallel.For(Math.Min(workers, groups), w =>
        {
            int parts = Math.Min(workers, groups);
            for (int g = w; g < groups; g += parts)
                PackGroup(p, g / p.KvHeads, g % p.KvHeads, packedBase + g * (kFloats + vFloats), sPad, dvPad);
        });

        int tq = Math.Clamp(TargetRows / rep, 1, Math.Max(p.T, 1));
        int blocks = (p.T + tq - 1) / tq;
        int items = groups * blocks;
        int next = -1;
        CpuParallel.For(Math.Min(workers, items), _ =>
        {
            using var scratch = new Scratch(rep * tq, p.D, dvPad);
            int id;
            while ((id = Interlocked.Increment(ref next)) < items)
            {
                // Largest first: the last query blocks see the most keys when causal.
                int block = blocks - 1 - id / groups, g = id % groups;
                float* kt = packedBase + g * (kFloats + vFloats);
                int t0 = block * tq;
                RunItem(p, g / p.KvHeads, g % p.KvHeads, t0, Math.Min(tq, p.T - t0), kt, kt + kFloats, sPad, dvPad, scratch);
            }
        });
    }

    private static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    /// <summary>Keys of one group transposed into kt [D, sPad], values into vs [sPad, dvPad] (padding zeroed).</summary>
    private static void PackGroup(AttentionProblem p, int b, int hk, float* kt, int sPad, int dvPad)
    {
        // Keys with contiguous rows (a KV cache, a projection's output) are transposed in registers as the GEMM
        // packs x · Wᵀ (16 × 16 with AVX-512, 8 × 8 with AVX); other keys 8 × 8 through a row buffer with AVX;
        // else element by element.
        if (p.K.S3 == 1 && (GemmOptions.UseVector512 || Avx.IsSupported) && p.K.DType is DType.F32 or DType.BF16)
        {
            long columnBytes = p.K.S2 * p.K.DType.SizeOf();
            if (p.K.DType == DType.F32) Packing.PackColumnMajor<F32Source>(p.K.At(b, hk, 0), columnBytes, p.D, p.S, sPad, kt);
            else Packing.PackColumnMajor<BF16Source>(p.K.At(b, hk, 0), columnBytes, p.D, p.S, sPad, kt);
        }
        else if (Avx.IsSupported) PackKeys8(p, b, hk, kt, sPad);
        else PackKeysElementwise(p, b, hk, kt, sPad);
        float* vs = kt + (long)p.D * sPad;
        for (int j = 0; j < p.S; j++)
        {
            float* dst = vs + (long)j * dvPad;
            RowIO.Load(p.V.At(b, hk, j), p.V.DType, p.V.S3, p.Dv, dst);
            new Span<float>(dst + p.Dv, dvPad - p.Dv).Clear();
        }
    }

    private static void PackKeysElementwise(AttentionProblem p, int b, int hk, float* kt, int sPad)
    {
        using var rowBuffer = new NativeBuffer((long)Math.Max(p.D, 1) * sizeof(float));
        float* row = rowBuffer.As<float>();
        for (int j = 0; j < p.S; j++)
        {
            RowIO.Load(p.K.At(b, hk, j), p.K.DType, p.K.S3, p.D, row);
            for (int d = 0; d < p.D; d++) kt[(long)d * sPad + j] = row[d];
        }
        for (int d = 0; d < p.D; d++) new Span<float>(kt + (long)d * sPad + p.S, sPad - p.S).Clear();
    }

    /// <summary>One worker's buffers for an item of up to <c>rows</c> rows.</summary>
    private sealed class Scratch : IDisposable
    {
        private readonly NativeBuffer _buffer;
        public float* Q { get; }      // [rows, D], pre-scaled queries
        public float* P { get; }      // [rows, KeyBlock], scores, then probabilities
        public float* O { get; }      // [rows, dvPad], unnormalised output
        public float* Max { get; }    // [rows]
        public float* Sum { get; }    // [rows]
        public float* Mask { get; }   // [KeyBlock]

        public Scratch(int rows, int d, int dvPad)
        {
            long qf = RoundUp(Math.Max(rows * d, 1), Lanes), pf = (long)rows * KeyBlock, of = (long)rows * dvPad, rf = RoundUp(rows, Lanes);
            _buffer = new NativeBuffer((qf + pf + of + 2 * rf + KeyBlock) * sizeof(float));
            Q = _buffer.As<float>(); P = Q + qf; O = P + pf; Max = O + of; Sum = Max + rf; Mask = Sum + rf;
        }

        public void Dispose() => _buffer.Dispose();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RunItem(AttentionProblem p, int b, int hk, int t0, int tq, float* kt, float* vs, int sPad, int dvPad, Scratch x)
    {
        int rep = p.Group, rows = rep * tq, d = p.D;
        float scale = (float)p.Scale;
        // Row r is query t0 + r % tq of head hk·rep + r / tq.
        for (int r = 0; r < rows; r++)
        {
            int h = hk * rep + r / tq, i = t0 + r % tq;
            float* qr = x.Q + (long)r * d;
            RowIO.Load(p.Q.At(b, h, i), p.Q.DType, p.Q.S3, d, qr);
            Scale(qr, d, scale);
            x.Max[r] = float.NegativeInfinity;
            x.Sum[r] = 0;
        }
        new Span<float>(x.O, rows * dvPad).Clear();

        bool wide = VectorWidth.Use512;
        int keyEnd = p.VisibleKeys(t0 + tq - 1);
        for (int j0 = 0; j0 < keyEnd; j0 += KeyBlock)
        {
            int n = Math.Min(KeyBlock, keyEnd - j0);
            if (wide) Scores(x.Q, d, kt + j0, sPad, rows, x.P);
            else Scores256(x.Q, d, kt + j0, sPad, rows, x.P);
            for (int r = 0; r < rows; r++)
            {
                int h = hk * rep + r / tq, i = t0 + r % tq;
                int visible = Math.Clamp(p.VisibleKeys(i) - j0, 0, n);
                float* pr = x.P + (long)r * KeyBlock;
                if (p.Mask is { } mask && visible > 0)
                {
                    RowIO.Load(mask.At(b, h, i) + (nint)(j0 * mask.S3 * mask.DType.SizeOf()), mask.DType, mask.S3, visible, x.Mask);
                    AddTo(pr, x.Mask, visible);
                }
                new Span<float>(pr + visible, KeyBlock - visible).Fill(float.NegativeInfinity);
                float alpha = wide ? OnlineSoftmax(pr, ref x.Max[r], ref x.Sum[r]) : OnlineSoftmax256(pr, ref x.Max[r], ref x.Sum[r]);
                if (alpha != 1f) Scale(x.O + (long)r * dvPad, dvPad, alpha);
            }
            if (wide) AddValues(x.P, vs + (long)j0 * dvPad, dvPad, n, rows, x.O);
            else AddValues256(x.P, vs + (long)j0 * dvPad, dvPad, n, rows, x.O);
        }

        for (int r = 0; r < rows; r++)
        {
            int h = hk * rep + r / tq, i = t0 + r % tq;
            float* or = x.O + (long)r * dvPad;
            float l = x.Sum[r];
            // No visible key: l = 0 and the row is NaN, as the composite softmax of an all −∞ row.
            float inv = l > 0 ? 1f / l : float.NaN;
            Scale(or, p.Dv, inv);
            RowIO.Store(or, p.Output.At(b, h, i), p.Output.DType, p.Output.S3, p.Dv);
            if (p.LogSumExp is { } lse)
                *(float*)lse.At(b, h, i) = l > 0 ? x.Max[r] + MathF.Log(l) : (float.IsNaN(l) ? float.NaN : float.NegativeInfinity);
        }
    }

    /// <summary>
    /// Turns a row of KeyBlock scores into exp(s − m') in place, where m' = max(m, max s), updates the running
    /// max m and sum l, and returns the factor exp(m − m') by which the row's accumulated output must shrink.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float OnlineSoftmax(float* s, ref float m, ref float l)
    {
        var s0 = Vector512.Load(s); var s1 = Vector512.Load(s + 16); var s2 = Vector512.Load(s + 32); var s3 = Vector512.Load(s + 48);
        float blockMax = MaxAcross(Vector512.MaxNative(Vector512.MaxNative(s0, s1), Vector512.MaxNative(s2, s3)));
        float mNew = MathF.Max(m, blockMax);
        if (float.IsNegativeInfinity(mNew))
        {
            // Nothing visible yet: the block adds nothing, and nothing accumulated needs rescaling.
            new Span<float>(s, KeyBlock).Clear();
            return 1f;
        }
        var shift = Vector512.Create(mNew);
        s0 = ExpNonPositive(s0 - shift); s1 = ExpNonPositive(s1 - shift); s2 = ExpNonPositive(s2 - shift); s3 = ExpNonPositive(s3 - shift);
        s0.Store(s); s1.Store(s + 16); s2.Store(s + 32); s3.Store(s + 48);
        float alpha = m == mNew ? 1f : MathF.Exp(m - mNew);
        l = l * alpha + Vector512.Sum((s0 + s1) + (s2 + s3));
        m = mNew;
        return alpha;
    }

    // ExpNonPositive's constants (both widths): the argument's floor, 1.5·2^23 for rounding, log2(e), ln 2 split in a
    // high part exact in few bits and the low remainder (both negated: r = t − n·ln 2), the Cephes expf polynomial.
    private const float ExpMinArg = -87.33f, RoundingMagic = 12582912f, Log2E = 1.44269504f;
    private const float MinusLn2High = -0.693359375f, MinusLn2Low = 2.12194440e-4f;
    private const float ExpP0 = 1.9875691500e-4f, ExpP1 = 1.3981999507e-3f, ExpP2 = 8.3334519073e-3f, ExpP3 = 4.1665795894e-2f,
        ExpP4 = 1.6666665459e-1f, ExpP5 = 5.0000001201e-1f;

    /// <summary>
    /// e^x for x ≤ 0 (scores minus their running max), to about one float32 ulp: x = n·ln 2 + r with |r| ≤ ln 2 / 2,
    /// e^r by the classic degree-7 minimax polynomial (Cephes' expf), times 2^n put into the exponent bits. Below
    /// −87.3 the result would be subnormal and is flushed to 0 (e^−∞ = 0); NaN stays NaN. Written here rather than
    /// calling Vector512.Exp so that it is compiled, optimised, into the kernel: the library's exp is a separate
    /// call that tiered compilation starts unoptimised (measured: the softmax step of the first attention calls of
    /// a process took 3–4× longer than later ones).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> ExpNonPositive(Vector512<float> x)
    {
        var min = Vector512.Create(ExpMinArg);
        var underflow = Vector512.LessThan(x, min);
        var t = Vector512.ConditionalSelect(underflow, min, x);
        // Rounding to the nearest integer by adding and subtracting 1.5·2^23; the sum's low mantissa bits are n.
        var magic = Vector512.Create(RoundingMagic);
        var shifted = Vector512.FusedMultiplyAdd(t, Vector512.Create(Log2E), magic);
        var n = shifted - magic;
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(MinusLn2High), t);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(MinusLn2Low), r);
        var p = Vector512.Create(ExpP0);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpP1));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpP2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpP3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpP4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(ExpP5));
        p = Vector512.FusedMultiplyAdd(p, r * r, r) + Vector512<float>.One;
        // n ∈ [−126, 0] here, so 2^n is a normal float: its bits are (n + 127) << 23.
        var scale = ((shifted.AsInt32() - magic.AsInt32() + Vector512.Create(127)) << 23).AsSingle();
        return Vector512.ConditionalSelect(underflow, Vector512<float>.Zero, p * scale);
    }

    /// <summary>x[i] *= a, i &lt; n.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Scale(float* x, int n, float a)
    {
        int i = 0;
        if (VectorWidth.Use512)
            for (var va = Vector512.Create(a); i + Lanes <= n; i += Lanes) (Vector512.Load(x + i) * va).Store(x + i);
        else
            for (var va = Vector256.Create(a); i + 8 <= n; i += 8) (Vector256.Load(x + i) * va).Store(x + i);
        for (; i < n; i++) x[i] *= a;
    }

    /// <summary>x[i] += y[i], i &lt; n.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddTo(float* x, float* y, int n)
    {
        int i = 0;
        if (VectorWidth.Use512)
            for (; i + Lanes <= n; i += Lanes) (Vector512.Load(x + i) + Vector512.Load(y + i)).Store(x + i);
        else
            for (; i + 8 <= n; i += 8) (Vector256.Load(x + i) + Vector256.Load(y + i)).Store(x + i);
        for (; i < n; i++) x[i] += y[i];
    }

    /// <summary>
    /// The largest lane. A NaN score may be dropped here, but it still reaches the row through its exp, so the
    /// row ends NaN, as in softmax.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaxAcross(Vector512<float> v)
    {
        var m256 = Vector256.MaxNative(v.GetLower(), v.GetUpper());
        var m = Vector128.MaxNative(m256.GetLower(), m256.GetUpper());
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }

    // ---- scores: P[rows, 64] = Q[rows, d] · KT[d, 64] ----

    private static void Scores(float* q, int d, float* kt, int ldk, int rows, float* s)
    {
        int r = 0;
        for (; r + 4 <= rows; r += 4) ScoreTile<Four>(q + (long)r * d, d, kt, ldk, s + (long)r * KeyBlock);
        switch (rows - r)
        {
            case 3: ScoreTile<Three>(q + (long)r * d, d, kt, ldk, s + (long)r * KeyBlock); break;
            case 2: ScoreTile<Two>(q + (long)r * d, d, kt, ldk, s + (long)r * KeyBlock); break;
            case 1: ScoreTile<One>(q + (long)r * d, d, kt, ldk, s + (long)r * KeyBlock); break;
        }
    }

    /// <summary>R rows × 64 keys of scores over the head dim: per step, four key vectors and one broadcast per row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoreTile<TR>(float* q, int d, float* kt, int ldk, float* s) where TR : struct, IConstant
    {
        int rows = TR.Value;
        float* q0 = q, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d;
        Vector512<float> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        float* k = kt;
        for (int p = 0; p < d; p++, k += ldk)
        {
            var b0 = Vector512.Load(k); var b1 = Vector512.Load(k + 16); var b2 = Vector512.Load(k + 32); var b3 = Vector512.Load(k + 48);
            var x = Vector512.Create(q0[p]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
            if (rows > 1)
            {
                x = Vector512.Create(q1[p]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
            }
            if (rows > 2)
            {
                x = Vector512.Create(q2[p]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
            }
            if (rows > 3)
            {
                x = Vector512.Create(q3[p]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
                c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
            }
        }
        c00.Store(s); c01.Store(s + 16); c02.Store(s + 32); c03.Store(s + 48);
        if (rows > 1) { s += KeyBlock; c10.Store(s); c11.Store(s + 16); c12.Store(s + 32); c13.Store(s + 48); }
        if (rows > 2) { s += KeyBlock; c20.Store(s); c21.Store(s + 16); c22.Store(s + 32); c23.Store(s + 48); }
        if (rows > 3) { s += KeyBlock; c30.Store(s); c31.Store(s + 16); c32.Store(s + 32); c33.Store(s + 48); }
    }

    // ---- values: O[rows, dvPad] += P[rows, n] · V[n, dvPad] ----

    private static void AddValues(float* prob, float* v, int ldv, int n, int rows, float* o)
    {
        for (int c = 0; c < ldv; c += 4 * Lanes)
        {
            int vectors = Math.Min(4, (ldv - c) / Lanes);
            for (int r = 0; r < rows; r += 4)
            {
                int h = Math.Min(4, rows - r);
                float* pr = prob + (long)r * KeyBlock, or = o + (long)r * ldv + c;
                switch ((h, vectors))
                {
                    case (1, 1): ValueTile<One, One>(pr, v + c, ldv, n, or); break;
                    case (1, 2): ValueTile<One, Two>(pr, v + c, ldv, n, or); break;
                    case (1, 3): ValueTile<One, Three>(pr, v + c, ldv, n, or); break;
                    case (1, _): ValueTile<One, Four>(pr, v + c, ldv, n, or); break;
                    case (2, 1): ValueTile<Two, One>(pr, v + c, ldv, n, or); break;
                    case (2, 2): ValueTile<Two, Two>(pr, v + c, ldv, n, or); break;
                    case (2, 3): ValueTile<Two, Three>(pr, v + c, ldv, n, or); break;
                    case (2, _): ValueTile<Two, Four>(pr, v + c, ldv, n, or); break;
                    case (3, 1): ValueTile<Three, One>(pr, v + c, ldv, n, or); break;
                    case (3, 2): ValueTile<Three, Two>(pr, v + c, ldv, n, or); break;
                    case (3, 3): ValueTile<Three, Three>(pr, v + c, ldv, n, or); break;
                    case (3, _): ValueTile<Three, Four>(pr, v + c, ldv, n, or); break;
                    case (_, 1): ValueTile<Four, One>(pr, v + c, ldv, n, or); break;
                    case (_, 2): ValueTile<Four, Two>(pr, v + c, ldv, n, or); break;
                    case (_, 3): ValueTile<Four, Three>(pr, v + c, ldv, n, or); break;
                    default: ValueTile<Four, Four>(pr, v + c, ldv, n, or); break;
                }
            }
        }
    }

    /// <summary>R rows × 16·V output columns, accumulated over n keys: per key, V value vectors and one broadcast probability per row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ValueTile<TR, TV>(float* prob, float* v, int ldv, int n, float* o) where TR : struct, IConstant where TV : struct, IConstant
    {
        int rows = TR.Value, vectors = TV.Value;
        float* p0 = prob, p1 = p0 + KeyBlock, p2 = p1 + KeyBlock, p3 = p2 + KeyBlock;
        float* o0 = o, o1 = o0 + ldv, o2 = o1 + ldv, o3 = o2 + ldv;
        Vector512<float> c00 = Vector512.Load(o0), c01 = default, c02 = default, c03 = default;
        Vector512<float> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<float> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<float> c30 = default, c31 = default, c32 = default, c33 = default;
        if (vectors > 1) c01 = Vector512.Load(o0 + 16);
        if (vectors > 2) c02 = Vector512.Load(o0 + 32);
        if (vectors > 3) c03 = Vector512.Load(o0 + 48);
        if (rows > 1) { c10 = Vector512.Load(o1); if (vectors > 1) c11 = Vector512.Load(o1 + 16); if (vectors > 2) c12 = Vector512.Load(o1 + 32); if (vectors > 3) c13 = Vector512.Load(o1 + 48); }
        if (rows > 2) { c20 = Vector512.Load(o2); if (vectors > 1) c21 = Vector512.Load(o2 + 16); if (vectors > 2) c22 = Vector512.Load(o2 + 32); if (vectors > 3) c23 = Vector512.Load(o2 + 48); }
        if (rows > 3) { c30 = Vector512.Load(o3); if (vectors > 1) c31 = Vector512.Load(o3 + 16); if (vectors > 2) c32 = Vector512.Load(o3 + 32); if (vectors > 3) c33 = Vector512.Load(o3 + 48); }
        float* vj = v;
        for (int j = 0; j < n; j++, vj += ldv)
        {
            Vector512<float> b0 = Vector512.Load(vj), b1 = default, b2 = default, b3 = default;
            if (vectors > 1) b1 = Vector512.Load(vj + 16);
            if (vectors > 2) b2 = Vector512.Load(vj + 32);
            if (vectors > 3) b3 = Vector512.Load(vj + 48);
            var x = Vector512.Create(p0[j]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00);
            if (vectors > 1) c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            if (vectors > 2) c02 = Vector512.FusedMultiplyAdd(x, b2, c02);
            if (vectors > 3) c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
            if (rows > 1)
            {
                x = Vector512.Create(p1[j]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10);
                if (vectors > 1) c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                if (vectors > 2) c12 = Vector512.FusedMultiplyAdd(x, b2, c12);
                if (vectors > 3) c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
            }
            if (rows > 2)
            {
                x = Vector512.Create(p2[j]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20);
                if (vectors > 1) c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                if (vectors > 2) c22 = Vector512.FusedMultiplyAdd(x, b2, c22);
                if (vectors > 3) c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
            }
            if (rows > 3)
            {
                x = Vector512.Create(p3[j]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30);
                if (vectors > 1) c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
                if (vectors > 2) c32 = Vector512.FusedMultiplyAdd(x, b2, c32);
                if (vectors > 3) c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
            }
        }
        StoreRow(o0, vectors, c00, c01, c02, c03);
        if (rows > 1) StoreRow(o1, vectors, c10, c11, c12, c13);
        if (rows > 2) StoreRow(o2, vectors, c20, c21, c22, c23);
        if (rows > 3) StoreRow(o3, vectors, c30, c31, c32, c33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* o, int vectors, Vector512<float> v0, Vector512<float> v1, Vector512<float> v2, Vector512<float> v3)
    {
        v0.Store(o);
        if (vectors > 1) v1.Store(o + 16);
        if (vectors > 2) v2.Store(o + 32);
        if (vectors > 3) v3.Store(o + 48);
    }
}
