using Parrot.Tensors;

namespace Parrot.Autograd;

public sealed partial class Variable
{
    /// <summary>softmax along <paramref name="axis"/>: dx = y ⊙ (g − Σ g⊙y).</summary>
    public Variable Softmax(int axis = -1)
    {
        var y = Value.Softmax(axis);
        return Graph.Record("Softmax", y, [this], (n, g) =>
        {
            var yv = n.Saved(0);
            var dot = (g * yv).Sum([axis], keepDim: true);
            return [yv * (g - dot)];
        }, y);
    }

    /// <summary>log-softmax along <paramref name="axis"/>: dx = g − softmax ⊙ Σ g.</summary>
    public Variable LogSoftmax(int axis = -1)
    {
        var y = Value.LogSoftmax(axis);
        return Graph.Record("LogSoftmax", y, [this], (n, g) =>
        {
            var sum = g.Sum([axis], keepDim: true);
            return [g - n.Saved(0).Exp() * sum];
        }, y);
    }

    /// <summary>
    /// Layer normalisation over the last dim (biased variance) with optional scale and shift. Backward
    /// recomputes the statistics in float32 (float64 for F64) from the saved input.
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
            var x = n.Saved(0);
            var ct = x.DType == DType.F64 ? DType.F64 : DType.F32;
            var xf = x.To(ct); var gf = g.To(ct);
            var mu = xf.Mean([-1], keepDim: true);
            var xc = xf - mu;
            var rstd = ((xc * xc).Mean([-1], keepDim: true) + eps).Rsqrt();
            var xhat = xc * rstd;
            var dxhat = wi >= 0 ? gf * n.Saved(1).To(ct) : gf;
            var grads = new Tensor?[n.Inputs.Count];
            if (n.NeedsGrad(0))
            {
                var m1 = dxhat.Mean([-1], keepDim: true);
                var m2 = (dxhat * xhat).Mean([-1], keepDim: true);
                grads[0] = (rstd * (dxhat - m1 - xhat * m2)).To(x.DType);
            }
            var lead = Enumerable.Range(0, g.Rank - 1).ToArray();
            if (wi >= 0 && n.NeedsGrad(wi)) grads[wi] = (gf * xhat).Sum(lead).To(n.Inputs[wi].DType);
            if (bi >= 0 && n.NeedsGrad(bi)) grads[bi] = gf.Sum(lead).To(n.Inputs[bi].DType);
            return grads;
        }, weight is null ? [Value] : [Value, weight.Value]);
    }

    /// <summary>RMS normalisation over the last dim times a learned scale (Qwen2RMSNorm).</summary>
    public Variable RmsNorm(Variable weight, double eps = 1e-6)
    {
        ArgumentNullException.ThrowIfNull(weight);
        var y = Value.RmsNorm(weight.Value, eps);
        return Graph.Record("RmsNorm", y, [this, weight], (n, g) =>
        {
            var x = n.Saved(0);
            var ct = x.DType == DType.F64 ? DType.F64 : DType.F32;
            var xf = x.To(ct); var gf = g.To(ct);
            var r = ((xf * xf).Mean([-1], keepDim: true) + eps).Rsqrt();
            var xhat = xf * r;
            var grads = new Tensor?[2];
            if (n.NeedsGrad(0))
            {
                var gw = gf * n.Saved(1).To(ct);
                var m = (gw * xhat).Mean([-1], keepDim: true);
                grads[0] = (r * (gw - xhat * m)).To(x.DType);
            }
            if (n.NeedsGrad(1)) grads[1] = (gf * xhat).Sum(Enumerable.Range(0, g.Rank - 1).ToArray()).To(n.Inputs[1].DType);
            return grads;
        }, Value, weight.Value);
    }

    /// <summary>
    /// Cross-entropy of <paramref name="logits"/> [N, C] against class ids <paramref name="targets"/> [N]
    /// (rows whose target is <paramref name="ignoreIndex"/> contribute nothing). Fused: the gradient is
    /// (softmax − one-hot) scaled per row, computed from the saved logits.
    /// </summary>
    public static Variable CrossEntropy(Variable logits, Tensor targets, int ignoreIndex = -100, LossReduction reduction = LossReduction.Mean)
    {
        ArgumentNullException.ThrowIfNull(logits);
        var loss = Tensor.CrossEntropy(logits.Value, targets, ignoreIndex, reduction);
        return Graph.Record("CrossEntropy", loss, [logits], (n, g) =>
        {
            var z = n.Saved(0);
            var t = n.Saved(1).To(DType.I64);
            var ct = z.DType == DType.F64 ? DType.F64 : DType.F32;
            var p = z.To(ct).Softmax(-1);
            var valid = t.Ne(Tensor.Scalar(ignoreIndex, DType.I64)).To(ct).Unsqueeze(1);          // [N, 1]
            var safeT = Tensor.Where(t.Ne(Tensor.Scalar(ignoreIndex, DType.I64)), t, Tensor.Scalar(0, DType.I64)).Unsqueeze(1);
            var oneHot = Tensor.Zeros(p.Shape, ct).ScatterAdd(1, safeT, valid);
            var scale = reduction switch
            {
                LossReduction.Mean => g.To(ct) / valid.Sum(),
                LossReduction.Sum => g.To(ct),
                _ => g.To(ct).Unsqueeze(1),
            };
            return [((p * valid - oneHot) * scale).To(z.DType)];
        }, logits.Value, targets);
    }

    /// <summary>Matrix product with torch.matmul semantics (1-D operands, broadcast batch dims).</summary>
    public Variable MatMul(Variable b)
    {
        ArgumentNullException.ThrowIfNull(b);
        if (Rank == 0 || b.Rank == 0) throw new ArgumentException($"MatMul: operands must have at least one dimension, got {Value.ShapeString()} and {b.Value.ShapeString()}");
        // 1-D operands become matrices, so the gradient rule only handles the ≥2-D case.
        if (Rank == 1) return Unsqueeze(0).MatMul(b).Squeeze(-2);
        if (b.Rank == 1) return MatMul(b.Unsqueeze(1)).Squeeze(-1);
        var y = Value.MatMul(b.Value);
        return Graph.Record("MatMul", y, [this, b], (n, g) =>
        [
            n.NeedsGrad(0) ? Broadcast.SumTo(g.MatMul(n.Saved(1).Transpose(-2, -1)), n.Inputs[0].Shape) : null,
            n.NeedsGrad(1) ? Broadcast.SumTo(n.Saved(0).Transpose(-2, -1).MatMul(g), n.Inputs[1].Shape) : null,
        ], Value, b.Value);
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
