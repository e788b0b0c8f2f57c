using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Nn.Optim;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// The copies a training step asks of its device (the test device logs every <c>Copy</c>: on a GPU a copy_cast or
/// cast kernel or a device-to-device memcpy) and the results they must not change. Two sources were removed: the
/// clone of every parameter's gradient into <c>Grad</c> (one memcpy per parameter per step; now the gradient tensor
/// itself is kept when nothing else shares it), the copies of the logits in the causal-LM loss (a reshape copy
/// of the narrowed [B, T−1, V] forward, a zeroed [B, T, V] plus a scatter copy backward: 1.2 GB each at Qwen2-0.5B),
/// and per attention layer the reshape of v's gradient and the gather of the q, k and v gradients into the packed
/// projection's gradient (4 per layer, 96 a step at Qwen2-0.5B): RoPE's and attention's backward now write them into
/// its columns (<see cref="Node.GradientTarget"/>), the same bits as with the copies.
/// </summary>
public class TrainingCopiesTests
{
    // Tied embeddings as Qwen2-0.5B; hidden 32, 4 heads of 8, 2 KV heads, MLP 48, vocab 50, batch 2×6.
    private static readonly Qwen2Config Tiny = new()
    {
        VocabSize = 50, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        RopeTheta = 10000, RmsNormEps = 1e-6, TieWordEmbeddings = true,
    };

    private static long[] Ids(int step) => Enumerable.Range(0, 12).Select(i => (long)((i * 7 + step * 3) % Tiny.VocabSize)).ToArray();

    /// <summary>One step's copies (after a first step, so the optimizer's state exists), without those the CPU kernels make inside one op.</summary>
    private static List<CopyRecord> StepCopies(DType dt)
    {
        var dev = TestDevice.Get();
        using var m = new Qwen2ForCausalLM(Tiny, 1, dt);
        m.To(dev);
        using Optimizer opt = dt == DType.F32 ? new AdamW(m.Parameters(), 1e-3) : new MixedPrecisionAdamW(m.Parameters(), 1e-3);
        var log = new List<CopyRecord>();
        for (int step = 0; step < 2; step++)
        {
            using var scope = TensorScope.Begin();
            if (step == 1) TestDevice.Backend.CopyLog = log;
            try
            {
                var x = Tensor.FromArray(Ids(step), dev, 2, 6);
                var loss = Losses.NextTokenCrossEntropy(m.Forward(x), x);
                opt.ZeroGrad();
                loss.Backward();
                opt.Step();
            }
            finally { TestDevice.Backend.CopyLog = null; }
        }
        // The test device computes attention backward with the CPU's composite (its own casts and copies); a GPU
        // runs one kernel there.
        return log.Where(r => !r.InsideCpuKernel).ToList();
    }

