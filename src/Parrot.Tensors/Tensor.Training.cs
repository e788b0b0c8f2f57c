namespace Parrot.Tensors;

/// <summary>
/// Front-ends of the fused training ops (<see cref="IBackend"/>, IBackend.Training.cs): they check shapes,
/// dtypes and devices, allocate the results and call the tensors' backend. The autograd rules use them, so
/// a rule runs the same on every backend.
/// </summary>
public sealed partial class Tensor
{
    /// <summary>
    /// The gradients of <c>x.RmsNorm(weight, eps)</c> given the output's gradient <paramref name="dy"/>: dx in x's
    /// dtype and, when <paramref name="weightGrad"/>, the weight's gradient as float32 [D] (float64 for F64 x).
    /// </summary>
    public static (Tensor Dx, Tensor? DWeight) RmsNormBackward(Tensor x, Tensor weight, double eps, Tensor dy, bool weightGrad)
    {
        ArgumentNullException.ThrowIfNull(weight);
        CheckRowGrad("RmsNormBackward", x, dy);
        x.CheckNormVector("RmsNormBackward", "weight", weight);
        var dx = Empty(x._shape, x.DType, x.Device);
        var dw = weightGrad ? Zeros([x._shape[^1]], AccumulatorType(x), x.Device) : null;
        x.Backend.RmsNormBackward(x, weight, eps, dy, dx, dw);
        return (dx, dw);
    }

    /// <summary>
    /// The gradients of <c>x.LayerNorm(weight, bias, eps)</c> given <paramref name="dy"/>: dx in x's dtype, and
    /// when asked the weight's and the bias's gradients as float32 [D] (float64 for F64 x).
    /// </summary>
    public static (Tensor Dx, Tensor? DWeight, Tensor? DBias) LayerNormBackward(Tensor x, Tensor? weight, double eps, Tensor dy, bool weightGrad, bool biasGrad)
    {
        CheckRowGrad("LayerNormBackward", x, dy);
        x.CheckNormVector("LayerNormBackward", "weight", weight);
        var dx = Empty(x._shape, x.DType, x.Device);
        var acc = AccumulatorType(x);
        var dw = weightGrad ? Zeros([x._shape[^1]], acc, x.Device) : null;
        var db = biasGrad ? Zeros([x._shape[^1]], acc, x.Device) : null;
        x.Backend.LayerNormBackward(x, weight, eps, dy, dx, dw, db);
        return (dx, dw, db);
    }

    /// <summary>
    /// The gradient of softmax (or log-softmax when <paramref name="log"/>) along <paramref name="axis"/>, from
    /// this tensor, the forward's output, and the output's gradient <paramref name="dy"/>. Result in y's dtype.
    /// </summary>
    public Tensor SoftmaxBackward(Tensor dy, int axis, bool log)
    {
        string op = log ? "LogSoftmaxBackward" : "SoftmaxBackward";
        ArgumentNullException.ThrowIfNull(dy);
        if (Rank == 0 && dy.Rank == 0 && DType.IsFloat())
        {
            NormalizeAxis(axis, 1, op);
            return Zeros([], DType, Device); // a softmax over one entry is constant
        }
        CheckRowGrad(op, this, dy);
        int a = NormalizeAxis(axis, Rank, op);
        var dx = Empty(_shape, DType, Device);
        if (a == Rank - 1) Backend.SoftmaxBackward(this, dy, dx, log);
        else
        {
            using var yt = Transpose(a, -1);
            using var dyt = dy.Transpose(a, -1);
            using var dxt = dx.Transpose(a, -1);
            Backend.SoftmaxBackward(yt, dyt, dxt, log);
        }
        return dx;
    }

    /// <summary>
    /// <see cref="CrossEntropy"/> that also returns each row's log-sum-exp (float32, float64 for F64 logits; one
    /// per target, flattened), which <see cref="CrossEntropyBackward"/> needs.
    /// </summary>
    public static (Tensor Loss, Tensor LogSumExp) CrossEntropyWithLogSumExp(Tensor logits, Tensor targets, int ignoreIndex = -100, LossReduction reduction = LossReduction.Mean)
    {
        Tensor? lse = null;
        var loss = CrossEntropyCore(logits, targets, ignoreIndex, reduction, saveLogSumExp: true, ref lse);
        return (loss, lse!);
    }

