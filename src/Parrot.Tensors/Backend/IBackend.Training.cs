namespace Parrot.Tensors;

/// <summary>
/// The fused training ops: the backward passes of the row ops, the embedding gradient and SwiGLU. The autograd
/// rules call these (through the <see cref="Tensor"/> front-ends in Tensor.Training.cs), so one rule runs on
/// every backend and no backend materialises the intermediate tensors a composition would (probabilities,
/// one-hot matrices, normalised activations). Row ops work on the last axis; the front-ends move another axis
/// there with transposed views. Computed in float32 for F32/BF16/F16 and in float64 for F64; 16-bit results
/// are rounded once to nearest even. The per-row statistics (mean, 1/std, 1/rms) are recomputed from x, so
/// the forward passes need not save them.
/// </summary>
public partial interface IBackend
{
    /// <summary>
    /// RMSNorm backward for y = weight · x / √(mean(x²) + eps) over the last axis: with r = 1/√(mean(x²) + eps)
    /// and g = weight ⊙ dy, dx = r·g − x·r³·Σ(g⊙x)/D, and when <paramref name="dweight"/> is given,
    /// dweight += Σ_rows dy ⊙ x · r. x, dy and dx are [..., D] with any strides; x and dx share a float dtype,
    /// dy may have any float dtype; weight is a float vector [D]. dweight is a contiguous float32 vector [D]
    /// (float64 when x is F64). The 16-bit rounding of the normalised value in the forward pass is not
    /// differentiated (as in PyTorch, where it is a cast whose gradient is the identity).
    /// </summary>
    void RmsNormBackward(Tensor x, Tensor weight, double eps, Tensor dy, Tensor dx, Tensor? dweight);

    /// <summary>
    /// LayerNorm backward for y = (x − mean)·r · weight + bias, r = 1/√(var + eps), biased variance: with
    /// x̂ = (x − mean)·r and g = dy ⊙ weight (dy when weight is null), dx = r·(g − mean(g) − x̂·mean(g⊙x̂));
    /// dweight += Σ_rows dy ⊙ x̂ and dbias += Σ_rows dy when given. Shapes, dtypes and strides as
    /// <see cref="RmsNormBackward"/>; dweight and dbias are contiguous float32 vectors [D] (float64 for F64 x).
    /// </summary>
    void LayerNormBackward(Tensor x, Tensor? weight, double eps, Tensor dy, Tensor dx, Tensor? dweight, Tensor? dbias);

    /// <summary>
    /// Softmax backward over the last axis from the forward's output y: dx = y ⊙ (dy − Σ dy⊙y), or for
    /// log-softmax (y = log-probabilities) dx = dy − exp(y)·Σ dy. y, dy and dx share a shape [..., n], any
    /// strides; y and dx share a float dtype, dy may have any float dtype.
    /// </summary>
    void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx, bool log);

    /// <summary>
    /// Cross-entropy backward without materialising the probabilities: dlogits[i, :] = (exp(logits[i, :] −
    /// logSumExp[i]) − onehot(targets[i]))·dloss[i], and 0 on rows whose target is <paramref name="ignoreIndex"/>.
    /// logits and dlogits are [N, C] of one float dtype, any strides; targets [N] I64 (in range, as checked by
    /// the forward); logSumExp and dloss are [N] F32 or F64 (logSumExp from <see cref="CrossEntropy"/>; dloss
    /// already holds the reduction's factor, e.g. 1/count for a mean).
    /// </summary>
    void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor logSumExp, Tensor dloss, Tensor dlogits);

    /// <summary>
    /// Embedding backward: dweight[ids[t], :] += dy[t, :] for every token t. ids is I64 or I32 with any shape
    /// and T elements, values in [0, V) (checked by the forward; a backend still refuses one out of range);
    /// dy is [T, D] of any float dtype and strides; dweight is a contiguous float tensor [V, D]. Deterministic:
    /// each row of dweight sums its tokens' rows in ascending token order, in float32 (float64 for an F64
    /// dweight), and is rounded once when added, whatever the thread count or device.
    /// </summary>
    void EmbeddingBackward(Tensor ids, Tensor dy, Tensor dweight);

    /// <summary>
    /// SwiGLU, y = silu(gate) ⊙ up, as PyTorch's eager act_fn(gate_proj(x)) * up_proj(x): silu is rounded to the
    /// dtype before the product (a no-op for F32/F64), so 16-bit results equal the unfused composition bit for
    /// bit. gate, up and y share a shape and float dtype, any strides.
    /// </summary>
    void SwiGlu(Tensor gate, Tensor up, Tensor y);

    /// <summary>
    /// SwiGLU backward: with s = sigmoid(gate), dgate = dy ⊙ up ⊙ s·(1 + gate·(1 − s)) and dup = dy ⊙ gate·s.
    /// All five share a shape and strides may differ; gate, up, dgate and dup share a float dtype, dy may have
    /// any float dtype.
    /// </summary>
    void SwiGluBackward(Tensor dy, Tensor gate, Tensor up, Tensor dgate, Tensor dup);
}
