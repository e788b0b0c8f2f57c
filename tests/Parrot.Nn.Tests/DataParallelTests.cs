using Parrot.Autograd;
using Parrot.Nn.Distributed;
using Parrot.Nn.Optim;
using Parrot.Tensors;
using Parrot.Tensors.Distributed;

namespace Parrot.Nn.Tests;

/// <summary>
/// DataParallel on a group of one (the 2-rank runs are in Parrot.Cli.Tests under mpirun): its bucketing, ZeRO
/// pieces and optimizer-state gathering must reproduce plain AdamW + clipping bit for bit, with buckets so small
/// that parameters are split across them.
/// </summary>
public class DataParallelTests
{
    private static List<Variable> Parameters(ulong seed) =>
    [
        new(Tensor.Normal([5, 3], seed), requiresGrad: true, name: "a"),
        new(Tensor.Normal([7], seed + 1), requiresGrad: true, name: "b"),
        new(Tensor.Normal([2, 2, 3], seed + 2), requiresGrad: true, name: "c"),
    ];

    /// <summary>A loss whose gradient differs per element (so a misplaced element shows): Σ w² · (1 + i/10) summed with a cubic term.</summary>
    private static void Backward(IReadOnlyList<Variable> ps, int step) => Backward(ps, step, l => l.Backward());

    private static void Backward(IReadOnlyList<Variable> ps, int step, Action<Variable> backward)
    {
        using var scope = TensorScope.Begin();
        Variable total = null!;
        for (int i = 0; i < ps.Count; i++)
        {
            var w = ps[i];
            var term = ((w * w) * (1 + i / 10.0) + (w * w * w) * (0.3 * (step + 1))).Sum();
            total = total is null ? term : total + term;
        }
        backward(total);
    }

