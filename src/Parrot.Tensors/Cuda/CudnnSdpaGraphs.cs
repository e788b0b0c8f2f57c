using Parrot.Tensors.Cuda.Interop;
using PW = Parrot.Tensors.Cuda.Interop.Cudnn.PointwiseMode;
using DT = Parrot.Tensors.Cuda.Interop.Cudnn.DataType;

namespace Parrot.Tensors.Cuda;

/// <summary>Which cudnn-frontend release's lowering a graph copies (cuDNN's engines match the patterns those emit).</summary>
internal enum CudnnSdpaStyle
{
    /// <summary>
    /// Frontend 1.5-era (mid-2024, cuDNN 9.0–9.x): causal mask as gen_index (int32 compute) row [+S −T], gen_index col,
    /// row ≥ col, select with float's lowest, applied before the softmax in both passes; backward with virtual
    /// softmax_sum, dP·1, an F16x16-reordered float32 dQ accumulator (none in the deterministic backward).
    /// </summary>
    Frontend15,
    /// <summary>
    /// Current frontend (its composite path for cuDNN &lt; 9.21): the diagonal-band mask (gen_index row and col first,
    /// then [+S −T], row ≥ col, select with −∞ from cuDNN 9.10 on, else lowest); backward masks after subtracting the
    /// stats, softmax_sum is a bound float32 [B, H, T, 1] tensor (workspace), no dP·1, dQ accumulator without reordering
    /// (the deterministic backward has none, in either style).
    /// </summary>
    FrontendCurrent,
}

/// <summary>
/// Which backward graph a cuDNN SDPA plan runs (<see cref="CudnnGraphPlan.Backward"/>, <see cref="CudaBackend.CudnnAttentionBackward"/>),
/// read from what its variant pack binds: the gradient algorithm, not cuDNN's engine notes.
/// </summary>
public enum CudnnSdpaBackward
{
    /// <summary>No backward: a forward plan (it binds no dQ).</summary>
    None,
    /// <summary>The atomic graph: dQ through a float32 accumulator that each key block adds into (order varies run to run).</summary>
    Atomic,
    /// <summary>The deterministic graph: dQ written by a product, no accumulator (<see cref="CudaBackend.CudnnDeterministic"/>).</summary>
    Deterministic,
}

/// <summary>
/// The operation graphs cuDNN 9 recognises as its fused flash attention (forward with float32 softmax stats, and
/// backward), written as <see cref="CudnnGraphSpec"/>s. The node sequence, data types and by-value constants follow
/// cudnn-frontend's lowering of its SDPA nodes (include/cudnn_frontend/node/scaled_dot_product_flash_attention.h,
/// softmax.h, diagonal_band_mask.h, utils/attn_score_modifiers.h) in two releases (<see cref="CudnnSdpaStyle"/>):
/// the backend's engines match these patterns, so they are kept node for node, including the virtual tensors' types
/// (float32 scores, bf16/f16 probabilities before the second product). Operands are [B, H, T, D] with any strides
/// (head dim contiguous); K and V enter the products transposed by swapping their last two strides, as the frontend does.
/// </summary>
internal static class CudnnSdpaGraphs
{
    // Fixed uids of the bound (non-virtual) tensors and constants; virtual tensors count up from 100.
    internal const long UidQ = 1, UidK = 2, UidV = 3, UidO = 4, UidStats = 5, UidDOut = 6, UidDq = 7, UidDk = 8, UidDv = 9;
    internal const long UidScale = 10, UidDqAccum = 11, UidSoftmaxSum = 12, UidNegInf = 20, UidOne = 21, UidSkv = 22, UidSq = 23;

    /// <summary>The value cudnn-frontend gives hidden scores: float's lowest (not −∞, so exp(s − max) stays finite).</summary>
    internal const float HiddenScore = float.MinValue;

    private static long[] Swap23(long[] a) => [a[0], a[1], a[3], a[2]];

