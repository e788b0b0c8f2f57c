namespace Parrot.Tensors;

public sealed partial class Tensor
{
    /// <summary>
    /// Matrix product with <c>torch.matmul</c> semantics. Two 1-D operands give their dot product (a 0-d
    /// tensor); a 1-D first operand is treated as a row [1, K] and a 1-D second operand as a column [K, 1],
    /// the added dimension being removed from the result; otherwise the last two dimensions multiply as
    /// matrices and the leading (batch) dimensions broadcast (e.g. [2, 1, M, K] · [3, K, N] → [2, 3, M, N]).
    /// Transposed, sliced and broadcast operands are read in place.
    /// </summary>
    /// <param name="a">The left operand, [..., M, K] or [K].</param>
    /// <param name="b">The right operand, [..., K, N] or [K].</param>
    /// <param name="outputDType">
    /// The result's dtype; by default the operands' dtype. BF16 and F16 operands (which are multiplied with
    /// float32 accumulation) may ask for an F32 result to skip the final rounding.
    /// </param>
    /// <exception cref="ArgumentException">Shapes that do not multiply or broadcast, 0-d operands, operands on
    /// different devices or of different dtypes, or a dtype without a matrix product (bool, uint8).</exception>
    public static Tensor MatMul(Tensor a, Tensor b, DType? outputDType = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        a.EnsureAlive("MatMul");
        b.EnsureAlive("MatMul");
        if (a.Rank == 0 || b.Rank == 0)
            throw new ArgumentException($"MatMul: both operands need at least one dimension, got {a.ShapeString()} and {b.ShapeString()}");
        if (a.Device != b.Device)
            throw new ArgumentException($"MatMul: operands {a.ShapeString()} and {b.ShapeString()} are on different devices ({a.Device}, {b.Device})");
        if (a.DType != b.DType)
            throw new ArgumentException($"MatMul: operands {a.ShapeString()} {a.DType.Name()} and {b.ShapeString()} {b.DType.Name()} have different dtypes; convert one with To()");
        if (a.DType is DType.Bool or DType.U8)
            throw new ArgumentException($"MatMul: no matrix product for {a.DType.Name()} operands {a.ShapeString()} and {b.ShapeString()}");
        var outType = outputDType ?? a.DType;
        if (outType != a.DType && !(a.DType.IsHalfStorage() && outType == DType.F32))
            throw new ArgumentException($"MatMul: cannot produce {outType.Name()} from {a.DType.Name()} operands (only bfloat16/float16 operands may ask for a float32 result)");

        int k = a.Shape[^1];
        int kb = b.Rank == 1 ? b.Shape[0] : b.Shape[^2];
        if (k != kb)
            throw new ArgumentException($"MatMul: cannot multiply {a.ShapeString()} by {b.ShapeString()}: the first operand's last dimension ({k}) differs from the second's {(b.Rank == 1 ? "length" : "second-to-last dimension")} ({kb})");

        using var scope = TensorScope.Begin();
        var a2 = a.Rank == 1 ? a.Unsqueeze(0) : a;
        var b2 = b.Rank == 1 ? b.Unsqueeze(1) : b;
        int m = a2.Shape[^2], n = b2.Shape[^1];
        var batch = BroadcastBatch(a2.Shape[..^2], b2.Shape[..^2], a, b);
        int[] aShape = [.. batch, m, k], bShape = [.. batch, k, n], cShape = [.. batch, m, n];
        // Operands already of the broadcast shape (every 2-D product) need no Expand view: a view per operand per product
        // was host time in decode, where the host issues ~450 ops per token.
        var ae = a2.Shape.SequenceEqual(aShape) ? a2 : a2.Expand(aShape);
        var be = b2.Shape.SequenceEqual(bShape) ? b2 : b2.Expand(bShape);
        var c = Empty(cShape, outType, a.Device);
        a.Backend.MatMul(ae, be, c);

        if (a.Rank > 1 && b.Rank > 1) return scope.Keep(c);
        int[] resultShape = [.. batch, .. a.Rank > 1 ? [m] : Array.Empty<int>(), .. b.Rank > 1 ? [n] : Array.Empty<int>()];
        return scope.Keep(c.ViewAs(resultShape));
    }

