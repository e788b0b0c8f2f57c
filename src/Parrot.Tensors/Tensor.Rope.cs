namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// Rotary position embedding in the Hugging Face rotate-half convention (Qwen2, Llama):
    /// y = x·cos + rotate_half(x)·sin over the last dimension, rotate_half(x) = cat(−x[D/2:], x[:D/2]).
    /// Layout: x is [batch, heads, seq, head_dim] (Qwen2 attention applies it after the head split and
    /// transpose; any strides, so the transposed projection output can be passed as is), and cos/sin
    /// come from <see cref="RopeTables(int, int, int, double, Device?)"/>: [seq, head_dim] when every
    /// sequence shares its positions, or [batch, 1, seq, head_dim] for per-sequence positions (unsqueeze
    /// a [batch, seq, head_dim] table at 1, as HF's apply_rotary_pos_emb does). In general cos and sin
    /// must broadcast to x's shape (NumPy rules, without enlarging x). x: F32, F64, BF16 or F16; the
    /// tables any float dtype (float32 from RopeTables). Computed in float32 (float64 for F64) and
    /// rounded once; F32 results equal HF's bit for bit given the same tables. For bf16 models HF first
    /// rounds the tables to bf16 and rounds after each product and the sum; here only the result is
    /// rounded, which is at least as accurate. Backward: with tables whose two halves repeat (as these
    /// do), the gradient is ApplyRope(dy, cos, −sin).
    /// </summary>
    public Tensor ApplyRope(Tensor cos, Tensor sin) => ApplyRope(cos, sin, null);

    /// <summary>
    /// <see cref="ApplyRope(Tensor, Tensor)"/> with the result laid out densely in the dimension order
    /// <paramref name="layout"/> (outermost first; null: C order): the same values, in the layout its consumer reads
    /// without a copy (e.g. a gradient going back through a [B, T, H, D] → [B, H, T, D] transpose wants [B, T, H, D]
    /// memory, <see cref="DimensionsByStride"/> of the forward's input).
    /// </summary>
    public Tensor ApplyRope(Tensor cos, Tensor sin, int[]? layout)
    {
        const string op = "ApplyRope";
        CheckRope(op, "x", cos, sin);
        using var c = cos.Expand(_shape);
        using var s = sin.Expand(_shape);
        var y = EmptyInLayout(_shape, layout, DType, Device);
        if (y.Count > 0) Backend.Rope(this, c, s, y);
        return y;
    }

    /// <summary>
    /// <see cref="ApplyRope(Tensor, Tensor)"/> written into <paramref name="output"/> (this shape and dtype, this
    /// device, any strides, no memory shared with this tensor): a gradient written straight into its consumer's buffer.
    /// </summary>
    public void ApplyRopeInto(Tensor cos, Tensor sin, Tensor output)
    {
        const string op = "ApplyRopeInto";
        CheckRope(op, "x", cos, sin);
        ArgumentNullException.ThrowIfNull(output);
        output.EnsureAlive(op);
        if (!output._shape.AsSpan().SequenceEqual(_shape) || output.DType != DType || output.Device != Device)
            throw new ArgumentException($"{op}: output {output.ShapeString()} {output.DType.Name()} on {output.Device} must be {ShapeString()} {DType.Name()} on {Device}");
        if (ReferenceEquals(output.Storage, Storage)) throw new ArgumentException($"{op}: the output shares memory with x");
        using var c = cos.Expand(_shape);
        using var s = sin.Expand(_shape);
        if (output.Count > 0) Backend.Rope(this, c, s, output);
    }

    /// <summary>ApplyRope's checks of this tensor (called <paramref name="name"/> in messages) and its tables.</summary>
    private void CheckRope(string op, string name, Tensor cos, Tensor sin)
    {
        ArgumentNullException.ThrowIfNull(cos);
        ArgumentNullException.ThrowIfNull(sin);
        EnsureAlive(op); cos.EnsureAlive(op); sin.EnsureAlive(op);
        if (!DType.IsFloat()) throw new ArgumentException($"{op}: {name} must be a float tensor, got {DType.Name()} {ShapeString()}");
        if (!cos.DType.IsFloat() || !sin.DType.IsFloat())
            throw new ArgumentException($"{op}: cos and sin must be float tensors, got {cos.DType.Name()} and {sin.DType.Name()}");
        if (cos.Device != Device || sin.Device != Device)
            throw new ArgumentException($"{op}: {name} is on {Device} but cos/sin are on {cos.Device}/{sin.Device}");
        if (Rank == 0 || _shape[^1] % 2 != 0)
            throw new ArgumentException($"{op}: the last dimension of {name} {ShapeString()} (head_dim) must be even");
        foreach (var (t, tname) in new[] { (cos, "cos"), (sin, "sin") })
        {
            if (t.Rank == 0 || t._shape[^1] != _shape[^1])
                throw new ArgumentException($"{op}: {tname} {t.ShapeString()} must end in head_dim {_shape[^1]} like {name} {ShapeString()}");
            var b = BroadcastShapes(_shape, t._shape, op);
            if (!b.AsSpan().SequenceEqual(_shape))
                throw new ArgumentException($"{op}: {tname} {t.ShapeString()} does not broadcast to {name} {ShapeString()} (for [batch, heads, seq, head_dim] use [seq, head_dim] or [batch, 1, seq, head_dim])");
        }
    }

    /// <summary>
    /// The inverse frequencies of Hugging Face's default rotary embedding, computed in float32 as HF does:
    /// inv_freq[i] = 1 / θ^(2i / head_dim) for i &lt; head_dim/2, where 2i/head_dim is a float32 division and
    /// the power is rounded to float32.
    /// </summary>
    public static float[] RopeInverseFrequencies(int headDim, double theta)
    {
        if (headDim <= 0 || headDim % 2 != 0) throw new ArgumentOutOfRangeException(nameof(headDim), $"RopeTables: head_dim must be positive and even, got {headDim}");
        if (!(theta > 1) || double.IsInfinity(theta)) throw new ArgumentOutOfRangeException(nameof(theta), $"RopeTables: θ must be a finite number above 1, got {theta}");
        var inv = new float[headDim / 2];
        float th = (float)theta;
        for (int i = 0; i < inv.Length; i++)
        {
            float exponent = (float)(2 * i) / headDim;
            inv[i] = 1f / (float)Math.Pow(th, exponent);
        }
        return inv;
    }

    /// <summary>
    /// cos and sin tables [..positions.shape, head_dim] (float32) for the given integer positions, as
    /// Hugging Face's Qwen2RotaryEmbedding builds them: freqs = position·inv_freq (a float32 product, as
    /// HF's float32 matmul with inner size 1 gives), emb = cat(freqs, freqs), then cos/sin of emb
    /// (evaluated in float64 and rounded, so within half an ulp where PyTorch's float32 cos is within one).
    /// </summary>
    /// <param name="positions">int64 or int32 positions of any shape (e.g. [seq] or [batch, seq]).</param>
    /// <param name="headDim">The head dimension (even).</param>
    /// <param name="theta">The rope base θ (Qwen2: 1,000,000).</param>
    /// <param name="device">Where to put the tables (default: the positions' device).</param>
    public static (Tensor Cos, Tensor Sin) RopeTables(Tensor positions, int headDim, double theta, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(positions);
        positions.EnsureAlive("RopeTables");
        if (positions.DType is not (DType.I64 or DType.I32))
            throw new ArgumentException($"RopeTables: positions must be int64 or int32, got {positions.DType.Name()}");
        var pos = positions.ToLongArray();
        var shape = new int[positions.Rank + 1];
        positions._shape.CopyTo(shape, 0);
        shape[^1] = headDim;
        return BuildTables(pos, shape, headDim, theta, device ?? positions.Device);
    }

    /// <summary>cos and sin tables [count, head_dim] (float32) for positions start, start+1, ..., start+count−1.</summary>
    public static (Tensor Cos, Tensor Sin) RopeTables(int start, int count, int headDim, double theta, Device? device = null)
    {
        if (count < 0) throw new ArgumentOutOfRangeException(nameof(count), $"RopeTables: count must not be negative, got {count}");
        var pos = new long[count];
        for (int i = 0; i < count; i++) pos[i] = (long)start + i;
        return BuildTables(pos, [count, headDim], headDim, theta, device ?? Device.Cpu);
    }

    private static (Tensor Cos, Tensor Sin) BuildTables(long[] positions, int[] shape, int headDim, double theta, Device device)
    {
        var inv = RopeInverseFrequencies(headDim, theta);
        int half = headDim / 2;
        var cos = new float[checked(positions.Length * headDim)];
        var sin = new float[cos.Length];
        for (int p = 0; p < positions.Length; p++)
        {
            // HF converts the integer positions to float32 before the product.
            float position = positions[p];
            int row = p * headDim;
            for (int i = 0; i < half; i++)
            {
                float freq = position * inv[i];
                float c = (float)Math.Cos(freq), s = (float)Math.Sin(freq);
                cos[row + i] = cos[row + half + i] = c;
                sin[row + i] = sin[row + half + i] = s;
            }
        }
        using var scope = TensorScope.Begin();
        var ct = FromArray(cos, shape);
        var st = FromArray(sin, shape);
        if (device != Device.Cpu) { ct = ct.To(device); st = st.To(device); }
        return (scope.Keep(ct), scope.Keep(st));
    }
}