    [TestCase("f32"), TestCase("bf16")]
    public void ATrainingStepCopiesOnlyWhatItMust(string name)
    {
        var dt = name == "f32" ? DType.F32 : DType.BF16;
        var copies = StepCopies(dt);
        foreach (var c in copies) TestContext.Out.WriteLine(c);
        int Count(string caller) => copies.Count(c => c.Callers.Contains(caller, StringComparison.Ordinal));

        // Gradients into Grad: 26 parameters (per layer q/k/v weight and bias, o, gate, up, down, two norms; the
        // final norm; the tied embedding), none copied. The packed q/k/v projection's weight and bias gradients are
        // disjoint row ranges of one buffer each (SplitLinear's single product): each leaf keeps its own range.
        Assert.That(Count("Variable.AccumulateGrad"), Is.Zero, "was 26: one clone per parameter");
        // The loss: only the labels' shift (an int64 [2, 5] copy into the [2, 6] targets); no copy of logits.
        Assert.That(copies.Count(c => c.Callers.Contains("NextTokenCrossEntropy") && c.SrcShape.Length == 2 && c.SrcType == DType.I64), Is.EqualTo(1));
        Assert.That(copies.Where(c => c.DstShape.Length > 0 && c.DstShape[^1] == Tiny.VocabSize), Is.Empty, "was 2: the narrowed logits' reshape forward, the scatter of their gradient backward");
        // What is left: with bf16, the master weights' casts back to bf16 (26: the test device is no CudaBackend, where
        // MixedPrecisionAdamW writes the bf16 weights in its own kernel) and the norms' weight gradients (f32 sums) cast
        // to bf16 (5); three scalars of the loss. None per attention layer: v's gradient reshape and the gather of q's,
        // k's and v's into the packed projection's gradient (4 a layer) are gone, RoPE's and attention's backward
        // writing into its columns. (The norms' f32 weight gradients were also "cast" to f32 — a copy each — before.)
        Assert.That(copies.Where(c => c.Callers.Contains("GradientGather") || c.Callers.Contains("Attention")), Is.Empty, "was 4 per layer");
        int expected = 1 + 3 + (dt == DType.BF16 ? 26 + 5 : 0);
        Assert.That(copies, Has.Count.EqualTo(expected), "was 49 (f32) and 75 (bf16), then 12 and 43");
        long bytes = copies.Sum(c => c.WrittenBytes);
        TestContext.Out.WriteLine($"{copies.Count} copies, {bytes} bytes written");
        long parameters = 50 * 32 + 2 * (1024 + 32 + 2 * (512 + 16) + 1024 + 3 * 48 * 32 + 2 * 32) + 32;
        long expectedBytes = 2 * 5 * 8 + 3 * 4 + (dt == DType.BF16 ? parameters * 2 + 5 * 32 * 2 : 0);
        Assert.That(bytes, Is.EqualTo(expectedBytes), "before: + every parameter's gradient clone, two logits-sized copies (2 × 2·5·50 elements), q's and k's reshapes, then v's reshape and the q/k/v gather");
    }

    /// <summary>
    /// Gradients written where the packed q/k/v projection's gradient gathers them (<see cref="Node.GradientTarget"/>)
    /// are those gathered by copies, bit for bit: every parameter of a Qwen2 step (RoPE's backward writes q's and k's,
    /// attention's v's), with activation checkpointing too (the targets inside the recomputed segments).
    /// </summary>
    [Test]
    public void GradientsWrittenIntoThePackedProjectionAreTheGatheredOnes([Values("f32", "bf16")] string name, [Values(false, true)] bool checkpointing)
    {
        var dt = name == "f32" ? DType.F32 : DType.BF16;
        float[][] Grads(bool targets, out int copies)
        {
            using var m = new Qwen2ForCausalLM(Tiny, 1, dt) { GradientCheckpointing = checkpointing };
            m.To(TestDevice.Get());
            using var scope = TensorScope.Begin();
            using var off = targets ? null : Graph.WithoutGradientTargets();
            var x = Tensor.FromArray(Ids(0), TestDevice.Get(), 2, 6);
            var log = new List<CopyRecord>();
            TestDevice.Backend.CopyLog = log;
            try { Losses.NextTokenCrossEntropy(m.Forward(x), x).Backward(); }
            finally { TestDevice.Backend.CopyLog = null; }
            copies = log.Count(c => !c.InsideCpuKernel && c.Callers.Contains("GradientGather"));
            return m.Parameters().Select(p => p.Grad!.ToFloatArray()).ToArray();
        }
        var gathered = Grads(false, out int before);
        var written = Grads(true, out int after);
        Assert.That(before, Is.EqualTo(2 * 3), "the gather's copies without targets: q, k and v per layer");
        Assert.That(after, Is.Zero);
        for (int i = 0; i < gathered.Length; i++) Assert.That(written[i], Is.EqualTo(gathered[i]), $"parameter {i}'s gradient, bit for bit");
    }

