namespace Parrot.Tensors;

public sealed partial class Tensor
{
    // ---- unary ----

    /// <summary>Applies a float function elementwise. Integer inputs are computed (and returned) as F32.</summary>
    public Tensor Map(UnaryOp op)
    {
        EnsureAlive(op.ToString());
        bool intOk = op is UnaryOp.Neg or UnaryOp.Abs or UnaryOp.Square or UnaryOp.Relu;
        if (DType == DType.Bool) throw new ArgumentException($"{op}: not defined for bool tensors {ShapeString()}");
        var outType = DType.IsFloat() || intOk ? DType : DType.F32;
        var y = Empty(_shape, outType, Device);
        Backend.Unary(op, this, y);
        return y;
    }

    /// <summary>-x</summary>
    public Tensor Neg() => Map(UnaryOp.Neg);
    /// <summary>|x|</summary>
    public Tensor Abs() => Map(UnaryOp.Abs);
    /// <summary>e^x</summary>
    public Tensor Exp() => Map(UnaryOp.Exp);
    /// <summary>ln x</summary>
    public Tensor Log() => Map(UnaryOp.Log);
    /// <summary>√x</summary>
    public Tensor Sqrt() => Map(UnaryOp.Sqrt);
    /// <summary>1/√x</summary>
    public Tensor Rsqrt() => Map(UnaryOp.Rsqrt);
    /// <summary>tanh x</summary>
    public Tensor Tanh() => Map(UnaryOp.Tanh);
    /// <summary>1/(1+e^-x)</summary>
    public Tensor Sigmoid() => Map(UnaryOp.Sigmoid);
    /// <summary>x·sigmoid(x)</summary>
    public Tensor Silu() => Map(UnaryOp.Silu);
    /// <summary>GELU: exact erf form, or the tanh approximation when <paramref name="tanhApproximation"/>.</summary>
    public Tensor Gelu(bool tanhApproximation = false) => Map(tanhApproximation ? UnaryOp.GeluTanh : UnaryOp.GeluErf);
    /// <summary>CLIP's quick GELU x·sigmoid(1.702x).</summary>
    public Tensor QuickGelu() => Map(UnaryOp.QuickGelu);
    /// <summary>max(x, 0)</summary>
    public Tensor Relu() => Map(UnaryOp.Relu);
    /// <summary>sin x</summary>
    public Tensor Sin() => Map(UnaryOp.Sin);
    /// <summary>cos x</summary>
    public Tensor Cos() => Map(UnaryOp.Cos);
    /// <summary>x²</summary>
    public Tensor Square() => Map(UnaryOp.Square);
    /// <summary>1/x</summary>
    public Tensor Reciprocal() => Map(UnaryOp.Reciprocal);
    /// <summary>erf x</summary>
    public Tensor Erf() => Map(UnaryOp.Erf);

    // ---- binary ----

    /// <summary>Elementwise <paramref name="op"/> with NumPy broadcasting and PyTorch type promotion.</summary>
    public static Tensor Apply(BinaryOp op, Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        a.EnsureAlive(op.ToString());
        b.EnsureAlive(op.ToString());
        if (a.Device != b.Device) throw new ArgumentException($"{op}: operands are on different devices ({a.Device}, {b.Device})");
        var shape = BroadcastShapes(a._shape, b._shape, op.ToString());
        var ct = DTypeInfo.Promote(a.DType, b.DType);
        if (op is BinaryOp.Div && !ct.IsFloat()) ct = DType.F32; // true division, as in PyTorch
        if (ct == DType.Bool && !op.IsComparison()) ct = op is BinaryOp.Maximum or BinaryOp.Minimum ? DType.Bool : DType.I64;
        using var scope = TensorScope.Begin();
        var ea = a.CastAndExpand(ct, shape);
        var eb = b.CastAndExpand(ct, shape);
        var y = Empty(shape, op.IsComparison() ? DType.Bool : ct, a.Device);
        a.Backend.Binary(op, ea, eb, y);
        return scope.Keep(y);
    }

    private Tensor CastAndExpand(DType dtype, int[] shape)
    {
        var t = DType == dtype ? this : To(dtype);
        return t.Expand(shape);
    }

