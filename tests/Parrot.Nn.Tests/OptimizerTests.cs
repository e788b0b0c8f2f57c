using System.Text.Json;
using Parrot.Autograd;
using Parrot.Nn.Optim;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Nn.Tests;

public class OptimizerTests
{
    [Test]
    public void AdamWMatchesPyTorchBitForBitInFloat64()
    {
        using var scope = TensorScope.Begin();
        var cfg = JsonDocument.Parse(File.ReadAllText(FixturePaths.Get("adamw", "config.json"))).RootElement;
        int steps = cfg.GetProperty("steps").GetInt32(), count = cfg.GetProperty("params").GetInt32();
        var ps = Enumerable.Range(0, count).Select(i => new Variable(Npy.Read(FixturePaths.Get("adamw", $"param{i}_init.npy")), true)).ToArray();
        using var opt = new AdamW(ps, cfg.GetProperty("lr").GetDouble(), cfg.GetProperty("beta1").GetDouble(), cfg.GetProperty("beta2").GetDouble(),
            cfg.GetProperty("eps").GetDouble(), cfg.GetProperty("weight_decay").GetDouble());
        for (int s = 0; s < steps; s++)
        {
            for (int i = 0; i < count; i++)
            {
                ps[i].ZeroGrad();
                using var g = Npy.Read(FixturePaths.Get("adamw", $"param{i}_grad{s}.npy"));
                var acc = (ps[i] * new Variable(g)).Sum(); // d/dp Σ p·g = g
                acc.Backward();
            }
            opt.Step();
            for (int i = 0; i < count; i++)
            {
                using var expected = Npy.Read(FixturePaths.Get("adamw", $"param{i}_after{s}.npy"));
                Assert.That(ps[i].Value.ToArray<double>(), Is.EqualTo(expected.ToArray<double>()), $"param {i} after step {s}");
            }
        }
    }

    [Test]
    public void SgdWithMomentumFollowsPyTorchsForm()
    {
        using var scope = TensorScope.Begin();
        var p = new Variable(Tensor.FromArray(new double[] { 1, -2 }), true);
        using var opt = new Sgd([p], learningRate: 0.1, momentum: 0.9);
        double[] grads = [0.5, 1.0];
        double b0 = 0, b1 = 0, p0 = 1, p1 = -2;
        for (int step = 0; step < 3; step++)
        {
            p.ZeroGrad();
            (p * new Variable(Tensor.FromArray(grads))).Sum().Backward();
            opt.Step();
            b0 = step == 0 ? grads[0] : 0.9 * b0 + grads[0];
            b1 = step == 0 ? grads[1] : 0.9 * b1 + grads[1];
            p0 -= 0.1 * b0; p1 -= 0.1 * b1;
            var v = p.Value.ToArray<double>();
            Assert.That(v[0], Is.EqualTo(p0).Within(1e-15));
            Assert.That(v[1], Is.EqualTo(p1).Within(1e-15));
        }
    }

    [Test]
    public void SchedulesFollowHuggingFace()
    {
        var cos = WarmupCosineSchedule.WithWarmupRatio(1e-3, totalSteps: 100, warmupRatio: 0.03);
        Assert.That(cos.At(0), Is.EqualTo(0));
        Assert.That(cos.At(1), Is.EqualTo(1e-3 / 3).Within(1e-18));
        Assert.That(cos.At(3), Is.EqualTo(1e-3).Within(1e-18));
        Assert.That(cos.At(3 + 97 / 2.0 > 51 ? 51 : 51), Is.EqualTo(1e-3 * 0.5 * (1 + Math.Cos(Math.PI * 48.0 / 97))).Within(1e-18));
        Assert.That(cos.At(100), Is.EqualTo(0).Within(1e-18));
        var c = new ConstantSchedule(0.5, warmupSteps: 4);
        Assert.That(new[] { c.At(0), c.At(2), c.At(4), c.At(100) }, Is.EqualTo(new[] { 0, 0.25, 0.5, 0.5 }));
    }