    private static float[][] Values(IReadOnlyList<Variable> ps) => ps.Select(p => p.Value.ToFloatArray()).ToArray();

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(2)]
    public void OneRankEqualsPlainAdamWWithClipping(int zero)
    {
        var plain = Parameters(11);
        var shared = Parameters(11);
        using var adam = new AdamW(plain, 0.05, weightDecay: 0.1);
        using var dp = new DataParallel(new SingleProcessGroup(), shared, zero, ps => new AdamW(ps, 0.05, weightDecay: 0.1), bucketElements: 8);
        Assert.That(dp.BucketCount, Is.EqualTo(5)); // 15 + 7 + 12 = 34 elements in buckets of 8
        for (int step = 0; step < 4; step++)
        {
            adam.ZeroGrad();
            Backward(plain, step);
            double n1 = GradClip.ClipGradNorm(plain, 2.0);
            adam.Step();

            dp.ZeroGrad();
            Backward(shared, step, dp.Backward);
            // ZeRO-1/2 start every bucket while backward runs (each parameter's gradient is final once its last use is done).
            Assert.That(dp.BucketsStartedInBackward, Is.EqualTo(zero == 0 ? 0 : 5));
            double n2 = dp.ReduceGradients(1.0, 2.0);
            dp.Step();

            // ZeRO-2 adds float32 sums of squares per bucket piece instead of per tensor.
            Assert.That(n2, Is.EqualTo(n1).Within((zero == 2 ? 1e-6 : 1e-12) * n1), $"step {step + 1}: norm");
            Assert.That(n1, Is.GreaterThan(2.0), "clipping is active");
            var (x, y) = (Values(plain), Values(shared));
            // ZeRO-2 sums the squared norm per bucket piece (another grouping), so the clipping factor may differ in the last bits.
            for (int i = 0; i < x.Length; i++)
                Assert.That(y[i], zero == 2 ? Is.EqualTo(x[i]).Within(1e-6) : Is.EqualTo(x[i]), $"ZeRO-{zero}, step {step + 1}, parameter {i}");
        }
    }

    [Test]
    public void ScaledReductionAveragesAndParametersWithoutGradientCountAsZero()
    {
        var ps = Parameters(3);
        using var dp = new DataParallel(new SingleProcessGroup(), ps, 1, q => new AdamW(q, 0.01), bucketElements: 6);
        dp.ZeroGrad();
        using (var scope = TensorScope.Begin()) (ps[0] * ps[0]).Sum().Backward(); // b and c get no gradient
        double norm = dp.ReduceGradients(0.5);
        var a = ps[0].Value.ToDoubleArray();
        double expected = Math.Sqrt(a.Sum(v => v * v)); // ‖0.5 · 2a‖
        Assert.That(norm, Is.EqualTo(expected).Within(1e-6 * expected));
        Assert.That(ps[0].Grad!.ToDoubleArray(), Is.EqualTo(a).Within(1e-6));
        Assert.That(ps[1].Grad!.ToDoubleArray(), Is.All.EqualTo(0));
        Assert.That(ps[2].Grad!.ToDoubleArray(), Is.All.EqualTo(0));
    }

    [TestCase(1)]
    [TestCase(2)]
    public void GatheredOptimizerStateIsPlainAdamWsAndResumesExactly(int zero)
    {
        var plain = Parameters(5);
        var shared = Parameters(5);
        using var adam = new AdamW(plain, 0.02);
        using var dp = new DataParallel(new SingleProcessGroup(), shared, zero, ps => new AdamW(ps, 0.02), bucketElements: 10);
        for (int step = 0; step < 3; step++)
        {
            adam.ZeroGrad(); Backward(plain, step); adam.Step();
            dp.ZeroGrad(); Backward(shared, step); dp.ReduceGradients(1.0); dp.Step();
        }
        using var full = (AdamW)dp.GatherOptimizer();
        Assert.That(full.StepCount, Is.EqualTo(3));
        for (int i = 0; i < plain.Count; i++)
        {
            var (m, v) = adam.State(plain[i])!.Value;
            var (gm, gv) = full.State(shared[i])!.Value;
            Assert.That(gm.ToFloatArray(), Is.EqualTo(m.ToFloatArray()), $"m of parameter {i}");
            Assert.That(gv.ToFloatArray(), Is.EqualTo(v.ToFloatArray()), $"v of parameter {i}");
        }

        // A fresh run (another sharding of the same parameters) reads the whole state, as from a checkpoint saved by
        // name, takes its pieces of it and continues identically.
        var resumed = Parameters(99);
        for (int i = 0; i < resumed.Count; i++) resumed[i].Value.CopyFrom(shared[i].Value);
        using var loaded = new AdamW(resumed, 0.02) { StepCount = full.StepCount };
        for (int i = 0; i < resumed.Count; i++)
        {
            var (m, v) = full.State(shared[i])!.Value;
            loaded.SetState(resumed[i], m, v);
        }
        using var again = new DataParallel(new SingleProcessGroup(), resumed, zero, ps => new AdamW(ps, 0.02), bucketElements: 4);
        again.ScatterOptimizer(loaded);
        adam.ZeroGrad(); Backward(plain, 3); adam.Step();
        again.ZeroGrad(); Backward(resumed, 3); again.ReduceGradients(1.0); again.Step();
        var (x, y) = (Values(plain), Values(resumed));
        for (int i = 0; i < x.Length; i++) Assert.That(y[i], Is.EqualTo(x[i]), $"parameter {i} after the resumed step");
    }

    [TestCase(DType.F16)]
    [TestCase(DType.BF16)]
    public void ZeroTwoClipsHalfPrecisionModelsByTheFloat64Norm(DType dtype)
    {
        // Gradients of 100 per element, 40 elements in buckets of 16 (float32 buffers): each bucket's sum of squares
        // (≥ 80,000) is past f16's largest value (65,504), so it must not pass through the parameters' dtype; the global
        // norm is √(40 · 10⁴) = 632.45…, taken through GradClip.ScaleAndSumOfSquares over the shards.
        var ps = new List<Variable>
        {
            new(Tensor.Zeros([8, 3], dtype), requiresGrad: true, name: "w"),
            new(Tensor.Zeros([16], dtype), requiresGrad: true, name: "b"),
        };
        using var dp = new DataParallel(new SingleProcessGroup(), ps, 2, q => new MixedPrecisionAdamW(q, 0.01), bucketElements: 16);
        dp.ZeroGrad();
        using (var scope = TensorScope.Begin())
            ((ps[0] * 100.0).Sum() + (ps[1] * 100.0).Sum()).Backward();
        double norm = dp.ReduceGradients(1.0, maxNorm: 1.0);
        double expected = Math.Sqrt(40 * 100.0 * 100.0);
        Assert.That(norm, Is.EqualTo(expected).Within(1e-9 * expected));
        dp.Step(); // the clipped shard steps: AdamW's first step moves every element by ~lr, whatever the scale
        foreach (var p in ps)
            Assert.That(p.Value.ToDoubleArray(), Is.All.EqualTo(-0.01).Within(2e-4), p.Name);
    }

    [Test]
    public void MemoryReportCountsTheShardedState()
    {
        var ps = Parameters(1);
        using var dp = new DataParallel(new SingleProcessGroup(), ps, 2, q => new AdamW(q, 0.01));
        dp.ZeroGrad(); Backward(ps, 0); dp.ReduceGradients(1.0); dp.Step();
        var mem = dp.Memory();
        Assert.That(mem.Parameters, Is.EqualTo(34 * 4));
        Assert.That(mem.OptimizerState, Is.EqualTo(2 * 34 * 4)); // m and v of every element: one rank owns all
        Assert.That(mem.Gradients, Is.EqualTo(34 * 4));
        Assert.That(() => new DataParallel(new SingleProcessGroup(), ps, 3, q => new AdamW(q)), Throws.TypeOf<ArgumentOutOfRangeException>());
    }
}
