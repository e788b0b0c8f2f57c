using Parrot.Autograd;
using Parrot.Nn.Models.Clip;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// Where the time of one CLIP encoder layer goes: each step of <see cref="ClipEncoderLayer.Forward"/> (and of
/// the attention inside it) run on its own, on the inputs the real forward gives it, median of several runs.
/// </summary>
internal static class VitLayerProfile
{
    public static List<(string Op, double Ms)> Run(ClipVisionModel model, Tensor pixels, int reps)
    {
        var result = new List<(string, double)>();
        var tower = model.VisionModel;
        var layer = tower.Encoder.Layers[0];
        var attn = layer.SelfAttn;
        using var scope = TensorScope.Begin();
        int b = 1, t = model.Config.NumPositions, heads = attn.Heads, d = attn.HeadDim, c = model.Config.HiddenSize;

        Variable Time(string name, Func<Variable> op)
        {
            Variable? kept = null;
            double ms = VitBench.Median(reps, () =>
            {
                using var s = TensorScope.Begin();
                kept?.Value.Dispose();
                kept = op();
                s.Keep(kept.Value);
            });
            result.Add((name, ms));
            return kept!;
        }

        var x = Time("embeddings÷layers", () => tower.Embed(pixels));
        result[^1] = (result[^1].Item1, result[^1].Item2 / model.Config.NumHiddenLayers); // once per forward: shown per layer
        var h = Time("layer_norm1", () => layer.LayerNorm1.Forward(x));
        var q = Time("q_proj", () => attn.QProj.Forward(h));
        var k = Time("k_proj", () => attn.KProj.Forward(h));
        var v = Time("v_proj", () => attn.VProj.Forward(h));
        var qh = q.Reshape(b, t, heads, d).Transpose(1, 2);
        var kh = k.Reshape(b, t, heads, d).Transpose(1, 2);
        var vh = v.Reshape(b, t, heads, d).Transpose(1, 2);
        var scores = Time("scores q·kᵀ", () => qh.MatMul(kh.Transpose(-2, -1)));
        var scaled = Time("scale", () => scores * (1 / Math.Sqrt(d)));
        var probs = Time("softmax", () => scaled.Softmax(-1));
        var o = Time("probs·v", () => probs.MatMul(vh));
        var merged = Time("merge heads", () => o.Transpose(1, 2).Reshape(b, t, c));
        var a = Time("out_proj", () => attn.OProj.Forward(merged));
        var x1 = Time("residual add", () => x + a);
        var h2 = Time("layer_norm2", () => layer.LayerNorm2.Forward(x1));
        var f1 = Time("fc1", () => layer.Mlp.Fc1.Forward(h2));
        var g = Time("quick_gelu", () => f1.QuickGelu());
        var f2 = Time("fc2", () => layer.Mlp.Fc2.Forward(g));
        Time("residual add 2", () => x1 + f2);
        Time("whole layer", () => layer.Forward(x));
        return result;
    }
}