    /// <summary>
    /// Attention without RoPE (CLIP's, grouped-query here too): attention's backward writes all three of q's, k's and v's
    /// gradients into the packed projection's gradient; the input's and parameters' gradients are the gathered ones, bit
    /// for bit, and the backward copies nothing. With RoPE, q's and k's come from RoPE's backward.
    /// </summary>
    [Test]
    public void AttentionsGradientsGoStraightIntoThePackedProjection([Values("f32", "bf16")] string name, [Values(false, true)] bool rope)
    {
        var dt = name == "f32" ? DType.F32 : DType.BF16;
        var dev = TestDevice.Get();
        float[][] Grads(bool targets, out List<CopyRecord> log)
        {
            using var layer = new Attention(32, 4, 2, qkvBias: true, outBias: true, "out_proj", 5, dt);
            layer.To(dev);
            using var scope = TensorScope.Begin();
            using var off = targets ? null : Graph.WithoutGradientTargets();
            using var f = Tensor.Normal([2, 6, 32], 11, 0, 1);
            var x = new Variable(f.To(dt).To(dev), requiresGrad: true);
            (Tensor, Tensor)? tables = rope ? Tensor.RopeTables(0, 6, 8, 10000.0, dev) : null;
            var y = layer.Forward(x, causal: rope, tables);
            using var w = Tensor.Normal([2, 6, 32], 12, 0, 1);
            var loss = (y * new Variable(w.To(dt).To(dev))).Sum();
            log = new List<CopyRecord>();
            TestDevice.Backend.CopyLog = log;
            try { loss.Backward(); }
            finally { TestDevice.Backend.CopyLog = null; }
            return layer.Parameters().Append(x).Select(p => p.Grad!.ToFloatArray()).ToArray();
        }
        var gathered = Grads(false, out var before);
        var written = Grads(true, out var after);
        Assert.That(before.Count(c => !c.InsideCpuKernel && (c.Callers.Contains("GradientGather") || c.Callers.Contains("Reshape"))), Is.EqualTo(rope ? 3 + 1 : 3 * 2),
            "without targets: the gather's three copies, and v's reshape (with RoPE) or q's, k's and v's (without)");
        foreach (var c in after.Where(c => !c.InsideCpuKernel)) TestContext.Out.WriteLine(c);
        Assert.That(after.Where(c => !c.InsideCpuKernel && (c.Callers.Contains("GradientGather") || c.Callers.Contains("Reshape"))), Is.Empty);
        for (int i = 0; i < gathered.Length; i++) Assert.That(written[i], Is.EqualTo(gathered[i]), $"gradient {i}, bit for bit");
    }

    /// <summary>
    /// Projections consumed twice (each head view, one made by Permute, by two attentions in swapped roles): only the first rule to ask gets a
    /// region, the other makes its own gradient and the graph sums them (then gathered by a copy), so the gradients are
    /// those gathered by copies, bit for bit, with fewer copies. A region handed out twice would be overwritten.
    /// </summary>
    [Test]
    public void APartConsumedTwiceGetsItsRegionOnce()
    {
        var dev = TestDevice.Get();
        float[][] Grads(bool targets, out int copies)
        {
            using var scope = TensorScope.Begin();
            using var off = targets ? null : Graph.WithoutGradientTargets();
            Variable Param(ulong seed, params int[] shape) => new(Tensor.Normal(shape, seed, 0, 1).To(dev), requiresGrad: true);
            var x = Param(1, 2, 5, 16);
            Variable[] ws = [Param(2, 16, 16), Param(3, 8, 16), Param(4, 8, 16)];
            var p = Variable.SplitLinear(x, ws);
            var q = p[0].Reshape(2, 5, 2, 8).Transpose(1, 2);
            var k = p[1].Reshape(2, 5, 1, 8).Permute(0, 2, 1, 3);
            var v = p[2].Reshape(2, 5, 1, 8).Transpose(1, 2);
            var kq = p[0].Reshape(2, 5, 2, 8).Narrow(2, 0, 1).Transpose(1, 2); // q's first head as keys and values
            var o1 = Variable.ScaledDotProductAttention(q, k, v, causal: true);
            var o2 = Variable.ScaledDotProductAttention(k, kq, kq, causal: false);
            var o3 = Variable.ScaledDotProductAttention(v, k, v, causal: true);
            var loss = (o1 * o1).Sum() + (o2 * 3).Sum() + (o3 * o3 * o3).Sum();
            var log = new List<CopyRecord>();
            TestDevice.Backend.CopyLog = log;
            try { loss.Backward(); }
            finally { TestDevice.Backend.CopyLog = null; }
            copies = log.Count(c => !c.InsideCpuKernel);
            return ws.Append(x).Select(w => w.Grad!.ToFloatArray()).ToArray();
        }
        var gathered = Grads(false, out int before);
        var written = Grads(true, out int after);
        for (int i = 0; i < gathered.Length; i++) Assert.That(written[i], Is.EqualTo(gathered[i]), $"gradient {i}, bit for bit");
        Assert.That(after, Is.LessThan(before), "some gradient went straight into its region");
    }

