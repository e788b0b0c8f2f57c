namespace Parrot.Tensors;

public partial interface IBackend
{
    /// <summary>
    /// Softmax (or log-softmax when <paramref name="log"/>) over the last axis: y = exp(x - max) / Σ exp(x - max),
    /// log: y = (x - max) - ln Σ exp(x - max). x and y have the same shape and float dtype, any strides.
    /// A row whose entries are all -inf gives NaN, as in PyTorch; a NaN anywhere in a row makes the row NaN.
    /// </summary>
    void Softmax(Tensor x, Tensor y, bool log);

    /// <summary>
    /// Layer normalisation over the last axis: y = (x - mean) / √(var + eps) · weight + bias, with the biased
    /// variance (divided by D), as PyTorch. x and y are [..., D] of the same float dtype, any strides;
    /// weight and bias (each optional: 1 and 0 when null) are [D] of any float dtype. Statistics are taken in
    /// float64; F32/BF16/F16 rows are normalised in float32 and rounded once on store.
    /// </summary>
    void LayerNorm(Tensor x, Tensor? weight, Tensor? bias, double eps, Tensor y);

    /// <summary>
    /// RMS normalisation over the last axis with Hugging Face Qwen2RMSNorm semantics. x is [..., D] of a
    /// float dtype, weight [D] of a float dtype, y [..., D] of the promoted dtype of the two; any strides.
    /// For F32/BF16/F16 x, in float32: v = Σx²/D, h = x · (1 / √(v + (float)eps)); then h is rounded to x's
    /// dtype (HF's <c>hidden_states.to(input_dtype)</c>, a no-op for F32), and y = weight · h is computed in
    /// float32 and rounded to y's dtype. F64 x is computed in float64 throughout (HF would pass through float32).
    /// </summary>
    void RmsNorm(Tensor x, Tensor weight, double eps, Tensor y);

    /// <summary>
    /// The residual step of a pre-norm decoder in inference, fused: sum = x + residual (computed in float32 for
    /// F32/BF16/F16, rounded once to sum's dtype, as <see cref="Binary"/> Add), then y = <see cref="RmsNorm"/>(sum, weight).
    /// x, residual and sum are [..., D] of one float dtype and shape, weight [D] of a float dtype, y [..., D] of the
    /// promoted dtype of sum and weight; any strides. The results must equal Binary Add followed by RmsNorm on the same
    /// backend bit for bit: decoding uses this op in place of the two (one launch fewer per layer on a GPU) and its
    /// logits must not depend on which ran.
    /// </summary>
    void AddRmsNorm(Tensor x, Tensor residual, Tensor weight, double eps, Tensor sum, Tensor y);

    /// <summary>
    /// The residual step of a pre-norm decoder and the product that reads its norm, fused (decode): with
    /// (sum, h) = <see cref="AddRmsNorm"/>(x, residual, normWeight, eps), y = h·weightᵀ + bias (bias optional), or, with
    /// <paramref name="upWeight"/>, y = SwiGlu(h·weightᵀ, h·upWeightᵀ) (weight the gate; no bias); h is not kept.
    /// x, residual and sum are [..., D], y [..., N] (the same leading dims), normWeight [D], weight and upWeight [N, D]
    /// as a Linear layer stores them, bias [N]; all of one dtype (F32, BF16 or F16), x, residual, sum, normWeight and
    /// bias contiguous, y contiguous, sum and y overlapping no other operand. The results must equal, bit for bit, what
    /// this backend gives for <see cref="AddRmsNorm"/> followed by the product ops that <c>Tensor.MatMulBias</c> (or
    /// <c>Tensor.MatMul</c> without a bias) or <c>Tensor.SwiGluLinear</c> run: decode uses this op in their place (on a GPU
    /// one launch where there were two) and its logits must not depend on which ran.
    /// </summary>
    void AddRmsNormLinear(Tensor x, Tensor residual, Tensor normWeight, double eps, Tensor weight, Tensor? bias, Tensor? upWeight, Tensor sum, Tensor y);

    /// <summary>
    /// Per-row cross-entropy: lossPerRow[i] = logsumexp(logits[i, :]) - logits[i, targets[i]], and 0 for rows
    /// whose target equals <paramref name="ignoreIndex"/>. logits is [N, C] of a float dtype, targets [N] I64,
    /// lossPerRow [N] F32 or F64; any strides. A target outside 0..C-1 that is not the ignore index throws
    /// <see cref="ArgumentOutOfRangeException"/> naming the row and the value, before anything is written.
    /// When <paramref name="logSumExp"/> ([N] F32 or F64) is given, each row's logsumexp is saved there for
    /// <see cref="CrossEntropyBackward"/> (ignored rows included).
    /// </summary>
    void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor lossPerRow, Tensor? logSumExp);
}
