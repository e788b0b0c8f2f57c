using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Parrot.Tensors.Cpu.Gemm;

namespace Parrot.Tensors.Cpu;

/// <summary>
/// The Vector256 (AVX2) micro-kernels of <see cref="AttentionF32"/>, taken when <see cref="VectorWidth.Use512"/> is
/// false. Without AVX-512 a Vector512 is emulated as two Vector256 halves through memory, several times slower than
/// writing the halves out; and AVX2 has 16 registers, not 32, so the tiles are narrower: 4 rows × 16 columns
/// (8 accumulators) instead of 4 × 64. The layouts (key block of 64, value rows padded to 16) are the same.
/// </summary>
internal static unsafe partial class AttentionF32
{
    // ---- keys: kt [D, sPad] = Kᵀ, eight keys at a time ----

    /// <summary>
    /// The keys of one group transposed into kt [D, sPad] (padding zeroed), as <see cref="PackKeysElementwise"/> but
    /// eight keys at a time: their rows are loaded (converted to float32, any dtype or stride) into a buffer of 8 × D,
    /// whose 8 × 8 blocks are transposed in registers and stored as eight runs of eight keys. Element by element,
    /// every store is to a different row of kt; at a decode step over a long cache that scatter costs about what the
    /// scores do.
    /// </summary>
    private static void PackKeys8(AttentionProblem p, int b, int hk, float* kt, int sPad)
    {
        int d = p.D;
        using var buffer = new NativeBuffer(8L * Math.Max(d, 1) * sizeof(float));
        float* rows = buffer.As<float>();
        int j0 = 0;
        for (; j0 + 8 <= p.S; j0 += 8)
        {
            for (int k = 0; k < 8; k++) RowIO.Load(p.K.At(b, hk, j0 + k), p.K.DType, p.K.S3, d, rows + (long)k * d);
            int e = 0;
            for (; e + 8 <= d; e += 8) Transpose8x8(rows + e, d, kt + (long)e * sPad + j0, sPad);
            for (; e < d; e++)
                for (int k = 0; k < 8; k++) kt[(long)e * sPad + j0 + k] = rows[(long)k * d + e];
        }
        for (; j0 < p.S; j0++)
        {
            RowIO.Load(p.K.At(b, hk, j0), p.K.DType, p.K.S3, d, rows);
            for (int e = 0; e < d; e++) kt[(long)e * sPad + j0] = rows[e];
        }
        for (int e = 0; e < d; e++) new Span<float>(kt + (long)e * sPad + p.S, sPad - p.S).Clear();
    }

    /// <summary>dst[c·ldd + r] = src[r·lds + c] for r, c &lt; 8, through the GEMM's <see cref="Transpose8"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* src, int lds, float* dst, int ldd)
    {
        var block = stackalloc Vector256<float>[8];
        for (int r = 0; r < 8; r++) block[r] = Vector256.Load(src + (long)r * lds);
        Transpose8.InPlace(block);
        for (int c = 0; c < 8; c++) block[c].Store(dst + (long)c * ldd);
    }

    // ---- scores: P[rows, 64] = Q[rows, d] · KT[d, 64], in four passes of 16 keys ----