    /// <summary>The loss over shifted targets equals the narrowed-logits loss: gradients bit for bit, the loss to a rounding.</summary>
    [TestCase("f32"), TestCase("bf16")]
    public void TheShiftedTargetsGiveTheNarrowedLossesGradients(string name)
    {
        var dt = name == "f32" ? DType.F32 : DType.BF16;
        double[] Run(bool narrowed, out float[][] grads)
        {
            using var m = new Qwen2ForCausalLM(Tiny, 1, dt);
            m.To(TestDevice.Get());
            using var scope = TensorScope.Begin();
            var x = Tensor.FromArray(Ids(0), TestDevice.Get(), 2, 6);
            var logits = m.Forward(x);
            Variable loss;
            if (narrowed)
            {
                // The former formulation: logits narrowed to the T−1 positions that have a next token.
                using var next = x.Narrow(1, 1, 5);
                loss = Losses.CrossEntropy(logits.Narrow(1, 0, 5), next);
            }
            else loss = Losses.NextTokenCrossEntropy(logits, x);
            loss.Backward();
            grads = m.Parameters().Select(p => p.Grad!.ToFloatArray()).ToArray();
            // float64 reference of the loss from the logits: mean over the 10 shifted positions of logsumexp − target logit.
            var l = logits.Value.ToFloatArray();
            var ids = x.ToLongArray();
            double sum = 0;
            for (int b = 0; b < 2; b++)
                for (int t = 0; t < 5; t++)
                {
                    int row = (b * 6 + t) * Tiny.VocabSize;
                    double max = double.NegativeInfinity, s = 0;
                    for (int c = 0; c < Tiny.VocabSize; c++) max = Math.Max(max, l[row + c]);
                    for (int c = 0; c < Tiny.VocabSize; c++) s += Math.Exp(l[row + c] - max);
                    sum += max + Math.Log(s) - l[row + ids[b * 6 + t + 1]];
                }
            return [loss.Value.Item(), sum / 10];
        }
        var before = Run(true, out var g0);
        var after = Run(false, out var g1);
        for (int i = 0; i < g0.Length; i++) Assert.That(g1[i], Is.EqualTo(g0[i]), $"parameter {i}'s gradient, bit for bit");
        Assert.That(after[0], Is.EqualTo(after[1]).Within(1e-5 * Math.Abs(after[1])), "the loss against float64");
        Assert.That(after[0], Is.EqualTo(before[0]).Within(2e-7 * Math.Abs(before[0])), "the loss against the narrowed form: at most a rounding of the sum");
    }

