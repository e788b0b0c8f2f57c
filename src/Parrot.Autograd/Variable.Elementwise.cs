using Parrot.Tensors;

namespace Parrot.Autograd;

public sealed partial class Variable
{
    // Backward rules run inside a scope the engine opens per node: temporaries they make are freed
    // when the rule returns, so the rules below are written as plain expressions.

    // ---- unary ----

    private Variable Unary(UnaryOp op, Func<Node, Tensor, Tensor> dydx, bool saveOutput)
    {
        var y = Value.Map(op);
        return Graph.Record(op.ToString(), y, [this], (n, g) => [dydx(n, g)], saveOutput ? [Value, y] : [Value]);
    }

    /// <summary>-x</summary>
    public Variable Neg() => Unary(UnaryOp.Neg, (_, g) => -g, false);

    /// <summary>|x| (subgradient 0 at 0)</summary>
    public Variable Abs() => Unary(UnaryOp.Abs, (n, g) =>
    {
        var x = n.Saved(0);
        var zero = Tensor.Scalar(0, x.DType, x.Device);
        return g * (x.Gt(zero).To(g.DType) - x.Lt(zero).To(g.DType));
    }, false);

    /// <summary>e^x</summary>
    public Variable Exp() => Unary(UnaryOp.Exp, (n, g) => g * n.Saved(1), true);

    /// <summary>ln x</summary>
    public Variable Log() => Unary(UnaryOp.Log, (n, g) => g / n.Saved(0), false);

    /// <summary>√x</summary>
    public Variable Sqrt() => Unary(UnaryOp.Sqrt, (n, g) => g * 0.5 / n.Saved(1), true);

    /// <summary>1/√x</summary>
    public Variable Rsqrt() => Unary(UnaryOp.Rsqrt, (n, g) => { var y = n.Saved(1); return g * -0.5 * (y * y * y); }, true);

    /// <summary>tanh x</summary>
    public Variable Tanh() => Unary(UnaryOp.Tanh, (n, g) => g * (1 - n.Saved(1).Square()), true);

    /// <summary>1/(1+e^-x)</summary>
    public Variable Sigmoid() => Unary(UnaryOp.Sigmoid, (n, g) => { var y = n.Saved(1); return g * (y * (1 - y)); }, true);

    /// <summary>x·sigmoid(x)</summary>
    public Variable Silu() => Unary(UnaryOp.Silu, (n, g) =>
    {
        var x = n.Saved(0);
        var sig = x.Sigmoid();
        return g * (sig * (1 + x * (1 - sig)));
    }, false);