    /// <summary>
    /// Forward: S = Q·Kᵀ; S·scale; causal mask (gen-index row ≥ col, select); softmax as max, sub, exp, sum, div with
    /// stats = max + log(sum) (the natural-log log-sum-exp of the scaled scores); O = P·V.
    /// </summary>
    internal static CudnnGraphSpec Forward(CudnnSdpaProblem p, CudnnSdpaStyle style = CudnnSdpaStyle.Frontend15, bool negativeInfinity = false)
    {
        var g = new CudnnGraphSpec();
        int io = p.CudnnType;
        long b = p.B, h = p.H, hk = p.Hkv, t = p.T, s = p.S, d = p.D, dv = p.Dv;
        var q = g.Add(new(UidQ, "Q", io, [b, h, t, d], p.Q));
        var kT = g.Add(new(UidK, "K (transposed)", io, [b, hk, d, s], Swap23(p.K)));
        var v = g.Add(new(UidV, "V", io, [b, hk, s, dv], p.V));
        var o = g.Add(new(UidO, "O", io, [b, h, t, dv], p.O));
        var scale = g.Add(new(UidScale, "attn_scale", DT.Float, CudnnGraphSpec.Ones(4), CudnnGraphSpec.Ones(4), ByValue: true));

        var scores = g.Matmul("bmm1", q, kT, g.Virtual("bmm1::C", DT.Float, [b, h, t, s], CudnnGraphSpec.Packed(b, h, t, s)));
        var last = g.Pointwise("attn_scale", PW.Mul, DT.Float, scores, scale);
        last = CausalMask(g, last, p, style, negativeInfinity);
        var rowDims = new[] { b, h, t, 1L };
        var rowStrides = new[] { h * t, t, 1L, 1L };
        var max = g.Reduction("Max", Cudnn.ReduceOp.Max, last, g.Virtual("Max", DT.Float, rowDims, rowStrides));
        var shifted = g.Pointwise("sub_M", PW.Sub, DT.Float, last, max);
        var exp = g.Pointwise("exp_sub_M", PW.Exp, DT.Float, shifted);
        var sum = g.Reduction("SumExp", Cudnn.ReduceOp.Add, exp, g.Virtual("SumExp", DT.Float, rowDims, rowStrides));
        var log = g.Pointwise("log", PW.Log, DT.Float, sum);
        var stats = p.Stats
            ? g.Add(new(UidStats, "Stats", DT.Float, rowDims, [p.Lse[0], p.Lse[1], p.Lse[2], 1]))
            : g.Virtual("Stats", DT.Float, rowDims, rowStrides);
        g.Pointwise("add", PW.Add, DT.Float, max, log, into: stats);
        var probs = g.Pointwise("div", PW.Div, DT.Float, exp, sum, outType: io); // bmm2 takes P in the i/o type
        g.Matmul("bmm2", probs, v, o);
        return g;
    }

