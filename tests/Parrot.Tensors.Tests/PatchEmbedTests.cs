namespace Parrot.Tensors.Tests;

/// <summary>
/// PatchEmbed against a float64 convolution loop written here (stride = kernel, no padding).
/// Tolerance per element, relative to S = |bias| + Σ|w·x|: 8·√K·2⁻²⁴·S for float32 accumulation
/// (K = C_in·P·Q), plus 2⁻⁸·|y| when the result is rounded to bf16.
/// </summary>
public class PatchEmbedTests
{
    private static (double[] Y, double[] AbsSum) Convolution(Tensor input, Tensor weight, Tensor? bias)
    {
        int b = input.Shape[0], c = input.Shape[1], h = input.Shape[2], w = input.Shape[3];
        int o = weight.Shape[0], p = weight.Shape[2], q = weight.Shape[3];
        int hp = h / p, wp = w / q;
        var x = input.ToDoubleArray();
        var k = weight.ToDoubleArray();
        var bs = bias?.ToDoubleArray();
        var y = new double[b * o * hp * wp];
        var s = new double[y.Length];
        for (int n = 0; n < b; n++)
            for (int f = 0; f < o; f++)
                for (int py = 0; py < hp; py++)
                    for (int px = 0; px < wp; px++)
                    {
                        double sum = bs?[f] ?? 0, abs = Math.Abs(sum);
                        for (int ch = 0; ch < c; ch++)
                            for (int dy = 0; dy < p; dy++)
                                for (int dx = 0; dx < q; dx++)
                                {
                                    double t = k[((f * c + ch) * p + dy) * q + dx] * x[((n * c + ch) * h + py * p + dy) * w + px * q + dx];
                                    sum += t;
                                    abs += Math.Abs(t);
                                }
                        int i = ((n * o + f) * hp + py) * wp + px;
                        y[i] = sum;
                        s[i] = abs;
                    }
        return (y, s);
    }

    private static void Check(Tensor input, Tensor weight, Tensor? bias)
    {
        using var y = Tensor.PatchEmbed(input, weight, bias);
        int p = weight.Shape[2], q = weight.Shape[3];
        Assert.That(y.Shape.ToArray(), Is.EqualTo(new[] { input.Shape[0], weight.Shape[0], input.Shape[2] / p, input.Shape[3] / q }));
        Assert.That(y.DType, Is.EqualTo(input.DType));
        var (expected, abs) = Convolution(input, weight, bias);
        var got = y.ToDoubleArray();
        double rel = 8 * Math.Sqrt(weight.Shape[1] * p * q) * Math.Pow(2, -24);
        double outRel = input.DType == DType.BF16 ? Math.Pow(2, -8) : 0;
        for (int i = 0; i < got.Length; i++)
        {
            double tol = rel * abs[i] + outRel * Math.Abs(expected[i]) + 1e-30;
            if (!(Math.Abs(got[i] - expected[i]) <= tol))
                Assert.Fail($"element {i}: got {got[i]:R}, expected {expected[i]:R} (tolerance {tol:G3})");
        }
    }

    [TestCase(2, 3, 8, 8, 5, 4)]
    [TestCase(1, 1, 7, 7, 1, 7)]
    [TestCase(2, 3, 10, 13, 4, 3)]    // H, W not multiples of P: the remainder is dropped
    [TestCase(1, 3, 56, 56, 70, 14)]  // CLIP-style 14×14 patches
    [TestCase(3, 2, 5, 9, 3, 1)]      // 1×1 kernel: a per-pixel linear map
    public void MatchesConvolutionLoop(int b, int cin, int h, int w, int cout, int p)
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([b, cin, h, w], 1);
        var k = Tensor.Normal([cout, cin, p, p], 2);
        var bias = Tensor.Normal([cout], 3);
        Check(x, k, bias);
        Check(x, k, null);
    }

    [Test]
    public void NonSquareKernelAndStridedInput()
    {
        using var scope = TensorScope.Begin();
        var big = Tensor.Normal([2, 6, 12, 20], 4);
        var x = big.Slice(1, 0, null, 2).Slice(3, 1, null, 2);  // [2, 3, 12, 10], non-contiguous
        var k = Tensor.Normal([4, 3, 3, 2], 5);
        Check(x, k, Tensor.Normal([4], 6));
        var nhwc = Tensor.Normal([2, 12, 10, 3], 7).Permute(0, 3, 1, 2); // channels-last input
        Check(nhwc, k, null);
    }

    [Test]
    public void BFloat16()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([2, 3, 28, 28], 8, dtype: DType.BF16);
        var k = Tensor.Normal([16, 3, 14, 14], 9, dtype: DType.BF16);
        Check(x, k, Tensor.Normal([16], 10, dtype: DType.BF16));
    }

    [Test]
    public void FlattenedPatchesAreContiguous()
    {
        using var scope = TensorScope.Begin();
        var y = Tensor.PatchEmbed(Tensor.Normal([2, 3, 28, 28], 11), Tensor.Normal([8, 3, 14, 14], 12));
        var tokens = y.Flatten(2).Transpose(1, 2); // [B, patches, C_out], as a ViT does next
        Assert.That(tokens.Shape.ToArray(), Is.EqualTo(new[] { 2, 4, 8 }));
        Assert.That(tokens.IsContiguous, Is.True);
    }

    [Test]
    public void BadInputNamesOpAndShapes()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Zeros([1, 3, 8, 8]);
        var e = Assert.Throws<ArgumentException>(() => Tensor.PatchEmbed(x, Tensor.Zeros([4, 2, 4, 4])));
        Assert.That(e!.Message, Does.Contain("PatchEmbed").And.Contain("[1, 3, 8, 8]").And.Contain("[4, 2, 4, 4]"));
        e = Assert.Throws<ArgumentException>(() => Tensor.PatchEmbed(x, Tensor.Zeros([4, 3, 4, 4]), stride: 2));
        Assert.That(e!.Message, Does.Contain("PatchEmbed").And.Contain("stride"));
        e = Assert.Throws<ArgumentException>(() => Tensor.PatchEmbed(x, Tensor.Zeros([4, 3, 4, 4]), Tensor.Zeros([3])));
        Assert.That(e!.Message, Does.Contain("PatchEmbed").And.Contain("bias"));
        e = Assert.Throws<ArgumentException>(() => Tensor.PatchEmbed(Tensor.Zeros([3, 8, 8]), Tensor.Zeros([4, 3, 4, 4])));
        Assert.That(e!.Message, Does.Contain("PatchEmbed").And.Contain("[3, 8, 8]"));
        e = Assert.Throws<ArgumentException>(() => Tensor.PatchEmbed(x, Tensor.Zeros([4, 3, 9, 9])));
        Assert.That(e!.Message, Does.Contain("PatchEmbed"));
        e = Assert.Throws<ArgumentException>(() => Tensor.PatchEmbed(x, Tensor.Zeros([4, 3, 4, 4], DType.BF16)));
        Assert.That(e!.Message, Does.Contain("PatchEmbed").And.Contain("bfloat16"));
    }
}
