using Parrot.Autograd;
using Parrot.Nn.Models.Clip;
using Parrot.Tensors;

namespace Parrot.Parrot.Model;

/// <summary>Connecting a CLIP vision tower to Parrot: features of the configured layer, computed without gradients (the tower is frozen).</summary>
public static class ParrotVision
{
    /// <summary>
    /// A function from pixel values [B, 3, S, S] to the tower's hidden state <paramref name="selectLayer"/>
    /// [B, 1+N, C] (CLS kept; the projector drops it for mm_vision_select_feature "patch").
    /// </summary>
    public static Func<Tensor, Tensor> Features(ClipVisionModel tower, int selectLayer)
    {
        ArgumentNullException.ThrowIfNull(tower);
        tower.HiddenStateIndex(selectLayer); // validates the layer now, not at the first image
        return pixels =>
        {
            using var noGrad = Graph.NoGrad();
            using var scope = TensorScope.Begin();
            var w = tower.VisionModel.Embeddings.PatchEmbedding.Weight;
            var x = pixels.DType == w.DType && pixels.Device == w.Value.Device ? pixels : pixels.To(w.DType, w.Value.Device);
            return scope.Keep(tower.HiddenState(new Variable(x), selectLayer).Value.Contiguous());
        };
    }

    /// <summary>Attaches <paramref name="tower"/>'s features to <paramref name="model"/> using the model's configured layer.</summary>
    public static void Attach(ParrotForCausalLM model, ClipVisionModel tower)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (tower.Config.HiddenSize != model.Config.MmHiddenSize)
            throw new ArgumentException($"Parrot: the vision tower's width {tower.Config.HiddenSize} differs from mm_hidden_size {model.Config.MmHiddenSize}");
        model.VisionFeatures = Features(tower, model.Config.MmVisionSelectLayer);
    }
}
