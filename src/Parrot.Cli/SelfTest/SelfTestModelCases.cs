using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Models.Clip;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// A tiny Qwen2-style decoder layer (RMSNorm, GQA attention with RoPE, SwiGLU MLP, residuals) run forward and
/// backward through the autograd engine on the chosen device: its output and the gradients of its input and of
/// the query projection, flattened into one result. Checks that whole chains of ops, not only single ops, agree.
/// </summary>
internal static class SelfTestModelCases
{
    private const int B = 2, T = 16, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Inter = 128;

    internal static IEnumerable<SelfTestCase> All()
    {
        yield return new("decoder layer fwd+bwd (autograd)", Inputs, Run);
        yield return new("tiny Qwen2 fwd+bwd (model)", LmInputs, LmRun);
        yield return new("tiny CLIP fwd+bwd (model)", ClipInputs, ClipRun);
        // The packed q/k/v projection's gradient written in place by RoPE's and attention's backward (Qwen2; CLIP has
        // no RoPE: attention's writes all three) must give the bits of gathering it by copies (Graph.WithoutGradientTargets).
        yield return new("Qwen2 fwd+bwd, qkv grads in place", LmInputs, p => InPlaceSameAsGathered(p, LmRun));
        yield return new("CLIP fwd+bwd, qkv grads in place", ClipInputs, p => InPlaceSameAsGathered(p, ClipRun));
    }

    /// <summary>
    /// <paramref name="run"/>'s result, after checking it has the bits of the same run without gradient targets (else
    /// throws). On our attention kernels: cuDNN's backward is not guaranteed to give the same bits run to run, nor for
    /// other output strides (it may pick another engine for the packed layout), so with it the rows could differ with
    /// no bug in the gradient targets.
    /// </summary>
    private static Tensor InPlaceSameAsGathered(Tensor[] p, Func<Tensor[], Tensor> run)
    {
        if (p[0].Backend is not CudaBackend cuda) return InPlaceSameAsGatheredOn(p, run);
        bool cudnn = cuda.CudnnAttention;
        cuda.CudnnAttention = false;
        try { return InPlaceSameAsGatheredOn(p, run); }
        finally { cuda.CudnnAttention = cudnn; }
    }

    private static Tensor InPlaceSameAsGatheredOn(Tensor[] p, Func<Tensor[], Tensor> run)
    {
        double[] gathered;
        using (Graph.WithoutGradientTargets())
        using (var r = run(p))
            gathered = r.ToDoubleArray();
        var y = run(p);
        var written = y.ToDoubleArray();
        if (SelfTestCase.FirstBitDifference(written, gathered) is int i and >= 0)
        {
            y.Dispose();
            throw new InvalidOperationException($"element {i} of the outputs and gradients: {written[i]:R} written in place, {gathered[i]:R} gathered by copies");
        }
        return y;
    }

    // ---- whole models: Module.To(device), then the model makes its masks, RoPE tables and targets there ----

    private static readonly Qwen2Config TinyLm = new()
    {
        VocabSize = 96, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, RopeTheta = 10000,
    };

    private static readonly ClipVisionConfig TinyClip = new() { HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, ImageSize = 28, PatchSize = 7 };

    /// <summary>The parameters of a freshly initialised <paramref name="model"/> (in its order) in <paramref name="t"/>; disposes the model.</summary>
    private static List<Tensor> ParametersOf(Module model, DType t)
    {
        using (model) return model.Parameters().Select(v => v.Value.To(t)).ToList();
    }

    /// <summary>A model of <paramref name="p"/>[0]'s dtype on its device, holding the parameters p[0..count).</summary>
    private static T Load<T>(T model, Tensor[] p) where T : Module
    {
        model.To(p[0].Device);
        int i = 0;
        foreach (var v in model.Parameters()) v.Value.CopyFrom(p[i++]);
        return model;
    }

    /// <summary>Everything flattened into one float64 vector (the runner compares it as a whole).</summary>
    private static Tensor Flat(IEnumerable<Tensor> parts) => Tensor.Concat(0, parts.Select(t => t.To(DType.F64).Reshape(-1)).ToArray());

