namespace Parrot.Tensors;

public sealed partial class Tensor
{
    // ---- softmax ----

    /// <summary>
    /// Softmax along <paramref name="axis"/> (max-subtracted, so large logits do not overflow). Float dtypes
    /// only. A slice whose entries are all -inf gives NaN, as in PyTorch.
    /// </summary>
    public Tensor Softmax(int axis = -1) => SoftmaxAlong(axis, log: false);

    /// <summary>log(softmax(x)) along <paramref name="axis"/>, computed as (x - max) - ln Σ exp(x - max).</summary>
    public Tensor LogSoftmax(int axis = -1) => SoftmaxAlong(axis, log: true);

    private Tensor SoftmaxAlong(int axis, bool log)
    {
        string op = log ? "LogSoftmax" : "Softmax";
        EnsureAlive(op);
        if (!DType.IsFloat()) throw new ArgumentException($"{op}: input {ShapeString()} is {DType.Name()}; float dtypes only (convert with To first)");
        if (Rank == 0)
        {
            NormalizeAxis(axis, 1, op); // PyTorch accepts axis 0 or -1 on a 0-d tensor
            using var one = Reshape(1);
            using var r = one.SoftmaxAlong(0, log);
            return r.Reshape();
        }
        int a = NormalizeAxis(axis, Rank, op);
        var y = Empty(_shape, DType, Device);
        if (a == Rank - 1) Backend.Softmax(this, y, log);
        else
        {
            // The kernel works on the last axis; swapped views of both tensors put the axis there without copying.
            using var xt = Transpose(a, -1);
            using var yt = y.Transpose(a, -1);
            Backend.Softmax(xt, yt, log);
        }
        return y;
    }

    // ---- normalisation ----

    /// <summary>
    /// Layer normalisation over the last axis: (x - mean) / √(var + eps) · weight + bias, biased variance as in
    /// PyTorch. <paramref name="weight"/> and <paramref name="bias"/> are [D] float vectors or null (1 and 0).
    /// </summary>
    public Tensor LayerNorm(Tensor? weight, Tensor? bias, double eps = 1e-5)
    {
        EnsureAlive("LayerNorm");
        if (!DType.IsFloat() || Rank == 0)
            throw new ArgumentException($"LayerNorm: input must be a float tensor of rank ≥ 1, got {ShapeString()} {DType.Name()}");
        CheckNormVector("LayerNorm", "weight", weight);
        CheckNormVector("LayerNorm", "bias", bias);
        var y = Empty(_shape, DType, Device);
        Backend.LayerNorm(this, weight, bias, eps, y);
        return y;
    }

    /// <summary>
    /// RMS normalisation over the last axis with Hugging Face Qwen2RMSNorm semantics: in float32,
    /// h = x / √(mean(x²) + eps); h is cast back to x's dtype; the result is weight · h in the promoted dtype of
    /// x and weight (bf16 x and bf16 weight give bf16 bit-identical to HF). F64 inputs are computed in float64.
    /// </summary>
    public Tensor RmsNorm(Tensor weight, double eps = 1e-6)
    {
        ArgumentNullException.ThrowIfNull(weight);
        EnsureAlive("RmsNorm");
        if (!DType.IsFloat() || Rank == 0)
            throw new ArgumentException($"RmsNorm: input must be a float tensor of rank ≥ 1, got {ShapeString()} {DType.Name()}");
        CheckNormVector("RmsNorm", "weight", weight);
        var y = Empty(_shape, DTypeInfo.Promote(DType, weight.DType), Device);
        Backend.RmsNorm(this, weight, eps, y);
        return y;
    }