    /// <summary>
    /// The gradient of <see cref="CrossEntropy"/> with respect to the logits, from the forward's log-sum-exp and
    /// the loss's gradient <paramref name="dloss"/> (a scalar for Mean and Sum, the targets' shape for None). The
    /// probabilities are not materialised: one fused pass per row. Result in the logits' shape and dtype.
    /// </summary>
    public static Tensor CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, LossReduction reduction, Tensor logSumExp, Tensor dloss)
    {
        ArgumentNullException.ThrowIfNull(logits);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(logSumExp);
        ArgumentNullException.ThrowIfNull(dloss);
        int classes = logits.Shape[^1];
        int rows = checked((int)targets.Count);
        if (logSumExp.Count != rows || logSumExp.Device != logits.Device)
            throw new ArgumentException($"CrossEntropyBackward: logSumExp {logSumExp.ShapeString()} on {logSumExp.Device} must hold one value per target ({rows}) on {logits.Device}");
        var lossType = logits.DType == DType.F64 ? DType.F64 : DType.F32;
        using var scope = TensorScope.Begin();
        var flatTargets = targets.DType == DType.I64 ? targets.Reshape(rows) : targets.To(DType.I64).Reshape(rows);
        var perRow = reduction switch
        {
            LossReduction.None => dloss.To(lossType).Reshape(rows),
            LossReduction.Sum => dloss.To(lossType).Reshape(1).Expand(rows),
            _ => (dloss.To(lossType) / flatTargets.Ne(Full([], ignoreIndex, DType.I64, logits.Device)).Sum().To(lossType)).Reshape(1).Expand(rows),
        };
        var dlogits = Empty(logits._shape, logits.DType, logits.Device);
        logits.Backend.CrossEntropyBackward(logits.Reshape(rows, classes), flatTargets, ignoreIndex, logSumExp.Reshape(rows), perRow, dlogits.Reshape(rows, classes));
        return scope.Keep(dlogits);
    }

    /// <summary>
    /// The gradient of <see cref="Embedding"/>'s weight [<paramref name="vocab"/>, D] in <paramref name="dtype"/>:
    /// row v is the sum of dy's rows at the positions where ids == v, added in ascending position order in
    /// float32 (float64 for F64) and rounded once, on every backend. dy is [..., D] with the ids' leading shape.
    /// </summary>
    public static Tensor EmbeddingBackward(Tensor ids, Tensor dy, int vocab, DType dtype)
    {
        const string op = "EmbeddingBackward";
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(dy);
        ids.EnsureAlive(op); dy.EnsureAlive(op);
        RequireIndex(ids, op, dy);
        if (dy.Rank != ids.Rank + 1 || !dy._shape.AsSpan(0, ids.Rank).SequenceEqual(ids._shape) || !dy.DType.IsFloat() || !dtype.IsFloat())
            throw new ArgumentException($"{op}: dy {dy.ShapeString()} {dy.DType.Name()} must be a float tensor of the ids' shape {ids.ShapeString()} plus one dimension, and the gradient's dtype ({dtype.Name()}) a float dtype");
        int dim = dy._shape[^1];
        var dw = Zeros([vocab, dim], dtype, dy.Device);
        using var rows = dy.Reshape(-1, dim);
        dy.Backend.EmbeddingBackward(ids, rows, dw);
        return dw;
    }

    /// <summary>SwiGLU: silu(<paramref name="gate"/>) ⊙ <paramref name="up"/> in one pass (same shape and float dtype).</summary>
    public static Tensor SwiGlu(Tensor gate, Tensor up)
    {
        CheckSwiGlu("SwiGlu", gate, up);
        var y = Empty(gate._shape, gate.DType, gate.Device);
        gate.Backend.SwiGlu(gate, up, y);
        return y;
    }

    /// <summary>The gradients of <see cref="SwiGlu"/> given the output's gradient <paramref name="dy"/>, in gate's dtype.</summary>
    public static (Tensor DGate, Tensor DUp) SwiGluBackward(Tensor dy, Tensor gate, Tensor up)
    {
        CheckSwiGlu("SwiGluBackward", gate, up);
        CheckRowGrad("SwiGluBackward", gate, dy);
        var dg = Empty(gate._shape, gate.DType, gate.Device);
        var du = Empty(gate._shape, gate.DType, gate.Device);
        gate.Backend.SwiGluBackward(dy, gate, up, dg, du);
        return (dg, du);
    }

    private static DType AccumulatorType(Tensor x) => x.DType == DType.F64 ? DType.F64 : DType.F32;

    private static void CheckRowGrad(string op, Tensor x, Tensor dy)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(dy);
        x.EnsureAlive(op); dy.EnsureAlive(op);
        if (!x.DType.IsFloat() || x.Rank == 0 || !dy.DType.IsFloat() || !x._shape.AsSpan().SequenceEqual(dy._shape))
            throw new ArgumentException($"{op}: input {x.ShapeString()} {x.DType.Name()} and its gradient {dy.ShapeString()} {dy.DType.Name()} must be float tensors of one shape, rank ≥ 1");
        if (dy.Device != x.Device) throw new ArgumentException($"{op}: the gradient is on {dy.Device}, the input on {x.Device}");
    }

    private static void CheckSwiGlu(string op, Tensor gate, Tensor up)
    {
        ArgumentNullException.ThrowIfNull(gate);
        ArgumentNullException.ThrowIfNull(up);
        gate.EnsureAlive(op); up.EnsureAlive(op);
        if (!gate.DType.IsFloat() || up.DType != gate.DType || !gate._shape.AsSpan().SequenceEqual(up._shape) || up.Device != gate.Device)
            throw new ArgumentException($"{op}: gate {gate.ShapeString()} {gate.DType.Name()} on {gate.Device} and up {up.ShapeString()} {up.DType.Name()} on {up.Device} must share a shape, a float dtype and a device");
    }
}