    [Test]
    public void ClipGradNormScalesLikePyTorch()
    {
        using var scope = TensorScope.Begin();
        var a = new Variable(Tensor.FromArray(new float[] { 1, 1 }), true);
        var b = new Variable(Tensor.FromArray(new float[] { 1 }), true);
        (a * new Variable(Tensor.FromArray(new float[] { 3, 0 }))).Sum().Backward();
        (b * new Variable(Tensor.FromArray(new float[] { 4 }))).Sum().Backward();
        double norm = GradClip.ClipGradNorm([a, b], maxNorm: 1.0);
        Assert.That(norm, Is.EqualTo(5).Within(1e-6));
        double coef = 1.0 / (5 + 1e-6);
        Assert.That(a.Grad!.ToArray<float>()[0], Is.EqualTo((float)(3 * coef)).Within(1e-7));
        Assert.That(b.Grad!.ToArray<float>()[0], Is.EqualTo((float)(4 * coef)).Within(1e-7));
        Assert.That(GradClip.ClipGradNorm([a, b], maxNorm: 10), Is.EqualTo(1).Within(1e-5)); // under the limit: unchanged
    }

    [Test]
    public void ScaleAndClipGradNormIsTheScaleThenTheClipping()
    {
        using var scope = TensorScope.Begin();
        foreach (var dtype in new[] { DType.F32, DType.BF16 })
        {
            Variable[] Make() =>
            [
                new Variable(Tensor.Zeros([3], dtype), true), new Variable(Tensor.Zeros([2, 2], dtype), true),
            ];
            var (a, b) = (Make(), Make());
            foreach (var set in new[] { a, b })
            {
                set[0].Backward(Tensor.FromArray(new float[] { 3, -1.7f, 0.3f }).To(dtype));
                set[1].Backward(Tensor.FromArray(new float[] { 4, 0.1f, -2.9f, 1.1f }, 2, 2).To(dtype));
            }
            double fused = GradClip.ScaleAndClipGradNorm(a, 1.0 / 3, maxNorm: 1.0);
            foreach (var p in b)
            {
                using var scaled = p.Grad! * (1.0 / 3);
                p.Grad!.CopyFrom(scaled);
            }
            double twoSteps = GradClip.ClipGradNorm(b, maxNorm: 1.0);
            Assert.That(fused, Is.EqualTo(twoSteps), dtype.Name());
            for (int i = 0; i < 2; i++)
                Assert.That(a[i].Grad!.ToDoubleArray(), Is.EqualTo(b[i].Grad!.ToDoubleArray()), $"{dtype.Name()} gradient {i}, bit for bit");
            double norm = Math.Sqrt((9 + 1.7 * 1.7 + 0.09 + 16 + 0.01 + 2.9 * 2.9 + 1.21) / 9);
            Assert.That(fused, Is.EqualTo(norm).Within(dtype == DType.F32 ? 1e-6 : 1e-2), "the norm of the scaled gradients");
            Assert.That(GradClip.ClipGradNorm(a), Is.EqualTo(1).Within(dtype == DType.F32 ? 1e-5 : 1e-2), "clipped to 1");
        }
    }

    [Test]
    public void ScaleAndSumOfSquaresIsTheScaledSumBeforeTheRoot()
    {
        // ZeRO-2's share of the global norm: the tensors scaled as `g * scale`, then Σ‖g‖² exactly as ClipGradNorm takes
        // it (its norm is the square root of this sum, bit for bit), against a float64 loop over the scaled values.
        using var scope = TensorScope.Begin();
        foreach (var dtype in new[] { DType.F32, DType.BF16, DType.F16, DType.F64 })
        {
            Tensor[] Make() => [Tensor.FromArray(new float[] { 3, -1.7f, 0.3f }).To(dtype), Tensor.FromArray(new float[] { 400, 0.1f, -2.9f, 1.1f }, 2, 2).To(dtype)];
            var (a, b) = (Make(), Make());
            double sum = GradClip.ScaleAndSumOfSquares(a, 0.5);
            double expected = 0;
            foreach (var t in b)
            {
                using var scaled = t * 0.5;
                t.CopyFrom(scaled);
                expected += t.ToDoubleArray().Sum(v => v * v);
            }
            for (int i = 0; i < 2; i++) Assert.That(a[i].ToDoubleArray(), Is.EqualTo(b[i].ToDoubleArray()), $"{dtype.Name()}: tensor {i} scaled as g * scale");
            Assert.That(sum, Is.EqualTo(expected).Within(1e-5).Percent, dtype.Name()); // float32 per-tensor sums: 2⁻²⁴ relative each
            Assert.That(Math.Sqrt(sum), Is.EqualTo(GradClip.TotalNorm(a)), $"{dtype.Name()}: the norm is its root");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => GradClip.ScaleAndSumOfSquares([], double.NaN));
        Assert.That(GradClip.ScaleAndSumOfSquares([], 2), Is.EqualTo(0));
    }

