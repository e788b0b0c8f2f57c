using Parrot.Autograd;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Model;
using Parrot.Tensors;

namespace Parrot.Parrot.Tests;

public class ParrotModelTests
{
    private static ParrotConfig TinyConfig(bool useMoe = true, bool tie = false) => new()
    {
        Text = new Qwen2Config { VocabSize = 50, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, TieWordEmbeddings = tie, RopeTheta = 10000 },
        MmHiddenSize = 12, NumExperts = 3, MoeIntermediateSize = 20, MoeWeight = 0.1, UseMoe = useMoe,
    };

    private static double[,] Mat(Tensor t) { var d = t.ToDoubleArray(); int r = t.Dim(0), c = t.Dim(1); var m = new double[r, c]; for (int i = 0; i < r; i++) for (int j = 0; j < c; j++) m[i, j] = d[i * c + j]; return m; }

    [Test]
    public void MoeMatchesAFloat64NaiveComputation()
    {
        using var scope = TensorScope.Begin();
        var moe = new LanguageMoe(hidden: 8, experts: 3, expertWidth: 10, alpha: 0.1, residual: true, seed: 5, dtype: DType.F64);
        var x = Tensor.Normal([5, 8], 1, dtype: DType.F64);
        var t = Tensor.Normal([4, 8], 2, dtype: DType.F64);
        var (y, w) = moe.Forward(new Variable(x), new Variable(t));

        var X = Mat(x); var T = Mat(t);
        // a = softmax(cls·Tᵀ/√H), g = a·T
        var s = new double[4];
        for (int j = 0; j < 4; j++) { for (int k = 0; k < 8; k++) s[j] += X[0, k] * T[j, k]; s[j] /= Math.Sqrt(8); }
        double mx = s.Max(); var a = s.Select(v => Math.Exp(v - mx)).ToArray(); double sa = a.Sum(); a = a.Select(v => v / sa).ToArray();
        var g = new double[8];
        for (int k = 0; k < 8; k++) for (int j = 0; j < 4; j++) g[k] += a[j] * T[j, k];
        var G = Mat(moe.Gate.Weight.Value);
        var logits = new double[3];
        for (int e = 0; e < 3; e++) for (int k = 0; k < 8; k++) logits[e] += G[e, k] * g[k];
        double lm = logits.Max(); var wr = logits.Select(v => Math.Exp(v - lm)).ToArray(); double sw = wr.Sum(); wr = wr.Select(v => v / sw).ToArray();
        var wOurs = w.Value.ToDoubleArray();
        for (int e = 0; e < 3; e++) Assert.That(wOurs[e], Is.EqualTo(wr[e]).Within(1e-12));

        var expected = new double[5, 8];
        for (int e = 0; e < 3; e++)
        {
            var ex = moe.Experts[e];
            var Wg = Mat(ex.GateProj.Weight.Value); var Wu = Mat(ex.UpProj.Weight.Value); var Wd = Mat(ex.DownProj.Weight.Value);
            for (int i = 0; i < 5; i++)
            {
                var hid = new double[10];
                for (int q = 0; q < 10; q++)
                {
                    double gp = 0, up = 0;
                    for (int k = 0; k < 8; k++) { gp += Wg[q, k] * X[i, k]; up += Wu[q, k] * X[i, k]; }
                    hid[q] = gp / (1 + Math.Exp(-gp)) * up;
                }
                for (int k = 0; k < 8; k++) { double o = 0; for (int q = 0; q < 10; q++) o += Wd[k, q] * hid[q]; expected[i, k] += wr[e] * o; }
            }
        }
        var yo = y.Value.ToDoubleArray();
        for (int i = 0; i < 5; i++) for (int k = 0; k < 8; k++) Assert.That(yo[i * 8 + k], Is.EqualTo(expected[i, k] + 0.1 * X[i, k]).Within(1e-12));
    }

    [Test]
    public void ParameterNamesAreTheReleasedCheckpointsNames()
    {
        using var model = new ParrotForCausalLM(TinyConfig());
        var names = model.NamedParameters().Select(p => p.Name).ToHashSet();
        Assert.That(names, Does.Contain("model.mm_projector.0.weight").And.Contain("model.mm_projector.2.bias")
            .And.Contain("model.moe_model.gate.weight").And.Contain("model.moe_model.experts.2.down_proj.weight")
            .And.Contain("model.layers.1.self_attn.q_proj.bias").And.Contain("model.embed_tokens.weight").And.Contain("lm_head.weight"));
        Assert.That(model.NamedParameters().Single(p => p.Name == "model.moe_model.experts.0.gate_proj.weight").Parameter.Shape.ToArray(), Is.EqualTo(new[] { 20, 16 }));
        Assert.That(model.NamedParameters().Single(p => p.Name == "model.mm_projector.0.weight").Parameter.Shape.ToArray(), Is.EqualTo(new[] { 16, 12 }));
    }