    /// <summary>The broadcast shape of two shapes (NumPy rules), or an exception naming the op and both shapes.</summary>
    public static int[] BroadcastShapes(ReadOnlySpan<int> a, ReadOnlySpan<int> b, string op)
    {
        int rank = Math.Max(a.Length, b.Length);
        var r = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int da = i - (rank - a.Length) >= 0 ? a[i - (rank - a.Length)] : 1;
            int db = i - (rank - b.Length) >= 0 ? b[i - (rank - b.Length)] : 1;
            if (da != db && da != 1 && db != 1)
                throw new ArgumentException($"{op}: shapes {ShapeString(a)} and {ShapeString(b)} cannot be broadcast together");
            r[i] = da == 1 ? db : da;
        }
        return r;
    }

    private Tensor ScalarLike(double v) => Full([], v, DType.IsFloat() ? DType : (double.IsInteger(v) ? DType : DType.F32), Device);

    /// <summary>a + b</summary>
    public Tensor Add(Tensor b) => Apply(BinaryOp.Add, this, b);
    /// <summary>a - b</summary>
    public Tensor Sub(Tensor b) => Apply(BinaryOp.Sub, this, b);
    /// <summary>a · b</summary>
    public Tensor Mul(Tensor b) => Apply(BinaryOp.Mul, this, b);
    /// <summary>a / b (true division)</summary>
    public Tensor Div(Tensor b) => Apply(BinaryOp.Div, this, b);
    /// <summary>a ^ b</summary>
    public Tensor Pow(Tensor b) => Apply(BinaryOp.Pow, this, b);
    /// <summary>a ^ exponent</summary>
    public Tensor Pow(double exponent) { using var e = ScalarLike(exponent); return Apply(BinaryOp.Pow, this, e); }
    /// <summary>Elementwise maximum.</summary>
    public Tensor Maximum(Tensor b) => Apply(BinaryOp.Maximum, this, b);
    /// <summary>Elementwise minimum.</summary>
    public Tensor Minimum(Tensor b) => Apply(BinaryOp.Minimum, this, b);
    /// <summary>a == b</summary>
    public Tensor Eq(Tensor b) => Apply(BinaryOp.Eq, this, b);
    /// <summary>a != b</summary>
    public Tensor Ne(Tensor b) => Apply(BinaryOp.Ne, this, b);
    /// <summary>a &lt; b</summary>
    public Tensor Lt(Tensor b) => Apply(BinaryOp.Lt, this, b);
    /// <summary>a &lt;= b</summary>
    public Tensor Le(Tensor b) => Apply(BinaryOp.Le, this, b);
    /// <summary>a &gt; b</summary>
    public Tensor Gt(Tensor b) => Apply(BinaryOp.Gt, this, b);
    /// <summary>a &gt;= b</summary>
    public Tensor Ge(Tensor b) => Apply(BinaryOp.Ge, this, b);

    /// <summary>Applies a binary op with a scalar right operand (kept in this tensor's dtype when it is a float).</summary>
    public Tensor Apply(BinaryOp op, double scalar) { using var s = ScalarLike(scalar); return Apply(op, this, s); }

    /// <summary>Adds elementwise.</summary>
    public static Tensor operator +(Tensor a, Tensor b) => Apply(BinaryOp.Add, a, b);
    /// <summary>Subtracts elementwise.</summary>
    public static Tensor operator -(Tensor a, Tensor b) => Apply(BinaryOp.Sub, a, b);
    /// <summary>Multiplies elementwise.</summary>
    public static Tensor operator *(Tensor a, Tensor b) => Apply(BinaryOp.Mul, a, b);
    /// <summary>Divides elementwise.</summary>
    public static Tensor operator /(Tensor a, Tensor b) => Apply(BinaryOp.Div, a, b);
    /// <summary>Negates.</summary>
    public static Tensor operator -(Tensor a) => a.Neg();
    /// <summary>Adds a scalar.</summary>
    public static Tensor operator +(Tensor a, double s) => a.Apply(BinaryOp.Add, s);
    /// <summary>Subtracts a scalar.</summary>
    public static Tensor operator -(Tensor a, double s) => a.Apply(BinaryOp.Sub, s);
    /// <summary>Multiplies by a scalar.</summary>
    public static Tensor operator *(Tensor a, double s) => a.Apply(BinaryOp.Mul, s);
    /// <summary>Divides by a scalar.</summary>
    public static Tensor operator /(Tensor a, double s) => a.Apply(BinaryOp.Div, s);
    /// <summary>Adds a scalar.</summary>
    public static Tensor operator +(double s, Tensor a) => a.Apply(BinaryOp.Add, s);
    /// <summary>Multiplies by a scalar.</summary>
    public static Tensor operator *(double s, Tensor a) => a.Apply(BinaryOp.Mul, s);
    /// <summary>Scalar minus tensor.</summary>
    public static Tensor operator -(double s, Tensor a) { using var t = a.ScalarLike(s); return Apply(BinaryOp.Sub, t, a); }
    /// <summary>Scalar divided by tensor.</summary>
    public static Tensor operator /(double s, Tensor a) { using var t = a.ScalarLike(s); return Apply(BinaryOp.Div, t, a); }

    // ---- where and casts ----

    /// <summary>cond ? a : b with broadcasting; cond must be Bool.</summary>
    public static Tensor Where(Tensor cond, Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(cond);
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        cond.EnsureAlive("Where"); a.EnsureAlive("Where"); b.EnsureAlive("Where");
        if (cond.DType != DType.Bool) throw new ArgumentException($"Where: the condition must be bool, got {cond.DType.Name()} {cond.ShapeString()}");
        if (a.Device != b.Device || a.Device != cond.Device) throw new ArgumentException($"Where: operands are on different devices (cond on {cond.Device}, a on {a.Device}, b on {b.Device})");
        var shape = BroadcastShapes(BroadcastShapes(cond._shape, a._shape, "Where"), b._shape, "Where");
        var ct = DTypeInfo.Promote(a.DType, b.DType);
        using var scope = TensorScope.Begin();
        var y = Empty(shape, ct, a.Device);
        a.Backend.Where(cond.Expand(shape), a.CastAndExpand(ct, shape), b.CastAndExpand(ct, shape), y);
        return scope.Keep(y);
    }

    /// <summary>A copy converted to <paramref name="dtype"/> (and/or moved to <paramref name="device"/>); floats narrow with round-to-nearest-even.</summary>
    public Tensor To(DType dtype, Device? device = null)
    {
        EnsureAlive("To");
        var dev = device ?? Device;
        if (dev != Device) return CopyAcrossDevices(dtype, dev);
        var y = Empty(_shape, dtype, dev);
        Backend.Copy(this, y);
        return y;
    }

    /// <summary>A copy on another device.</summary>
    public Tensor To(Device device) => To(DType, device);

    private Tensor CopyAcrossDevices(DType dtype, Device dev)
    {
        // Host <-> device transfers go through the non-CPU backend, which owns the device memory.
        var target = Backends.For(dev.Kind == DeviceKind.Cpu ? Device : dev);
        if (target is not IDeviceTransfer transfer)
            throw new NotSupportedException($"To: no transfer between {Device} and {dev}");
        using var src = DType == dtype ? Contiguous() : To(dtype);
        var y = Empty(_shape, dtype, dev);
        transfer.Transfer(src, y);
        return y;
    }

    /// <summary>
    /// Copies <paramref name="src"/> into this tensor in place (broadcasting src, converting its dtype). A source on
    /// another device is first copied to this tensor's device (as PyTorch's copy_): how a checkpoint read on the host
    /// fills parameters that live on a GPU.
    /// </summary>
    public void CopyFrom(Tensor src)
    {
        ArgumentNullException.ThrowIfNull(src);
        EnsureAlive("CopyFrom"); src.EnsureAlive("CopyFrom");
        if (src.Device != Device)
        {
            using var moved = src.To(Device);
            CopyFrom(moved);
            return;
        }
        var shape = BroadcastShapes(_shape, src._shape, "CopyFrom");
        if (!shape.AsSpan().SequenceEqual(_shape))
            throw new ArgumentException($"CopyFrom: source {src.ShapeString()} does not broadcast to destination {ShapeString()}");
        using var e = src.Expand(_shape);
        Backend.Copy(e, this);
    }

    /// <summary>Sets every element to <paramref name="value"/> in place.</summary>
    public void Fill(double value)
    {
        EnsureAlive("Fill");
        Backend.Fill(this, value);
    }
}

/// <summary>A backend that can move contiguous tensors between host and its device.</summary>
public interface IDeviceTransfer
{
    /// <summary>Copies contiguous <paramref name="src"/> into contiguous <paramref name="dst"/> of the same shape and dtype, across devices.</summary>
    void Transfer(Tensor src, Tensor dst);
}