    [Test]
    public void HalfGradientsOfALargeNormAreClippedAndTheirNormIsExactToFloat32()
    {
        // 1000 gradients of 10: each tensor's sum of squares is 100,000, past f16's 65,504 — kept in its dtype it was ∞
        // (never clipped); bf16 kept 8 bits of it. In float32 both give √(10⁵) and clip.
        using var scope = TensorScope.Begin();
        foreach (var dtype in new[] { DType.F16, DType.BF16 })
        {
            var p = new Variable(Tensor.Zeros([1000], dtype), true);
            p.Backward(Tensor.Full([1000], 10, dtype));
            double norm = GradClip.ClipGradNorm([p], maxNorm: 1.0);
            Assert.That(norm, Is.EqualTo(Math.Sqrt(1e5)).Within(1e-9).Percent, dtype.Name());
            var g = p.Grad!.ToDoubleArray();
            Assert.That(g.Distinct().Single(), Is.EqualTo(10 / (Math.Sqrt(1e5) + 1e-6)).Within(0.5).Percent, $"{dtype.Name()}: clipped to norm 1");
        }
    }

    [Test]
    public void ClipGradNormValidatesItsArguments()
    {
        using var scope = TensorScope.Begin();
        var p = new Variable(Tensor.Zeros([2]), true);
        p.Backward(Tensor.FromArray(new float[] { 1, 2 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => GradClip.ClipGradNorm([p], maxNorm: double.NaN));
        Assert.Throws<ArgumentOutOfRangeException>(() => GradClip.ClipGradNorm([p], maxNorm: -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => GradClip.ScaleAndClipGradNorm([p], double.PositiveInfinity));
        Assert.Throws<ArgumentOutOfRangeException>(() => GradClip.ScaleAndClipGradNorm([p], double.NaN));
        Assert.That(p.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 1, 2 }), "nothing scaled before the check");
        Assert.That(GradClip.ClipGradNorm([p], maxNorm: 0), Is.EqualTo(Math.Sqrt(5)).Within(1e-6));
        Assert.That(p.Grad!.ToArray<float>(), Is.EqualTo(new float[] { 0, 0 }), "a limit of 0 zeroes the gradients");
        Assert.That(GradClip.ClipGradNorm([new Variable(Tensor.Zeros([2]), true)]), Is.EqualTo(0), "no gradient: norm 0");
    }

    [Test]
    public void OptimizersValidateTheirArguments()
    {
        using var scope = TensorScope.Begin();
        var p = new Variable(Tensor.Zeros([2]), true);
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdamW([p], beta1: 1.0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AdamW([p], learningRate: -1));
        Assert.Throws<ArgumentException>(() => new AdamW([]));
        Assert.Throws<ArgumentException>(() => new AdamW([new Variable(Tensor.Zeros([2], DType.BF16), true)]));
    }
}

public class GradientAccumulationTests
{
    [Test]
    public void AccumulatingMicroBatchesEqualsOneBigBatch()
    {
        var (big, _, ids, _) = TinyLmTests.LoadFixture();
        var (small, _, _, _) = TinyLmTests.LoadFixture();
        using var _1 = big; using var _2 = small; using var _3 = ids;
        using var scope = TensorScope.Begin();
        var batch = ids.Narrow(0, 0, 4);
        // One batch of 4 sequences: mean over its 4·15 predictions.
        Losses.NextTokenCrossEntropy(big.Forward(batch), batch).Backward();
        // Two micro-batches of 2, each loss scaled by its share of the predictions, gradients summed by backward.
        for (int m = 0; m < 2; m++)
        {
            var micro = batch.Narrow(0, 2 * m, 2);
            (Losses.NextTokenCrossEntropy(small.Forward(micro), micro) * 0.5).Backward();
        }
        foreach (var ((name, a), (_, b)) in big.NamedParameters().Zip(small.NamedParameters()))
        {
            var ga = a.Grad!.ToDoubleArray(); var gb = b.Grad!.ToDoubleArray();
            double scale = ga.Max(Math.Abs) + 1e-12;
            for (int i = 0; i < ga.Length; i++) Assert.That(Math.Abs(ga[i] - gb[i]) / scale, Is.LessThan(1e-5), $"{name}[{i}]");
        }
    }
}