    /// <summary>
    /// The residual step of a pre-norm decoder in inference: (x + residual, RmsNorm(x + residual)), bit for bit the add
    /// then <see cref="RmsNorm"/>, as one backend op (<see cref="IBackend.AddRmsNorm"/>: one kernel on a GPU, a launch
    /// and a pass fewer per layer in decode) when x and residual share a shape, a float dtype and a device; otherwise
    /// (broadcasting, mixed dtypes) the two ops.
    /// </summary>
    public static (Tensor Sum, Tensor Normalized) AddRmsNorm(Tensor x, Tensor residual, Tensor weight, double eps = 1e-6)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(residual);
        ArgumentNullException.ThrowIfNull(weight);
        x.EnsureAlive("AddRmsNorm");
        residual.EnsureAlive("AddRmsNorm");
        if (!x.DType.IsFloat() || x.Rank == 0 || residual.DType != x.DType || residual.Device != x.Device || !residual.Shape.SequenceEqual(x.Shape))
        {
            var s = x + residual;
            return (s, s.RmsNorm(weight, eps));
        }
        x.CheckNormVector("AddRmsNorm", "weight", weight);
        using var scope = TensorScope.Begin();
        var sum = Empty(x._shape, x.DType, x.Device);
        var y = Empty(x._shape, DTypeInfo.Promote(x.DType, weight.DType), x.Device);
        x.Backend.AddRmsNorm(x, residual, weight, eps, sum, y);
        return (scope.Keep(sum), scope.Keep(y));
    }

    private void CheckNormVector(string op, string name, Tensor? v)
    {
        if (v is null) return;
        v.EnsureAlive(op);
        if (v.Device != Device) throw new ArgumentException($"{op}: {name} is on {v.Device}, input on {Device}");
        if (v.Rank != 1 || v._shape[0] != _shape[^1] || !v.DType.IsFloat())
            throw new ArgumentException($"{op}: {name} must be a float vector [{_shape[^1]}] for input {ShapeString()}, got {v.ShapeString()} {v.DType.Name()}");
    }

    // ---- cross-entropy ----

    /// <summary>
    /// Cross-entropy between <paramref name="logits"/> [..., C] (classes on the last axis) and integer
    /// <paramref name="targets"/> of the leading shape [...]: -log softmax(logits)[target] per row. Rows whose
    /// target is <paramref name="ignoreIndex"/> count 0 and are left out of the mean; the mean of zero counted
    /// rows is NaN, as PyTorch. A target outside 0..C-1 that is not the ignore index throws, naming the row and
    /// value. The loss is float32 (float64 for F64 logits) whatever the logits' dtype: PyTorch returns bf16 for
    /// bf16 logits, a precision a training loss does not want.
    /// </summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100, LossReduction reduction = LossReduction.Mean)
    {
        Tensor? lse = null;
        return CrossEntropyCore(logits, targets, ignoreIndex, reduction, saveLogSumExp: false, ref lse);
    }

    private static Tensor CrossEntropyCore(Tensor logits, Tensor targets, int ignoreIndex, LossReduction reduction, bool saveLogSumExp, ref Tensor? logSumExp)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(targets);
        logits.EnsureAlive("CrossEntropy");
        targets.EnsureAlive("CrossEntropy");
        if (!logits.DType.IsFloat() || logits.Rank == 0)
            throw new ArgumentException($"CrossEntropy: logits must be a float tensor [..., C], got {logits.ShapeString()} {logits.DType.Name()}");
        if (!targets.DType.IsInteger())
            throw new ArgumentException($"CrossEntropy: targets must be integers (int64), got {targets.DType.Name()} {targets.ShapeString()}");
        if (!targets.Shape.SequenceEqual(logits.Shape[..^1]))
            throw new ArgumentException($"CrossEntropy: targets {targets.ShapeString()} must have the shape of logits {logits.ShapeString()} without the class axis");
        if (targets.Device != logits.Device) throw new ArgumentException($"CrossEntropy: logits on {logits.Device}, targets on {targets.Device}");
        int classes = logits.Shape[^1];
        int rows = checked((int)targets.Count);
        var lossType = logits.DType == DType.F64 ? DType.F64 : DType.F32;
        using var scope = TensorScope.Begin();
        var flatLogits = logits.Reshape(rows, classes);
        var flatTargets = targets.DType == DType.I64 ? targets.Reshape(rows) : targets.To(DType.I64).Reshape(rows);
        var perRow = Empty([rows], lossType, logits.Device);
        var lse = saveLogSumExp ? Empty([rows], lossType, logits.Device) : null;
        // The CPU kernel checks the targets as it goes (an immediate exception); a device that checks indices on
        // itself is handed them instead of reading them back, and throws the same error at the next read of a value.
        if (logits.Device.Kind != DeviceKind.Cpu && logits.Backend is IDeferredIndexChecks deferred)
            deferred.IndexChecks.Record(flatTargets, classes, ignoreIndex, (value, row) =>
                $"CrossEntropy: target {value} at row {row} is out of range for {classes} classes (ignore index {ignoreIndex})");
        logits.Backend.CrossEntropy(flatLogits, flatTargets, ignoreIndex, perRow, lse);
        if (lse is not null) logSumExp = scope.Keep(lse);
        switch (reduction)
        {
            case LossReduction.None: return scope.Keep(perRow.Reshape(targets._shape));
            case LossReduction.Sum: return scope.Keep(perRow.Sum());
            default:
                using (var ignore = Full([], ignoreIndex, DType.I64, logits.Device))
                {
                    var counted = flatTargets.Ne(ignore).Sum().To(lossType);
                    return scope.Keep(perRow.Sum() / counted); // 0 / 0 = NaN when every row is ignored
                }
        }
    }

    // ---- top-k ----

    /// <summary>
    /// The <paramref name="k"/> largest values along <paramref name="axis"/> and their indices (I64), largest
    /// first; equal values come in index order and NaN ranks above every number (PyTorch's order).
    /// </summary>
    public (Tensor Values, Tensor Indices) TopK(int k, int axis = -1)
    {
        EnsureAlive("TopK");
        if (DType == DType.Bool || Rank == 0)
            throw new ArgumentException($"TopK: input must be numeric with rank ≥ 1, got {ShapeString()} {DType.Name()}");
        int a = NormalizeAxis(axis, Rank, "TopK");
        if (k < 0 || k > _shape[a])
            throw new ArgumentOutOfRangeException(nameof(k), $"TopK: k = {k} is out of range for axis {axis} of size {_shape[a]} in {ShapeString()}");
        var shape = (int[])_shape.Clone();
        shape[a] = k;
        var values = Empty(shape, DType, Device);
        var indices = Empty(shape, DType.I64, Device);
        using var xt = Transpose(a, -1);
        using var vt = values.Transpose(a, -1);
        using var it = indices.Transpose(a, -1);
        Backend.TopK(xt, k, vt, it);
        return (values, indices);
    }
}