    private static void Scores256(float* q, int d, float* kt, int ldk, int rows, float* s)
    {
        int r = 0;
        for (; r + 4 <= rows; r += 4) ScoreTile256<Four>(q + (long)r * d, d, kt, ldk, s + (long)r * KeyBlock);
        switch (rows - r)
        {
            case 3: ScoreTile256<Three>(q + (long)r * d, d, kt, ldk, s + (long)r * KeyBlock); break;
            case 2: ScoreTile256<Two>(q + (long)r * d, d, kt, ldk, s + (long)r * KeyBlock); break;
            case 1: ScoreTile256<One>(q + (long)r * d, d, kt, ldk, s + (long)r * KeyBlock); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScoreTile256<TR>(float* q, int d, float* kt, int ldk, float* s) where TR : struct, IConstant
    {
        int rows = TR.Value;
        float* q0 = q, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d;
        for (int c = 0; c < KeyBlock; c += 16)
        {
            Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
            Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
            float* k = kt + c;
            for (int p = 0; p < d; p++, k += ldk)
            {
                var b0 = Vector256.Load(k); var b1 = Vector256.Load(k + 8);
                var x = Vector256.Create(q0[p]);
                c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
                if (rows > 1) { x = Vector256.Create(q1[p]); c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11); }
                if (rows > 2) { x = Vector256.Create(q2[p]); c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21); }
                if (rows > 3) { x = Vector256.Create(q3[p]); c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31); }
            }
            float* sc = s + c;
            c00.Store(sc); c01.Store(sc + 8);
            if (rows > 1) { sc += KeyBlock; c10.Store(sc); c11.Store(sc + 8); }
            if (rows > 2) { sc += KeyBlock; c20.Store(sc); c21.Store(sc + 8); }
            if (rows > 3) { sc += KeyBlock; c30.Store(sc); c31.Store(sc + 8); }
        }
    }

    // ---- online softmax of one row of 64 scores (see OnlineSoftmax) ----

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float OnlineSoftmax256(float* s, ref float m, ref float l)
    {
        var s0 = Vector256.Load(s); var s1 = Vector256.Load(s + 8); var s2 = Vector256.Load(s + 16); var s3 = Vector256.Load(s + 24);
        var s4 = Vector256.Load(s + 32); var s5 = Vector256.Load(s + 40); var s6 = Vector256.Load(s + 48); var s7 = Vector256.Load(s + 56);
        float blockMax = MaxAcross(Vector256.MaxNative(
            Vector256.MaxNative(Vector256.MaxNative(s0, s1), Vector256.MaxNative(s2, s3)),
            Vector256.MaxNative(Vector256.MaxNative(s4, s5), Vector256.MaxNative(s6, s7))));
        float mNew = MathF.Max(m, blockMax);
        if (float.IsNegativeInfinity(mNew))
        {
            new Span<float>(s, KeyBlock).Clear();
            return 1f;
        }
        var shift = Vector256.Create(mNew);
        s0 = ExpNonPositive(s0 - shift); s1 = ExpNonPositive(s1 - shift); s2 = ExpNonPositive(s2 - shift); s3 = ExpNonPositive(s3 - shift);
        s4 = ExpNonPositive(s4 - shift); s5 = ExpNonPositive(s5 - shift); s6 = ExpNonPositive(s6 - shift); s7 = ExpNonPositive(s7 - shift);
        s0.Store(s); s1.Store(s + 8); s2.Store(s + 16); s3.Store(s + 24);
        s4.Store(s + 32); s5.Store(s + 40); s6.Store(s + 48); s7.Store(s + 56);
        float alpha = m == mNew ? 1f : MathF.Exp(m - mNew);
        l = l * alpha + Vector256.Sum(((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)));
        m = mNew;
        return alpha;
    }

    /// <summary>The Vector256 twin of <see cref="ExpNonPositive(Vector512{float})"/>: same steps, same constants, same bits per lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ExpNonPositive(Vector256<float> x)
    {
        var min = Vector256.Create(ExpMinArg);
        var underflow = Vector256.LessThan(x, min);
        var t = Vector256.ConditionalSelect(underflow, min, x);
        var magic = Vector256.Create(RoundingMagic);
        var shifted = Vector256.FusedMultiplyAdd(t, Vector256.Create(Log2E), magic);
        var n = shifted - magic;
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(MinusLn2High), t);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(MinusLn2Low), r);
        var p = Vector256.Create(ExpP0);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpP1));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpP2));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpP3));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpP4));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(ExpP5));
        p = Vector256.FusedMultiplyAdd(p, r * r, r) + Vector256<float>.One;
        var scale = ((shifted.AsInt32() - magic.AsInt32() + Vector256.Create(127)) << 23).AsSingle();
        return Vector256.ConditionalSelect(underflow, Vector256<float>.Zero, p * scale);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaxAcross(Vector256<float> v)
    {
        var m = Vector128.MaxNative(v.GetLower(), v.GetUpper());
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }

    // ---- values: O[rows, dvPad] += P[rows, n] · V[n, dvPad], 16 columns (two vectors) at a time ----

    private static void AddValues256(float* prob, float* v, int ldv, int n, int rows, float* o)
    {
        // ldv (dvPad) is a multiple of Lanes = 16: every column block is exactly two Vector256.
        for (int c = 0; c < ldv; c += 16)
        {
            for (int r = 0; r < rows; r += 4)
            {
                float* pr = prob + (long)r * KeyBlock, or = o + (long)r * ldv + c;
                switch (Math.Min(4, rows - r))
                {
                    case 1: ValueTile256<One>(pr, v + c, ldv, n, or); break;
                    case 2: ValueTile256<Two>(pr, v + c, ldv, n, or); break;
                    case 3: ValueTile256<Three>(pr, v + c, ldv, n, or); break;
                    default: ValueTile256<Four>(pr, v + c, ldv, n, or); break;
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ValueTile256<TR>(float* prob, float* v, int ldv, int n, float* o) where TR : struct, IConstant
    {
        int rows = TR.Value;
        float* p0 = prob, p1 = p0 + KeyBlock, p2 = p1 + KeyBlock, p3 = p2 + KeyBlock;
        float* o0 = o, o1 = o0 + ldv, o2 = o1 + ldv, o3 = o2 + ldv;
        Vector256<float> c00 = Vector256.Load(o0), c01 = Vector256.Load(o0 + 8);
        Vector256<float> c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
        if (rows > 1) { c10 = Vector256.Load(o1); c11 = Vector256.Load(o1 + 8); }
        if (rows > 2) { c20 = Vector256.Load(o2); c21 = Vector256.Load(o2 + 8); }
        if (rows > 3) { c30 = Vector256.Load(o3); c31 = Vector256.Load(o3 + 8); }
        float* vj = v;
        for (int j = 0; j < n; j++, vj += ldv)
        {
            var b0 = Vector256.Load(vj); var b1 = Vector256.Load(vj + 8);
            var x = Vector256.Create(p0[j]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            if (rows > 1) { x = Vector256.Create(p1[j]); c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11); }
            if (rows > 2) { x = Vector256.Create(p2[j]); c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21); }
            if (rows > 3) { x = Vector256.Create(p3[j]); c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31); }
        }
        c00.Store(o0); c01.Store(o0 + 8);
        if (rows > 1) { c10.Store(o1); c11.Store(o1 + 8); }
        if (rows > 2) { c20.Store(o2); c21.Store(o2 + 8); }
        if (rows > 3) { c30.Store(o3); c31.Store(o3 + 8); }
    }
}