    private static Tensor[] LmInputs(Random r, DType t)
    {
        var ps = ParametersOf(new Qwen2ForCausalLM(TinyLm, (ulong)r.NextInt64()), t);
        ps.Add(Indices(r, TinyLm.VocabSize, B, T));
        var mask = new long[B * T];
        for (int i = 0; i < mask.Length; i++) mask[i] = i >= B * T - 5 ? 0 : 1; // the second row's last 5 positions are padding
        var ids = ps[^1].ToLongArray();
        ps.Add(Tensor.FromArray(mask, B, T));
        ps.Add(Tensor.FromArray(ids.Select((id, i) => mask[i] == 0 ? Losses.IgnoreIndex : id).ToArray(), B, T)); // labels: none on padding
        return [.. ps];
    }

    private static Tensor LmRun(Tensor[] p)
    {
        using var scope = TensorScope.Begin();
        using var m = Load(new Qwen2ForCausalLM(TinyLm, dtype: p[0].DType, initialize: false), p);
        Tensor ids = p[^3], mask = p[^2], labels = p[^1];
        var logits = m.Forward(ids, mask);
        var loss = Losses.NextTokenCrossEntropy(logits, labels);
        loss.Backward();
        return scope.Keep(Flat([logits.Value, loss.Value, .. m.Parameters().Select(v => v.Grad!)]));
    }

    private static Tensor[] ClipInputs(Random r, DType t)
    {
        var ps = ParametersOf(new ClipVisionModel(TinyClip, (ulong)r.NextInt64()), t);
        ps.Add(Normal(r, t, B, 3, TinyClip.ImageSize, TinyClip.ImageSize));
        return [.. ps];
    }

    private static Tensor ClipRun(Tensor[] p)
    {
        using var scope = TensorScope.Begin();
        using var m = Load(new ClipVisionModel(TinyClip, dtype: p[0].DType, initialize: false), p);
        var pixels = new Variable(p[^1], requiresGrad: true);
        var o = m.Forward(pixels);
        var loss = (o.LastHiddenState * o.LastHiddenState).Mean() + o.PoolerOutput.Sum() * 0.01 + o.HiddenStates[1].Mean();
        loss.Backward();
        return scope.Keep(Flat([o.LastHiddenState.Value, o.PoolerOutput.Value, pixels.Grad!, .. m.Parameters().Select(v => v.Grad!)]));
    }

    private static Tensor[] Inputs(Random r, DType t)
    {
        Tensor W(int i, int o) { using var w = Normal(r, DType.F32, i, o); using var s = w * (1.0 / Math.Sqrt(i)); return s.To(t); }
        Tensor Norm() { using var n = Positive(r, DType.F32, 0.5, 1.5, Hidden); return n.To(t); }
        return [Normal(r, t, B, T, Hidden), Norm(), W(Hidden, Hidden), W(Hidden, KvHeads * HeadDim), W(Hidden, KvHeads * HeadDim), W(Hidden, Hidden),
                Norm(), W(Hidden, Inter), W(Hidden, Inter), W(Inter, Hidden)];
    }

    private static Tensor Run(Tensor[] p)
    {
        using var scope = TensorScope.Begin();
        var x = new Variable(p[0], requiresGrad: true);
        var wq = new Variable(p[2], requiresGrad: true);
        Variable V(int i) => new(p[i]);
        var (cos0, sin0) = Tensor.RopeTables(0, T, HeadDim, 10000.0, p[0].Device);
        var cos = cos0.To(p[0].DType);
        var sin = sin0.To(p[0].DType);

        var h = x.RmsNorm(V(1));
        var q = h.MatMul(wq).Reshape(B, T, Heads, HeadDim).Transpose(1, 2).ApplyRope(cos, sin);
        var k = h.MatMul(V(3)).Reshape(B, T, KvHeads, HeadDim).Transpose(1, 2).ApplyRope(cos, sin);
        var v = h.MatMul(V(4)).Reshape(B, T, KvHeads, HeadDim).Transpose(1, 2);
        var a = Variable.ScaledDotProductAttention(q, k, v, causal: true).Transpose(1, 2).Reshape(B, T, Hidden);
        var x2 = x + a.MatMul(V(5));
        var h2 = x2.RmsNorm(V(6));
        var y = x2 + (h2.MatMul(V(7)).Silu() * h2.MatMul(V(8))).MatMul(V(9));
        var loss = (y * y).Mean();
        loss.Backward();
        using var fy = y.Value.Reshape(-1);
        using var fx = x.Grad!.Reshape(-1);
        using var fq = wq.Grad!.Reshape(-1);
        return scope.Keep(Tensor.Concat(0, fy, fx, fq));
    }
}