    /// <summary>GELU: exact erf form, or the tanh approximation.</summary>
    public Variable Gelu(bool tanhApproximation = false) => tanhApproximation
        ? Unary(UnaryOp.GeluTanh, (n, g) =>
        {
            var x = n.Saved(0);
            const double c = 0.7978845608028654, k = 0.044715;
            var t = (c * (x + k * x * x * x)).Tanh();
            return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (c * (1 + 3 * k * x * x)));
        }, false)
        : Unary(UnaryOp.GeluErf, (n, g) =>
        {
            var x = n.Saved(0);
            // d/dx 0.5·x·(1+erf(x/√2)) = Φ(x) + x·φ(x)
            var cdf = 0.5 * (1 + (x * 0.7071067811865476).Erf());
            var pdf = (x * x * -0.5).Exp() * 0.3989422804014327;
            return g * (cdf + x * pdf);
        }, false);

    /// <summary>CLIP's quick GELU x·sigmoid(1.702x).</summary>
    public Variable QuickGelu() => Unary(UnaryOp.QuickGelu, (n, g) =>
    {
        var x = n.Saved(0);
        var sig = (x * 1.702).Sigmoid();
        return g * (sig * (1 + 1.702 * x * (1 - sig)));
    }, false);

    /// <summary>max(x, 0)</summary>
    public Variable Relu() => Unary(UnaryOp.Relu, (n, g) => { var x = n.Saved(0); return g * x.Gt(Tensor.Scalar(0, x.DType, x.Device)).To(g.DType); }, false);

    /// <summary>sin x</summary>
    public Variable Sin() => Unary(UnaryOp.Sin, (n, g) => g * n.Saved(0).Cos(), false);

    /// <summary>cos x</summary>
    public Variable Cos() => Unary(UnaryOp.Cos, (n, g) => g * -n.Saved(0).Sin(), false);

    /// <summary>x²</summary>
    public Variable Square() => Unary(UnaryOp.Square, (n, g) => g * 2 * n.Saved(0), false);

    /// <summary>1/x</summary>
    public Variable Reciprocal() => Unary(UnaryOp.Reciprocal, (n, g) => -(g * n.Saved(1).Square()), true);

    /// <summary>erf x</summary>
    public Variable Erf() => Unary(UnaryOp.Erf, (n, g) => { var x = n.Saved(0); return g * ((x * x).Neg().Exp() * 1.1283791670955126); }, false);

    // ---- binary ----

    /// <summary>Elementwise binary op with broadcasting; gradients are summed back to each input's shape.</summary>
    public static Variable Apply(BinaryOp op, Variable a, Variable b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var y = Tensor.Apply(op, a.Value, b.Value);
        if (op.IsComparison()) return new Variable(y); // piecewise constant: no gradient
        return op switch
        {
            BinaryOp.Add => Graph.Record("Add", y, [a, b], (n, g) => [To(n, 0, () => g), To(n, 1, () => g)]),
            BinaryOp.Sub => Graph.Record("Sub", y, [a, b], (n, g) => [To(n, 0, () => g), To(n, 1, () => -g)]),
            BinaryOp.Mul => Graph.Record("Mul", y, [a, b], (n, g) =>
                [To(n, 0, () => g * n.Saved(1)), To(n, 1, () => g * n.Saved(0))], a.Value, b.Value),
            BinaryOp.Div => Graph.Record("Div", y, [a, b], (n, g) =>
                // d(a/b)/db = -a/b² = -y/b
                [To(n, 0, () => g / n.Saved(1)), To(n, 1, () => -(g * n.Saved(2) / n.Saved(1)))], a.Value, b.Value, y),
            BinaryOp.Pow => Graph.Record("Pow", y, [a, b], (n, g) =>
            {
                var av = n.Saved(0); var bv = n.Saved(1); var yv = n.Saved(2);
                return [To(n, 0, () => g * bv * av.Pow(bv - 1)), To(n, 1, () => g * yv * av.Log())];
            }, a.Value, b.Value, y),
            BinaryOp.Maximum or BinaryOp.Minimum => Graph.Record(op.ToString(), y, [a, b], (n, g) =>
            {
                var av = n.Saved(0); var bv = n.Saved(1);
                // The winner takes the gradient; ties split it evenly, as PyTorch does.
                var aWins = op == BinaryOp.Maximum ? av.Gt(bv) : av.Lt(bv);
                var wa = aWins.To(g.DType) + av.Eq(bv).To(g.DType) * 0.5;
                return [To(n, 0, () => g * wa), To(n, 1, () => g * (1 - wa))];
            }, a.Value, b.Value),
            _ => throw new NotSupportedException($"no backward rule for {op}"),
        };

        // Input i's gradient, computed only when needed and summed back to its shape.
        static Tensor? To(Node n, int i, Func<Tensor> grad) => n.NeedsGrad(i) ? Broadcast.SumTo(grad(), n.Inputs[i].Shape) : null;
    }

    /// <summary>a + b</summary>
    public static Variable operator +(Variable a, Variable b) => Apply(BinaryOp.Add, a, b);
    /// <summary>a - b</summary>
    public static Variable operator -(Variable a, Variable b) => Apply(BinaryOp.Sub, a, b);
    /// <summary>a · b</summary>
    public static Variable operator *(Variable a, Variable b) => Apply(BinaryOp.Mul, a, b);
    /// <summary>a / b</summary>
    public static Variable operator /(Variable a, Variable b) => Apply(BinaryOp.Div, a, b);
    /// <summary>-a</summary>
    public static Variable operator -(Variable a) => a.Neg();
    /// <summary>a + s</summary>
    public static Variable operator +(Variable a, double s) => a.WithScalar(BinaryOp.Add, s);
    /// <summary>a - s</summary>
    public static Variable operator -(Variable a, double s) => a.WithScalar(BinaryOp.Sub, s);
    /// <summary>a · s</summary>
    public static Variable operator *(Variable a, double s) => a.WithScalar(BinaryOp.Mul, s);
    /// <summary>a / s</summary>
    public static Variable operator /(Variable a, double s) => a.WithScalar(BinaryOp.Div, s);
    /// <summary>s · a</summary>
    public static Variable operator *(double s, Variable a) => a.WithScalar(BinaryOp.Mul, s);
    /// <summary>s + a</summary>
    public static Variable operator +(double s, Variable a) => a.WithScalar(BinaryOp.Add, s);
    /// <summary>s - a</summary>
    public static Variable operator -(double s, Variable a) => Apply(BinaryOp.Sub, new Variable(Tensor.Scalar(s, a.DType, a.Value.Device)), a);

    /// <summary>a ^ b</summary>
    public Variable Pow(Variable b) => Apply(BinaryOp.Pow, this, b);
    /// <summary>a ^ exponent</summary>
    public Variable Pow(double exponent) => WithScalar(BinaryOp.Pow, exponent);
    /// <summary>Elementwise maximum.</summary>
    public Variable Maximum(Variable b) => Apply(BinaryOp.Maximum, this, b);
    /// <summary>Elementwise minimum.</summary>
    public Variable Minimum(Variable b) => Apply(BinaryOp.Minimum, this, b);

    private Variable WithScalar(BinaryOp op, double s) => Apply(op, this, new Variable(Tensor.Scalar(s, Value.DType.IsFloat() ? Value.DType : DType.F32, Value.Device)));

    /// <summary>cond ? a : b (cond is a Bool tensor, no gradient).</summary>
    public static Variable Where(Tensor cond, Variable a, Variable b)
    {
        var y = Tensor.Where(cond, a.Value, b.Value);
        return Graph.Record("Where", y, [a, b], (n, g) =>
        {
            var c = n.Saved(0);
            var zero = Tensor.Zeros([], g.DType, g.Device);
            return
            [
                n.NeedsGrad(0) ? Broadcast.SumTo(Tensor.Where(c, g, zero), n.Inputs[0].Shape) : null,
                n.NeedsGrad(1) ? Broadcast.SumTo(Tensor.Where(c, zero, g), n.Inputs[1].Shape) : null,
            ];
        }, cond);
    }

    /// <summary>A copy in another dtype; the gradient is cast back.</summary>
    public Variable To(DType dtype)
    {
        var from = Value.DType;
        return Graph.Record("To", Value.To(dtype), [this], (_, g) => [g.To(from)]);
    }

    /// <summary>This variable on <paramref name="device"/> (itself when already there); the gradient is copied back.</summary>
    public Variable To(Device device)
    {
        var from = Value.Device;
        if (from == device) return this;
        return Graph.Record("ToDevice", Value.To(device), [this], (_, g) => [g.To(from)]);
    }
}