    [Test]
    public void SplicingPutsVisualTokensAtThePlaceholderWithIgnoredLabels()
    {
        using var model = new ParrotForCausalLM(TinyConfig(useMoe: false), seed: 3);
        using var scope = TensorScope.Begin();
        using var ng = Graph.NoGrad();
        var feats = Tensor.Normal([1, 5, 12], 7); // 1 image, CLS + 4 patches
        var samples = new[]
        {
            new ParrotSample([1, 2, ParrotSample.ImageToken, 3, 4], [-100, -100, -100, 3, 4], ImageIndex: 0),
            new ParrotSample([5, 6], [-100, 6]),
        };
        var (embeds, labels, mask, _) = model.Assemble(samples, feats);
        Assert.That(embeds.Shape.ToArray(), Is.EqualTo(new[] { 2, 9, 16 }));
        Assert.That(labels.ToLongArray(), Is.EqualTo(new long[] { -100, -100, -100, -100, -100, -100, -100, 3, 4, -100, 6, -100, -100, -100, -100, -100, -100, -100 }));
        Assert.That(mask.ToLongArray(), Is.EqualTo(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0 }));
        var proj = model.Model.Projector.Forward(new Variable(feats)).Value.Select(0, 0).ToFloatArray();
        var e = embeds.Value.ToFloatArray();
        var table = model.Model.EmbedTokens.Weight.Value.ToFloatArray();
        for (int k = 0; k < 16; k++)
        {
            Assert.That(e[0 * 16 + k], Is.EqualTo(table[1 * 16 + k]));           // token 1
            Assert.That(e[2 * 16 + k], Is.EqualTo(proj[0 * 16 + k]));            // CLS, projected, at the placeholder
            Assert.That(e[7 * 16 + k], Is.EqualTo(table[3 * 16 + k]));           // token 3 after the 5 visual tokens
            Assert.That(e[(9 + 2) * 16 + k], Is.EqualTo(0));                     // padding of row 1
        }
        // Truncation at the max length.
        var (short_, l2, _, _) = model.Assemble(samples, feats, maxLength: 4);
        Assert.That(short_.Shape[1], Is.EqualTo(4));
        Assert.Throws<ArgumentException>(() => model.Assemble([new ParrotSample([1, ParrotSample.ImageToken], null, 0)], null));
    }

    /// <summary>Features without a visual token used to fail inside Narrow ("range [0, 1) is outside dimension 0 of size 0").</summary>
    [Test]
    public void ImageFeaturesWithoutAVisualTokenAreAnArgumentError()
    {
        using var model = new ParrotForCausalLM(TinyConfig(), seed: 3);
        using var none = Tensor.Zeros([1, 0, 12]);
        var e = Assert.Throws<ArgumentException>(() => model.Assemble([new ParrotSample([1, ParrotSample.ImageToken, 2], null, 0)], none));
        Assert.That(e!.Message, Does.Contain("image features [1, 0, 12] have no visual token (at least 1)"));
        using var patches = new ParrotForCausalLM(TinyConfig() with { MmVisionSelectFeature = "patch" }, seed: 3);
        using var clsOnly = Tensor.Zeros([1, 1, 12]);
        e = Assert.Throws<ArgumentException>(() => patches.Assemble([new ParrotSample([1, ParrotSample.ImageToken, 2], null, 0)], clsOnly));
        Assert.That(e!.Message, Does.Contain("once the CLS token is dropped"));
        using var one = Tensor.Zeros([1, 1, 12]);
        Assert.That(model.Assemble([new ParrotSample([1, ParrotSample.ImageToken, 2], null, 0)], one).Embeds.Shape[1], Is.EqualTo(3));
    }

    [Test]
    public void GradientsReachProjectorMoeAndEmbeddings()
    {
        using var model = new ParrotForCausalLM(TinyConfig(useMoe: true), seed: 4);
        using var scope = TensorScope.Begin();
        var feats = Tensor.Normal([1, 5, 12], 8);
        var samples = new[] { new ParrotSample([1, ParrotSample.ImageToken, 3, 4, 9], [-100, -100, -100, 4, 9], 0) };
        var output = model.Forward(samples, feats);
        var loss = global::Parrot.Nn.Losses.NextTokenCrossEntropy(output.Logits, output.Labels);
        loss.Backward();
        foreach (var name in new[] { "model.mm_projector.0.weight", "model.moe_model.gate.weight", "model.moe_model.experts.1.up_proj.weight", "model.embed_tokens.weight", "lm_head.weight" })
        {
            var p = model.NamedParameters().Single(x => x.Name == name).Parameter;
            Assert.That(p.Grad, Is.Not.Null, name);
            Assert.That(p.Grad!.ToDoubleArray().Any(v => v != 0), Is.True, name);
        }
        Assert.That(output.Routing[0]!.Value.ToDoubleArray().Sum(), Is.EqualTo(1).Within(1e-6));
    }

    [Test]
    public void StageOneBypassesTheMoe()
    {
        using var model = new ParrotForCausalLM(TinyConfig(useMoe: true), seed: 4) { MoeEnabled = false };
        using var scope = TensorScope.Begin();
        var feats = Tensor.Normal([1, 5, 12], 8);
        var output = model.Forward([new ParrotSample([1, ParrotSample.ImageToken, 3], [-100, -100, 3], 0)], feats);
        Assert.That(output.Routing[0], Is.Null);
        global::Parrot.Nn.Losses.NextTokenCrossEntropy(output.Logits, output.Labels).Backward();
        Assert.That(model.NamedParameters().Single(x => x.Name == "model.moe_model.gate.weight").Parameter.Grad, Is.Null);
    }
}
