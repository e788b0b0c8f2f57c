namespace Parrot.Tensors;

public partial interface IBackend
{
    /// <summary>
    /// Fused scaled-dot-product attention, o = softmax(q·kᵀ·scale + mask)·v, without materialising the scores:
    /// keys are visited in blocks with an online softmax (FlashAttention's forward).
    /// <list type="bullet">
    /// <item>q [B, H, T, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv]; H is a multiple of Hkv and query head h reads
    /// kv head h / (H / Hkv) (grouped-query attention, no copy of the shared heads). Any strides.</item>
    /// <item><paramref name="mask"/>: null, or an additive mask already broadcast to [B, H, T, S] (stride 0 on
    /// broadcast dims), of any float dtype; −∞ hides a key.</item>
    /// <item><paramref name="causal"/>: query i, at absolute position <paramref name="queryOffset"/> + i, sees keys
    /// 0..queryOffset + i only (the KV-cache case has queryOffset = S − T).</item>
    /// <item><paramref name="output"/> [B, H, T, Dv], any strides, the dtype of q.</item>
    /// <item><paramref name="logSumExp"/>: null, or [B, H, T] (F32, or F64 for F64 inputs) receiving each row's
    /// ln Σ_j exp(s_j) over its visible keys, s = q·kᵀ·scale + mask: what backward needs to recompute the
    /// probabilities.</item>
    /// </list>
    /// q, k and v share one float dtype. F32, BF16 and F16 compute in float32 and round the output once; F64
    /// computes in float64. A row that sees no key (every key masked) gives NaN and a log-sum-exp of −∞, as the
    /// composite softmax does.
    /// </summary>
    void Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, int queryOffset, double scale, Tensor output, Tensor? logSumExp);

    /// <summary>
    /// Backward of <see cref="Attention"/> (FlashAttention's): from q, k, v, the forward's output
    /// <paramref name="o"/> and log-sum-exp, and the output gradient <paramref name="dO"/>, the probabilities are
    /// recomputed as P = exp(s − L) and dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dO ⊙ o)),
    /// dQ = dS·K·scale, dK = dSᵀ·Q·scale, dK and dV summed over the query heads that share a kv head.
    /// <list type="bullet">
    /// <item>q, k, v, <paramref name="mask"/>, <paramref name="causal"/>, <paramref name="queryOffset"/> and
    /// <paramref name="scale"/> as the forward call; o and dO [B, H, T, Dv], any strides (dO of any float dtype);
    /// <paramref name="logSumExp"/> [B, H, T] as the forward wrote it (F32, F64 for F64 inputs).</item>
    /// <item><paramref name="dq"/> [B, H, T, D], <paramref name="dk"/> [B, Hkv, S, D], <paramref name="dv"/>
    /// [B, Hkv, S, Dv]: null, or written (not accumulated) in the dtype of q, any strides.</item>
    /// </list>
    /// Computed in float32 (float64 for F64) and rounded once.
    /// </summary>
    void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor dO, Tensor logSumExp, Tensor? mask, bool causal, int queryOffset, double scale,
        Tensor? dq, Tensor? dk, Tensor? dv);
}
