namespace Parrot.Tensors;

/// <summary>
/// What a device must compute. The contract is kept small: primitive families (copy/cast with strides,
/// elementwise with broadcasting, reductions, matmul, gather/scatter) plus fused ops where fusion saves
/// passes over memory. Callers (the <see cref="Tensor"/> methods) validate shapes and dtypes and
/// allocate outputs; a backend method receives tensors of the right shapes on its device. Inputs of
/// elementwise ops arrive already broadcast to the output's shape (stride 0 on broadcast dims).
/// The contract is split by op family over several files (partial interface), each next to the
/// <see cref="Tensor"/> methods that call it.
/// </summary>
public partial interface IBackend
{
    /// <summary>The device this backend computes on.</summary>
    Device Device { get; }

    /// <summary>Allocates <paramref name="bytes"/> bytes of storage, zeroed when asked.</summary>
    Storage Allocate(long bytes, bool zero);

    /// <summary>dst[i] = cast(src[i]) for every index; same shape, any strides and dtypes (src may be broadcast).</summary>
    void Copy(Tensor src, Tensor dst);

    /// <summary>dst[i] = value converted to dst's dtype, for every index.</summary>
    void Fill(Tensor dst, double value);

    /// <summary>y = op(x); same shape, any strides. y's dtype picks the arithmetic and x (any dtype) is converted to it: float ops into a float y (Tensor.Map gives F32 for integer x), neg/abs/square/relu also into an integer y.</summary>
    void Unary(UnaryOp op, Tensor x, Tensor y);

    /// <summary>y = op(a, b); a and b broadcast to y's shape and of one dtype; y has that dtype, or Bool for comparisons.</summary>
    void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y);

    /// <summary>y = cond ? a : b; all broadcast to y's shape; cond is Bool, a, b and y share a dtype.</summary>
    void Where(Tensor cond, Tensor a, Tensor b, Tensor y);

    /// <summary>
    /// Fills dst (contiguous) with seeded random numbers whose value at each flat index depends only on
    /// (seed, index), so the result is the same whatever the thread count. Across devices: uniform values are
    /// the same bits; normal ones (log, sin, cos of the device's math library) agree within a few ulp of the
    /// float64 value, so narrower dtypes store the same bits but for values within those ulp of a rounding boundary.
    /// </summary>
    void Random(Tensor dst, RandomKind kind, ulong seed, double p0, double p1);

    /// <summary>
    /// <see cref="Random"/> with the seed read on the device: dst gets, bit for bit, what
    /// <c>Random(dst, kind, baseSeed + counter[0], p0, p1)</c> gives on this backend (the sum wraps in 64 bits; counter[0]
    /// read as unsigned), and then counter[0] goes up by one (wrapping) on the device, after the draw has read it — also
    /// when dst is empty, so a caller's k-th call always draws seed baseSeed + k. <paramref name="counter"/>: one int64
    /// element, contiguous, on this device; read and written here, never on the host. The launch is the same every call,
    /// so a CUDA graph that records it draws a fresh tensor on every replay (the one the eager call would draw next).
    /// dst contiguous, as for <see cref="Random"/>.
    /// </summary>
    void RandomAt(Tensor dst, RandomKind kind, ulong baseSeed, Tensor counter, double p0, double p1);
}

/// <summary>Elementwise functions of one argument.</summary>
public enum UnaryOp
{
    /// <summary>-x</summary>
    Neg,
    /// <summary>|x|</summary>
    Abs,
    /// <summary>e^x</summary>
    Exp,
    /// <summary>natural logarithm</summary>
    Log,
    /// <summary>square root</summary>
    Sqrt,
    /// <summary>1/sqrt(x)</summary>
    Rsqrt,
    /// <summary>hyperbolic tangent</summary>
    Tanh,
    /// <summary>1/(1+e^-x)</summary>
    Sigmoid,
    /// <summary>x·sigmoid(x)</summary>
    Silu,
    /// <summary>GELU, exact form 0.5·x·(1+erf(x/√2))</summary>
    GeluErf,
    /// <summary>GELU, tanh approximation 0.5·x·(1+tanh(√(2/π)(x+0.044715x³)))</summary>
    GeluTanh,
    /// <summary>CLIP's x·sigmoid(1.702x)</summary>
    QuickGelu,
    /// <summary>max(x, 0)</summary>
    Relu,
    /// <summary>sine</summary>
    Sin,
    /// <summary>cosine</summary>
    Cos,
    /// <summary>x²</summary>
    Square,
    /// <summary>1/x</summary>
    Reciprocal,
    /// <summary>Gauss error function</summary>
    Erf,
}

/// <summary>Elementwise functions of two arguments.</summary>
public enum BinaryOp
{
    /// <summary>a + b</summary>
    Add,
    /// <summary>a - b</summary>
    Sub,
    /// <summary>a · b</summary>
    Mul,
    /// <summary>a / b</summary>
    Div,
    /// <summary>a ^ b</summary>
    Pow,
    /// <summary>max(a, b), NaN propagating</summary>
    Maximum,
    /// <summary>min(a, b), NaN propagating</summary>
    Minimum,
    /// <summary>a == b (Bool result)</summary>
    Eq,
    /// <summary>a != b (Bool result)</summary>
    Ne,
    /// <summary>a &lt; b (Bool result)</summary>
    Lt,
    /// <summary>a &lt;= b (Bool result)</summary>
    Le,
    /// <summary>a &gt; b (Bool result)</summary>
    Gt,
    /// <summary>a &gt;= b (Bool result)</summary>
    Ge,
}

/// <summary>Distributions for <see cref="IBackend.Random"/>.</summary>
public enum RandomKind
{
    /// <summary>Uniform on [p0, p1).</summary>
    Uniform,
    /// <summary>Normal with mean p0 and standard deviation p1.</summary>
    Normal,
}

/// <summary>Extension facts about <see cref="BinaryOp"/>.</summary>
public static class BinaryOpInfo
{
    /// <summary>True for the comparisons, whose result is Bool.</summary>
    public static bool IsComparison(this BinaryOp op) => op >= BinaryOp.Eq;
}