    /// <summary>A gradient handed to two leaves (an add's backward gives both the same tensor) is not shared by their Grads.</summary>
    [Test]
    public void AGradientSharedByTwoLeavesIsCopiedAndASoleOneKept()
    {
        var dev = TestDevice.Get();
        var a = new Variable(Tensor.FromArray(new[] { 1f, 2f, 3f }, dev), requiresGrad: true);
        var b = new Variable(Tensor.FromArray(new[] { 4f, 5f, 6f }, dev), requiresGrad: true);
        using (TensorScope.Begin())
        {
            var log = new List<CopyRecord>();
            TestDevice.Backend.CopyLog = log;
            try { var s = a + b; (s * s).Sum().Backward(); }
            finally { TestDevice.Backend.CopyLog = null; }
            // s = a + b is used twice: its gradient arrives as a sum, a fresh tensor, and the add hands that one tensor
            // to both a and b.
            Assert.That(log.Count(c => c.Callers.Contains("AccumulateGrad")), Is.EqualTo(1), "the first leaf copies, the second (then the only view) keeps it");
        }
        Assert.That(a.Grad!.Storage, Is.Not.SameAs(b.Grad!.Storage));
        a.Grad.Fill(0); // as clipping or accumulation writes a Grad in place
        Assert.That(b.Grad.ToFloatArray(), Is.EqualTo(new[] { 10f, 14f, 18f }));
        // A second backward accumulates into the kept tensors.
        using (TensorScope.Begin()) (a * 2).Sum().Backward();
        Assert.That(a.Grad.ToFloatArray(), Is.EqualTo(new[] { 2f, 2f, 2f }));
        Assert.That(b.Grad.ToFloatArray(), Is.EqualTo(new[] { 10f, 14f, 18f }));
    }

    /// <summary>RoPE's gradient laid out as its input (the transposed head split): the same values, and the head merge above it a view.</summary>
    [TestCase("f32"), TestCase("bf16")]
    public void RopesGradientInTheInputsLayoutIsTheSameAndNeedsNoCopy(string name)
    {
        var dt = name == "f32" ? DType.F32 : DType.BF16;
        var dev = TestDevice.Get();
        using var scope = TensorScope.Begin();
        using var f = Tensor.Normal([2, 5, 3 * 8 + 2 * 8], 7, 0, 1);
        var packed = f.To(dt).To(dev);
        var (cos, sin) = Tensor.RopeTables(0, 5, 8, 10000.0, dev);
        // q as the attention layer makes it: columns of the packed projection, split into heads and transposed.
        var x = new Variable(packed, requiresGrad: true);
        var q = x.Narrow(2, 0, 24).Reshape(2, 5, 3, 8).Transpose(1, 2);
        Assert.That(q.Value.DimensionsByStride(), Is.EqualTo(new[] { 0, 2, 1, 3 }));
        var y = q.ApplyRope(cos, sin);
        using var w = Tensor.Normal([2, 3, 5, 8], 8, 0, 1);
        var wd = w.To(dt).To(dev);
        var log = new List<CopyRecord>();
        TestDevice.Backend.CopyLog = log;
        try { (y * new Variable(wd)).Sum().Backward(); }
        finally { TestDevice.Backend.CopyLog = null; }
        Assert.That(log.Where(c => c.Callers.Contains("Reshape")), Is.Empty, "the head merge of the gradient is a view");
        // The reference: the rotation by −θ in C order, transposed and merged with a copy (the former way).
        var g = wd.ApplyRope(cos, -sin).Transpose(1, 2).Contiguous().Reshape(2, 5, 24);
        var expected = Tensor.Zeros([2, 5, 40], dt, dev);
        expected.Narrow(2, 0, 24).CopyFrom(g);
        Assert.That(x.Grad!.ToFloatArray(), Is.EqualTo(expected.ToFloatArray()), "bit for bit");
        // The layout argument alone: the same values, the given memory order.
        var dense = wd.ApplyRope(cos, sin);
        var laid = wd.ApplyRope(cos, sin, [0, 2, 1, 3]);
        Assert.That(laid.Strides.ToArray(), Is.EqualTo(new long[] { 120, 8, 24, 1 }));
        Assert.That(laid.ToFloatArray(), Is.EqualTo(dense.ToFloatArray()));
    }

