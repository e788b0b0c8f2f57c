using Parrot.Tensors;

namespace Parrot.Autograd;

public sealed partial class Variable
{
    /// <summary>softmax along <paramref name="axis"/>: dx = y ⊙ (g − Σ g⊙y), one fused backend pass.</summary>
    public Variable Softmax(int axis = -1)
    {
        var y = Value.Softmax(axis);
        return Graph.Record("Softmax", y, [this], (n, g) => [n.Saved(0).SoftmaxBackward(g, axis, log: false)], y);
    }

    /// <summary>log-softmax along <paramref name="axis"/>: dx = g − softmax ⊙ Σ g, one fused backend pass.</summary>
    public Variable LogSoftmax(int axis = -1)
    {
        var y = Value.LogSoftmax(axis);
        return Graph.Record("LogSoftmax", y, [this], (n, g) => [n.Saved(0).SoftmaxBackward(g, axis, log: true)], y);
    }

    /// <summary>
    /// Layer normalisation over the last dim (biased variance) with optional scale and shift. Backward is one
    /// fused backend pass that recomputes the statistics from the saved input (float32, float64 for F64).
    /// </summary>
    public Variable LayerNorm(Variable? weight, Variable? bias, double eps = 1e-5)
    {
        var y = Value.LayerNorm(weight?.Value, bias?.Value, eps);
        var inputs = new List<Variable> { this };
        if (weight is not null) inputs.Add(weight);
        if (bias is not null) inputs.Add(bias);
        int wi = weight is null ? -1 : 1, bi = bias is null ? -1 : (weight is null ? 1 : 2);
        return Graph.Record("LayerNorm", y, inputs.ToArray(), (n, g) =>
        {
            var (dx, dw, db) = Tensor.LayerNormBackward(n.Saved(0), wi >= 0 ? n.Saved(1) : null, eps, g,
                wi >= 0 && n.NeedsGrad(wi), bi >= 0 && n.NeedsGrad(bi));
            var grads = new Tensor?[n.Inputs.Count];
            grads[0] = n.NeedsGrad(0) ? dx : null;
            if (dw is not null) grads[wi] = dw.To(n.Inputs[wi].DType);
            if (db is not null) grads[bi] = db.To(n.Inputs[bi].DType);
            return grads;
        }, weight is null ? [Value] : [Value, weight.Value]);
    }