    /// <summary>
    /// Backward (cuDNN ≥ 9.0): softmax_sum = rowsum(dO ⊙ O)·1; S = Q·Kᵀ·scale, masked; P = exp(S − stats); dV = Pᵀ·dO;
    /// dP = dO·Vᵀ; dS = (dP·1 − softmax_sum) ⊙ P · scale; dK = dSᵀ·Q; dQ = dS·K. Grouped heads: dV and dK come out per
    /// query head and are summed over each kv head's group by a reduction. How dQ is written is the one thing
    /// <see cref="CudnnSdpaProblem.Deterministic"/> changes, in both styles, as cudnn-frontend does for
    /// <c>set_deterministic_algorithm</c>: false, dS·K goes into a non-virtual float32 accumulator (F16x16 reordering
    /// in the 1.5 style) copied to dQ by an identity — "how the backend API signals" its atomic dQ path, where key
    /// blocks add into dQ in whatever order they finish; true, no accumulator: dS·K writes dQ itself, and cuDNN picks
    /// its "dP workspace" engine (dS kept in a b·h·s_q·s_kv 16-bit workspace, so dQ = dS·K is a product of its own
    /// with no atomic adds: the same bits run to run).
    /// Everything else — the current style's bound softmax_sum included — is the same in both.
    /// </summary>
    internal static CudnnGraphSpec Backward(CudnnSdpaProblem p, CudnnSdpaStyle style = CudnnSdpaStyle.Frontend15, bool negativeInfinity = false)
    {
        bool current = style == CudnnSdpaStyle.FrontendCurrent;
        var g = new CudnnGraphSpec();
        int io = p.CudnnType;
        long b = p.B, h = p.H, hk = p.Hkv, t = p.T, s = p.S, d = p.D, dv = p.Dv;
        var q = g.Add(new(UidQ, "Q", io, [b, h, t, d], p.Q));
        var kT = g.Add(new(UidK, "K (transposed)", io, [b, hk, d, s], Swap23(p.K)));
        var vT = g.Add(new(UidV, "V (transposed)", io, [b, hk, dv, s], Swap23(p.V)));
        var o = g.Add(new(UidO, "O", io, [b, h, t, dv], p.O));
        var stats = g.Add(new(UidStats, "Stats", DT.Float, [b, h, t, 1], [p.Lse[0], p.Lse[1], p.Lse[2], 1]));
        var dO = g.Add(new(UidDOut, "dO", io, [b, h, t, dv], p.DOut!));
        var dQ = g.Add(new(UidDq, "dQ", io, [b, h, t, d], p.Dq!));
        var dK = g.Add(new(UidDk, "dK", io, [b, hk, s, d], p.Dk!));
        var dV = g.Add(new(UidDv, "dV", io, [b, hk, s, dv], p.Dv_!));
        var scale = g.Add(new(UidScale, "attn_scale", DT.Float, CudnnGraphSpec.Ones(4), CudnnGraphSpec.Ones(4), ByValue: true));
        var one = g.Constant(UidOne, "one", DT.Float, 1.0);

        // softmax_sum = rowsum(dO ⊙ O) (· the dropout scale, 1 here)
        var dOo = g.Pointwise("mul_dO_O", PW.Mul, DT.Float, dO, o, into: g.Virtual("mul_dO_O", DT.Float, [b, h, t, dv], CudnnGraphSpec.Packed(b, h, t, dv)));
        var rowsum = g.Reduction("reduce_dO_o", Cudnn.ReduceOp.Add, dOo, g.Virtual("reduce_dO_o", DT.Float, [b, h, t, 1], [h * t, t, 1, 1]));
        var softmaxSum = g.Pointwise("scale_dropout_inv", PW.Mul, DT.Float, rowsum, one,
            into: current ? g.Add(new(UidSoftmaxSum, "softmax_sum", DT.Float, [b, h, t, 1], [h * t, t, 1, 1])) : null);

        // P = exp(Q·Kᵀ·scale (masked) − stats)
        var scores = g.Matmul("matmul_Q_KT", q, kT, g.Virtual("matmul_Q_KT", DT.Float, [b, h, t, s], CudnnGraphSpec.Packed(b, h, t, s)));
        var last = g.Pointwise("mul_s_attn_scale", PW.Mul, DT.Float, scores, scale);
        if (!current) last = CausalMask(g, last, p, style, negativeInfinity);
        last = g.Pointwise("sub_s_m", PW.Sub, DT.Float, last, stats);
        if (current) last = CausalMask(g, last, p, style, negativeInfinity);
        var probs = g.Pointwise("exp_s", PW.Exp, DT.Float, last);

        // dV = Pᵀ·dO (summed over the group's query heads)
        var probsT = g.Reshape("reshape_p", probs, g.Virtual("reshape_p", io, [b, h, s, t], [h * t * s, t * s, 1, s]));
        GroupedProduct(g, "matmul_pT_dO", "red_dV_head", probsT, dO, dV, io, h, hk);

        // dS = (dO·Vᵀ · 1 − softmax_sum) ⊙ P · scale
        var dP = g.Matmul("matmul_dO_VT", dO, vT, g.Virtual("matmul_dO_VT", DT.Float, [b, h, t, s], CudnnGraphSpec.Packed(b, h, t, s)));
        last = current ? dP : g.Pointwise("dP_dropout_mask", PW.Mul, DT.Float, dP, one);
        last = g.Pointwise("sub_dP_softmax_sum", PW.Sub, DT.Float, last, softmaxSum);
        last = g.Pointwise("mul_dP_exp_s", PW.Mul, DT.Float, last, probs);
        var dS = g.Pointwise("mul_dS_attn_scale", PW.Mul, DT.Float, last, scale);

        // dK = dSᵀ·Q (summed over the group)
        var dST = g.Reshape("reshape_dS", dS, g.Virtual("reshape_dS", io, [b, h, s, t], [h * t * s, t * s, 1, s]));
        GroupedProduct(g, "matmul_dST_Q", "red_dK_head", dST, q, dK, io, h, hk);

        // dQ = dS·K: straight into dQ (deterministic), or accumulated in float32 and then rounded into dQ (atomic)
        var k = g.Reshape("reshape_k", kT, g.Virtual("reshape_k", DT.Float, [b, hk, s, d], p.K));
        if (p.Deterministic)
        {
            g.Matmul("matmul_dS_K", dS, k, dQ);
            return g;
        }
        var dqAccum = g.Add(new(UidDqAccum, "dQ_accum", DT.Float, [b, h, t, d], CudnnGraphSpec.Packed(b, h, t, d),
            Reordering: current ? Cudnn.Reordering.None : Cudnn.Reordering.F16x16));
        g.Matmul("matmul_dS_K", dS, k, dqAccum);
        g.Pointwise("identity_dQ", PW.Identity, DT.Float, dqAccum, into: dQ);
        return g;
    }