    /// <summary>
    /// SplitLinear's weight gradients are row ranges of one product: each weight keeps its range (no copy), and a write
    /// into one Grad (clipping, accumulation) leaves the others as they were.
    /// </summary>
    [Test]
    public void DisjointRangesOfOneGradientAreKeptByTheirLeaves()
    {
        var dev = TestDevice.Get();
        var x = new Variable(Tensor.FromArray(Enumerable.Range(0, 12).Select(i => (float)(i % 5 - 2)).ToArray(), dev).Reshape(2, 2, 3));
        var ws = new[] { 2, 1, 1 }.Select((n, i) => new Variable(Tensor.FromArray(Enumerable.Range(0, n * 3).Select(j => (float)(j + i) / 4).ToArray(), dev).Reshape(n, 3), requiresGrad: true)).ToArray();
        var bs = new[] { 2, 1, 1 }.Select(n => new Variable(Tensor.Zeros([n], DType.F32, dev), requiresGrad: true)).ToArray();
        float[][] expected;
        using (TensorScope.Begin())
        {
            // The reference: three separate products (no shared buffer).
            var sep = ws.Select((w, i) => x.MatMul(w.Transpose()) + bs[i]).ToArray();
            (sep[0].Sum() * 2 + (sep[1] * sep[1]).Sum() + sep[2].Sum() * 3).Backward();
            expected = ws.Concat(bs).Select(p => p.Grad!.ToFloatArray()).ToArray();
            foreach (var p in ws.Concat(bs)) p.ZeroGrad();
        }
        using (TensorScope.Begin())
        {
            var parts = Variable.SplitLinear(x, ws, bs);
            var log = new List<CopyRecord>();
            TestDevice.Backend.CopyLog = log;
            try { (parts[0].Sum() * 2 + (parts[1] * parts[1]).Sum() + parts[2].Sum() * 3).Backward(); }
            finally { TestDevice.Backend.CopyLog = null; }
            Assert.That(log.Where(c => c.Callers.Contains("AccumulateGrad")), Is.Empty, "each leaf keeps its range");
        }
        Assert.That(ws[1].Grad!.Storage, Is.SameAs(ws[0].Grad!.Storage), "ranges of one product");
        var all = ws.Concat(bs).ToArray();
        for (int i = 0; i < all.Length; i++) Assert.That(all[i].Grad!.ToFloatArray(), Is.EqualTo(expected[i]), $"gradient {i}");
        ws[1].Grad!.Fill(0);
        bs[0].Grad!.Fill(0);
        for (int i = 0; i < all.Length; i++)
            if (i != 1 && i != 3) Assert.That(all[i].Grad!.ToFloatArray(), Is.EqualTo(expected[i]), $"gradient {i} after writing two others");
    }

    /// <summary>A gradient over memory someone else holds (here a rule handing back a range of a tensor it saved) is copied.</summary>
    [Test]
    public void AGradientOverAnotherHoldersMemoryIsCopied()
    {
        var dev = TestDevice.Get();
        using var held = Tensor.FromArray(new[] { 1f, 2f, 3f, 4f }, dev);
        var a = new Variable(Tensor.Zeros([2], DType.F32, dev), requiresGrad: true);
        using (TensorScope.Begin())
        {
            // The rule returns the second half of `held` as a's gradient: a range no pending gradient or kept leaf
            // accounts for (the storage's other user is `held` itself, and the node's saved reference).
            var y = Graph.Record("Custom", a.Value.Clone(), [a], (n, g) => [n.Saved(0).Narrow(0, 2, 2)], held);
            y.Sum().Backward();
        }
        Assert.That(a.Grad!.Storage, Is.Not.SameAs(held.Storage));
        a.Grad.Fill(0);
        Assert.That(held.ToFloatArray(), Is.EqualTo(new[] { 1f, 2f, 3f, 4f }));
    }
}