    /// <summary>RMS normalisation over the last dim times a learned scale (Qwen2RMSNorm); backward is one fused backend pass.</summary>
    public Variable RmsNorm(Variable weight, double eps = 1e-6)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var y = Value.RmsNorm(weight.Value, eps);
        return Graph.Record("RmsNorm", y, [this, weight], (n, g) =>
        {
            var (dx, dw) = Tensor.RmsNormBackward(n.Saved(0), n.Saved(1), eps, g, n.NeedsGrad(1));
            // The weight's gradient is summed in float32: cast only where the weight is narrower (To of the same dtype copies).
            var wt = n.Inputs[1].DType;
            return [n.NeedsGrad(0) ? dx : null, dw is null || dw.DType == wt ? dw : dw.To(wt)];
        }, Value, weight.Value);
    }

    /// <summary>
    /// Cross-entropy of <paramref name="logits"/> [N, C] against class ids <paramref name="targets"/> [N]
    /// (rows whose target is <paramref name="ignoreIndex"/> contribute nothing). Fused: the forward saves each
    /// row's log-sum-exp and the backward computes (softmax − one-hot) scaled per row in one pass, without
    /// materialising the probabilities.
    /// </summary>
    public static Variable CrossEntropy(Variable logits, Tensor targets, int ignoreIndex = -100, LossReduction reduction = LossReduction.Mean)
    {
        ArgumentNullException.ThrowIfNull(logits);
        var (loss, lse) = Tensor.CrossEntropyWithLogSumExp(logits.Value, targets, ignoreIndex, reduction);
        try
        {
            return Graph.Record("CrossEntropy", loss, [logits], (n, g) =>
                [Tensor.CrossEntropyBackward(n.Saved(0), n.Saved(1), ignoreIndex, reduction, n.Saved(2), g)], logits.Value, targets, lse);
        }
        finally
        {
            lse.Dispose(); // the graph holds its own reference when it saves it
        }
    }

    /// <summary>
    /// SwiGLU, silu(<paramref name="gate"/>) ⊙ <paramref name="up"/> (the Qwen2/LLaMA MLP activation), in one
    /// fused pass forward and backward. Same values as gate.Silu() * up, bit for bit.
    /// </summary>
    public static Variable SwiGlu(Variable gate, Variable up)
    {
        ArgumentNullException.ThrowIfNull(gate);
        ArgumentNullException.ThrowIfNull(up);
        var y = Tensor.SwiGlu(gate.Value, up.Value);
        return Graph.Record("SwiGlu", y, [gate, up], (n, g) =>
        {
            var (dg, du) = Tensor.SwiGluBackward(g, n.Saved(0), n.Saved(1));
            return [n.NeedsGrad(0) ? dg : null, n.NeedsGrad(1) ? du : null];
        }, gate.Value, up.Value);
    }

    /// <summary>Matrix product with torch.matmul semantics (1-D operands, broadcast batch dims).</summary>
    public Variable MatMul(Variable b)
    {
        ArgumentNullException.ThrowIfNull(b);
        if (Rank == 0 || b.Rank == 0) throw new ArgumentException($"MatMul: operands must have at least one dimension, got {Value.ShapeString()} and {b.Value.ShapeString()}");
        // 1-D operands become matrices, so the gradient rule only handles the ≥2-D case.
        if (Rank == 1) return Unsqueeze(0).MatMul(b).Squeeze(-2);
        if (b.Rank == 1) return MatMul(b.Unsqueeze(1)).Squeeze(-1);
        // [..., M, K]·[K, N] (every Linear layer): one product over all rows instead of a batch of products sharing B.
        // Its B gradient is then one product over all rows too; the batched form needed a [batch, K, N] product and
        // a sum over the batch (on an H200 that sum cost 96 % of a Qwen2-0.5B training step).
        if (b.Rank == 2 && Rank > 2)
        {
            var shape = Shape.ToArray();
            shape[^1] = b.Shape[1];
            long rows = 1; // not -1: with K = 0 the rows could not be inferred from zero elements
            for (int d = 0; d < Rank - 1; d++) rows *= Shape[d];
            return Reshape(checked((int)rows), Shape[^1]).MatMul(b).Reshape(shape);
        }
        var y = Value.MatMul(b.Value);
        return Graph.Record("MatMul", y, [this, b], (n, g) =>
        [
            n.NeedsGrad(0) ? Broadcast.SumTo(g.MatMul(n.Saved(1).Transpose(-2, -1)), n.Inputs[0].Shape) : null,
            n.NeedsGrad(1) ? GradientOfRight(n.Saved(0), g, n.Saved(1), n.Inputs[1].Shape) : null,
        ], Value, b.Value);
    }

    /// <summary>
    /// this·b + bias for this [M, K], b [K, N], bias [N] (a Linear layer with a bias): on a GPU the bias rides in the
    /// product's epilogue. Gradients as MatMul's, and the bias's the column sums of the output gradient.
    /// </summary>
    public Variable MatMulBias(Variable b, Variable bias)
    {
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(bias);
        var y = Tensor.MatMulBias(Value, b.Value, bias.Value);
        return Graph.Record("MatMulBias", y, [this, b, bias], (n, g) =>
        [
            n.NeedsGrad(0) ? g.MatMul(n.Saved(1).Transpose(-2, -1)) : null,
            n.NeedsGrad(1) ? GradientOfRight(n.Saved(0), g, n.Saved(1), n.Inputs[1].Shape) : null,
            n.NeedsGrad(2) ? g.Sum(0) : null,
        ], Value, b.Value);
    }

    /// <summary>
    /// aᵀ·g summed to <paramref name="shape"/>, laid out as <paramref name="b"/> is: for a matrix b stored transposed
    /// (a Linear weight W [N, K] used as Wᵀ) it is computed as (gᵀ·a)ᵀ, so W's gradient is W-shaped and contiguous once
    /// the transpose's own backward turns it round (else the optimizer copies every weight gradient to make it so).
    /// </summary>
    private static Tensor GradientOfRight(Tensor a, Tensor g, Tensor b, ReadOnlySpan<int> shape)
    {
        if (b.Rank == 2 && a.Rank == 2 && b.Shape[0] > 1 && b.Strides[0] == 1 && b.Strides[1] == b.Shape[0])
        {
            using var gt = g.Transpose(-2, -1);
            using var product = gt.MatMul(a);
            return product.Transpose(-2, -1);
        }
        using var at = a.Transpose(-2, -1);
        return Broadcast.SumTo(at.MatMul(g), shape);
    }

    /// <summary>
    /// A convolution whose stride equals its kernel (ViT patch embedding): x [B, C, H, W], weight
    /// [O, C, P, P], bias [O] → [B, O, H/P, W/P]; composed from views and one matrix product.
    /// </summary>
    public Variable PatchEmbed(Variable weight, Variable? bias)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (Rank != 4 || weight.Rank != 4 || weight.Shape[1] != Shape[1] || weight.Shape[2] != weight.Shape[3])
            throw new ArgumentException($"PatchEmbed: input {Value.ShapeString()} must be [B, C, H, W] and weight {weight.Value.ShapeString()} [O, C, P, P]");
        int bsz = Shape[0], c = Shape[1], h = Shape[2], w = Shape[3], o = weight.Shape[0], p = weight.Shape[2];
        if (h % p != 0 || w % p != 0) throw new ArgumentException($"PatchEmbed: image {h}×{w} is not a multiple of the patch size {p}");
        int gh = h / p, gw = w / p;
        var patches = Reshape(bsz, c, gh, p, gw, p).Permute(0, 2, 4, 1, 3, 5).Reshape(bsz * gh * gw, c * p * p);
        var y = patches.MatMul(weight.Reshape(o, c * p * p).Transpose());
        if (bias is not null) y = y + bias;
        return y.Reshape(bsz, gh, gw, o).Permute(0, 3, 1, 2);
    }
}