    /// <summary>out = a·x, directly when every query head has its own kv head, else per query head then summed over each group.</summary>
    private static void GroupedProduct(CudnnGraphSpec g, string product, string reduction, CudnnTensorSpec a, CudnnTensorSpec x, CudnnTensorSpec output,
        int io, long h, long hk)
    {
        if (h == hk) { g.Matmul(product, a, x, output); return; }
        long b = output.Dims[0], rows = output.Dims[2], cols = output.Dims[3];
        var perHead = g.Matmul(product, a, x, g.Virtual(product, io, [b, h, rows, cols], CudnnGraphSpec.Packed(b, h, rows, cols)));
        g.Reduction(reduction, Cudnn.ReduceOp.Add, perHead, output);
    }

    /// <summary>
    /// The causal mask. <see cref="CudnnSdpaStyle.Frontend15"/>: row = gen_index(axis 2, int32) (plus S − T for
    /// bottom-right, as ADD S then SUB T in int32), col = gen_index(axis 3, int32), keep = row ≥ col, scores = keep ?
    /// scores : lowest. <see cref="CudnnSdpaStyle.FrontendCurrent"/> (the diagonal-band composite): row and col
    /// gen_index first (float32 compute, int32 out), then the shift, the same comparison, and the select with −∞ when
    /// <paramref name="negativeInfinity"/> (cuDNN ≥ 9.10) else lowest.
    /// </summary>
    private static CudnnTensorSpec CausalMask(CudnnGraphSpec g, CudnnTensorSpec scores, CudnnSdpaProblem p, CudnnSdpaStyle style, bool negativeInfinity)
    {
        if (p.Mask == CudnnSdpaMask.None) return scores;
        bool current = style == CudnnSdpaStyle.FrontendCurrent;
        int indexCompute = current ? DT.Float : DT.Int32;
        var row = g.Pointwise(current ? "gen_row_index" : "gen_row_idx_causal", PW.GenIndex, indexCompute, scores, outType: DT.Int32, axis: 2);
        CudnnTensorSpec? col = current ? g.Pointwise("gen_col_index", PW.GenIndex, indexCompute, scores, outType: DT.Int32, axis: 3) : null;
        if (p.Mask == CudnnSdpaMask.BottomRight)
        {
            row = g.Pointwise(current ? "row+skv" : "row_idx_add_skv", PW.Add, DT.Int32, row, g.Constant(UidSkv, "s_kv", DT.Int32, p.S), outType: DT.Int32);
            row = g.Pointwise(current ? "row+skv-sq" : "row_idx_add_sq_sub_sq", PW.Sub, DT.Int32, row, g.Constant(UidSq, "s_q", DT.Int32, p.T), outType: DT.Int32);
        }
        col ??= g.Pointwise("gen_col_idx_causal", PW.GenIndex, indexCompute, scores, outType: DT.Int32, axis: 3);
        var keep = g.Pointwise("row_greater_than_col", PW.CmpGe, DT.Boolean, row, col, outType: DT.Boolean);
        var hidden = g.Constant(UidNegInf, "negative_inf", DT.Float, current && negativeInfinity ? double.NegativeInfinity : HiddenScore);
        return g.Pointwise("binary_select", PW.BinarySelect, DT.Float, scores, hidden, keep);
    }
}