    /// <summary>
    /// a·b + bias for a [M, K], b [K, N] (any strides) and bias [N]: a Linear layer with a bias. On a GPU, for f32, bf16
    /// or f16 operands and a bias of the same dtype, the bias is added in the product's epilogue (one pass, rounded
    /// once, as PyTorch's addmm); otherwise the product and the addition (with the usual dtype promotion) run one after
    /// the other.
    /// </summary>
    public static Tensor MatMulBias(Tensor a, Tensor b, Tensor bias)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(bias);
        if (a.Rank != 2 || b.Rank != 2 || bias.Rank != 1 || a.Shape[1] != b.Shape[0] || bias.Shape[0] != b.Shape[1])
            throw new ArgumentException($"MatMulBias: needs a [M, K], b [K, N] and bias [N], got {a.ShapeString()}, {b.ShapeString()} and {bias.ShapeString()}");
        if (bias.Device != a.Device)
            throw new ArgumentException($"MatMulBias: bias {bias.ShapeString()} is on {bias.Device}, the operands on {a.Device}");
        if (a.Backend is Cuda.CudaBackend cuda && a.DType == b.DType && bias.DType == a.DType && a.DType is DType.F32 or DType.BF16 or DType.F16
            && a.Device == b.Device)
        {
            using var scope = TensorScope.Begin();
            var c = Empty([a.Shape[0], b.Shape[1]], a.DType, a.Device);
            var contiguousBias = bias.IsContiguous ? bias : bias.Contiguous();
            cuda.MatMulEpilogue(a, b, c, contiguousBias, gelu: false);
            return scope.Keep(c);
        }
        using var product = MatMul(a, b);
        return product + bias;
    }

    /// <summary>
    /// The first half of a gated MLP: SwiGlu(x·<paramref name="gateWeight"/>ᵀ, x·<paramref name="upWeight"/>ᵀ) for x
    /// [..., K] and weights [N, K] as a Linear layer stores them (one float dtype, one device), giving [..., N]. On a
    /// GPU, decode (at most 4 rows of x) takes one kernel (native/gemv.cu) instead of two products and SwiGlu; its
    /// result is bit for bit theirs, which run everywhere else (the same tensor ops as the autograd path).
    /// </summary>
    public static Tensor SwiGluLinear(Tensor x, Tensor gateWeight, Tensor upWeight)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(gateWeight);
        ArgumentNullException.ThrowIfNull(upWeight);
        x.EnsureAlive("SwiGluLinear"); gateWeight.EnsureAlive("SwiGluLinear"); upWeight.EnsureAlive("SwiGluLinear");
        if (x.Rank == 0 || gateWeight.Rank != 2 || !gateWeight.Shape.SequenceEqual(upWeight.Shape) || gateWeight.Shape[1] != x.Shape[^1])
            throw new ArgumentException($"SwiGluLinear: needs x [..., K] and two weights [N, K], got {x.ShapeString()}, {gateWeight.ShapeString()} and {upWeight.ShapeString()}");
        if (gateWeight.DType != x.DType || upWeight.DType != x.DType || gateWeight.Device != x.Device || upWeight.Device != x.Device)
            throw new ArgumentException($"SwiGluLinear: the weights must be {x.DType.Name()} on {x.Device} as x, are {gateWeight.DType.Name()} on {gateWeight.Device} and {upWeight.DType.Name()} on {upWeight.Device}");
        using var scope = TensorScope.Begin();
        int k = x.Shape[^1], n = gateWeight.Shape[0];
        int[] outShape = [.. x.Shape[..^1], n];
        // One matrix of rows, as Linear's product sees x (Variable.MatMul folds the leading dims the same way).
        var rows = x.Rank == 2 ? x : x.Reshape(-1, k);
        if (x.Backend is Cuda.CudaBackend cuda && rows.Shape[0] <= Cuda.CudaBackend.GemvMaxRows)
        {
            var y = Empty([rows.Shape[0], n], x.DType, x.Device);
            if (cuda.SwiGluLinear(rows, gateWeight, upWeight, y)) return scope.Keep(x.Rank == 2 ? y : y.Reshape(outShape));
        }
        var g = MatMul(rows, gateWeight.Transpose(0, 1));
        var u = MatMul(rows, upWeight.Transpose(0, 1));
        var s = SwiGlu(g, u);
        return scope.Keep(x.Rank == 2 ? s : s.Reshape(outShape));
    }

    /// <summary>Matrix product <c>this · other</c> with <c>torch.matmul</c> semantics; see <see cref="MatMul(Tensor, Tensor, DType?)"/>.</summary>
    public Tensor MatMul(Tensor other) => MatMul(this, other);

    private static int[] BroadcastBatch(ReadOnlySpan<int> x, ReadOnlySpan<int> y, Tensor a, Tensor b)
    {
        int rank = Math.Max(x.Length, y.Length);
        var r = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int dx = i - (rank - x.Length) >= 0 ? x[i - (rank - x.Length)] : 1;
            int dy = i - (rank - y.Length) >= 0 ? y[i - (rank - y.Length)] : 1;
            if (dx != dy && dx != 1 && dy != 1)
                throw new ArgumentException($"MatMul: the batch dimensions of {a.ShapeString()} and {b.ShapeString()} cannot be broadcast together ({ShapeString(x)} vs {ShapeString(y)})");
            r[i] = dx == 1 ? dy : dx;
        }
        return r;
    }

    /// <summary>
    /// Patch embedding: the 2-D convolution whose stride equals its kernel, as in a ViT's first layer.
    /// input [B, C_in, H, W] with weight [C_out, C_in, P, P] (and bias [C_out]) gives [B, C_out, H/P, W/P]
    /// (rows and columns beyond a whole patch are dropped, as the convolution does). Built from views, one
    /// copy that lays the patches out as rows (no duplication, since patches do not overlap) and one MatMul.
    /// The result is a view in channels-last memory order ([B, H/P, W/P, C_out] contiguous): the usual next
    /// step, <c>Flatten(2).Transpose(1, 2)</c> to [B, patches, C_out], is then contiguous.
    /// </summary>
    /// <param name="input">Images [B, C_in, H, W].</param>
    /// <param name="weight">Kernels [C_out, C_in, P, P] (P × Q kernels are accepted too).</param>
    /// <param name="bias">Optional [C_out].</param>
    /// <param name="stride">The stride; must equal the kernel size (the default).</param>
    /// <exception cref="ArgumentException">Shapes, dtypes or devices that do not match, or a stride other than the kernel size.</exception>
    public static Tensor PatchEmbed(Tensor input, Tensor weight, Tensor? bias = null, int? stride = null)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(weight);
        input.EnsureAlive("PatchEmbed");
        weight.EnsureAlive("PatchEmbed");
        bias?.EnsureAlive("PatchEmbed");
        string shapes = $"input {input.ShapeString()}, weight {weight.ShapeString()}{(bias is null ? "" : $", bias {bias.ShapeString()}")}";
        if (input.Rank != 4 || weight.Rank != 4)
            throw new ArgumentException($"PatchEmbed: expected input [B, C_in, H, W] and weight [C_out, C_in, P, P], got {shapes}");
        int batch = input.Shape[0], cin = input.Shape[1], h = input.Shape[2], w = input.Shape[3];
        int cout = weight.Shape[0], ph = weight.Shape[2], pw = weight.Shape[3];
        if (weight.Shape[1] != cin)
            throw new ArgumentException($"PatchEmbed: the weight expects {weight.Shape[1]} input channels but the input has {cin} ({shapes})");
        if (ph == 0 || pw == 0 || ph > h || pw > w)
            throw new ArgumentException($"PatchEmbed: a {ph}×{pw} patch does not fit the {h}×{w} input ({shapes})");
        if (stride is int s && (s != ph || s != pw))
            throw new ArgumentException($"PatchEmbed: stride {s} must equal the patch size {ph}×{pw} ({shapes})");
        if (bias is not null && (bias.Rank != 1 || bias.Shape[0] != cout))
            throw new ArgumentException($"PatchEmbed: bias must be [{cout}] ({shapes})");
        if (!input.DType.IsFloat() || weight.DType != input.DType || (bias is not null && bias.DType != input.DType))
            throw new ArgumentException($"PatchEmbed: input, weight and bias must share one float dtype, got {input.DType.Name()}, {weight.DType.Name()}{(bias is null ? "" : ", " + bias.DType.Name())} ({shapes})");
        if (weight.Device != input.Device || (bias is not null && bias.Device != input.Device))
            throw new ArgumentException($"PatchEmbed: input, weight and bias must be on one device ({shapes})");

        int hp = h / ph, wp = w / pw;
        using var scope = TensorScope.Begin();
        var x = input.Narrow(2, 0, hp * ph).Narrow(3, 0, wp * pw)
            .Reshape(batch, cin, hp, ph, wp, pw)      // splitting dims: always a view
            .Permute(0, 2, 4, 1, 3, 5)                 // [B, Hp, Wp, C_in, P, Q]
            .Reshape(batch * hp * wp, cin * ph * pw);  // the one copy: a row per patch
        var kernels = weight.Reshape(cout, cin * ph * pw).Transpose(0, 1); // [C_in·P·Q, C_out], read in place
        // Half-precision results are rounded once, after the bias, as a convolution accumulating in float32 does.
        bool half = input.DType.IsHalfStorage();
        var y = MatMul(x, kernels, half ? DType.F32 : null);
        if (bias is not null) y = y + (half ? bias.To(DType.F32) : bias);
        if (half) y = y.To(input.DType);
        var result = y.ViewAs(batch, hp, wp, cout).Permute(0, 3, 1, 2);
        return scope.Keep(result);
    }
}
