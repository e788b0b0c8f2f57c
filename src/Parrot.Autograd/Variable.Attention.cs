using Parrot.Tensors;

namespace Parrot.Autograd;

public sealed partial class Variable
{
    /// <summary>
    /// Fused scaled-dot-product attention, softmax(q·kᵀ·scale + mask)·v with q [B, H, T, D], k [B, Hkv, S, D],
    /// v [B, Hkv, S, Dv] (grouped-query heads: Hkv divides H), an optional additive <paramref name="mask"/>
    /// broadcastable to [B, H, T, S] (a constant: no gradient), <paramref name="causal"/> masking with the first
    /// query at position <paramref name="queryOffset"/>; see <see cref="Tensor.ScaledDotProductAttention(Tensor, Tensor, Tensor, Tensor?, bool, int, double?)"/>.
    /// <para>Backward is FlashAttention's: the forward keeps only q, k, v, the output o and each row's
    /// log-sum-exp L, and the probabilities are recomputed as P = exp(s − L). With dO the output gradient:
    /// dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(dO ⊙ o)), dQ = dS·K·scale, dK = dSᵀ·Q·scale. The query
    /// heads sharing a kv head are stacked as rows ([B, Hkv, group·T, ·]), so the products sum the group's
    /// contributions to dK and dV without expanding k and v. Computed in float32 (float64 for F64) by the backend's
    /// <see cref="IBackend.AttentionBackward"/> (through <see cref="Tensor.ScaledDotProductAttentionBackward"/>).</para>
    /// </summary>
    public static Variable ScaledDotProductAttention(Variable q, Variable k, Variable v, Tensor? mask = null, bool causal = false, int queryOffset = 0, double? scale = null)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        // No backward can follow (no-grad, or no input needs a gradient): no log-sum-exp, which also tells the backend
        // this is inference (CudaBackend: cuDNN's per-shape plans are for training unless asked for). Not inside a
        // checkpointed block: its forward runs without gradients and its recomputation with them, and both must take
        // the same kernels (with the log-sum-exp: cuDNN on a GPU by default) so the recomputed output is the one the
        // forward handed on.
        if (!Graph.IsInCheckpoint && (Graph.IsGradDisabled || !(q.RequiresGrad || k.RequiresGrad || v.RequiresGrad)))
            return new Variable(Tensor.ScaledDotProductAttention(q.Value, k.Value, v.Value, mask, causal, queryOffset, scale));
        var o = Tensor.ScaledDotProductAttention(q.Value, k.Value, v.Value, out var lse, mask, causal, queryOffset, scale);
        double sc = scale ?? (q.Shape[3] > 0 ? 1 / Math.Sqrt(q.Shape[3]) : 1);
        Tensor[] saved = mask is null ? [q.Value, k.Value, v.Value, o, lse] : [q.Value, k.Value, v.Value, o, lse, mask];
        return Graph.Record("ScaledDotProductAttention", o, [q, k, v], (n, g) =>
        {
            // Gradients go where their inputs offer (Node.GradientTarget: the columns of a packed q/k/v projection's
            // gradient, through the head split's views): no copy gathers them there after.
            var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(n.Saved(0), n.Saved(1), n.Saved(2), n.Saved(3), n.Saved(4), g,
                mask is null ? null : n.Saved(5), causal, queryOffset, sc, n.NeedsGrad(0), n.NeedsGrad(1), n.NeedsGrad(2),
                Target(n, 0, g), Target(n, 1, g), Target(n, 2, g));
            return [dq, dk, dv];
        }, saved);
    }

    /// <summary>Input <paramref name="i"/>'s gradient target, unless it shares memory with the gradient read (then none).</summary>
    private static Tensor? Target(Node n, int i, Tensor g) =>
        n.GradientTarget(i) is { } t && !ReferenceEquals(t.Storage, g.Storage) ? t : null;
}
