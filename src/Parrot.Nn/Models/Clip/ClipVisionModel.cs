using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Models.Clip;

/// <summary>
/// The CLIP vision tower with Hugging Face's CLIPVisionModel names (vision_model.embeddings.class_embedding,
/// vision_model.pre_layrnorm.weight, vision_model.encoder.layers.{i}.self_attn.q_proj.weight, …,
/// vision_model.post_layernorm.bias), so a CLIPVisionModel state dict loads as it is. Parrot uses
/// <see cref="HiddenState"/> with layer −2: the output of the second-to-last layer, class token kept.
/// </summary>
public sealed class ClipVisionModel : Module
{
    /// <summary>The configuration.</summary>
    public ClipVisionConfig Config { get; }

    /// <summary>The tower (named "vision_model").</summary>
    public ClipVisionTransformer VisionModel { get; }

    /// <summary>
    /// Creates a tower initialised as Hugging Face's CLIPPreTrainedModel._init_weights does (factor 1), or, with
    /// <paramref name="initialize"/> false, one whose weights are placeholders about to be replaced by a checkpoint.
    /// </summary>
    public ClipVisionModel(ClipVisionConfig config, ulong seed = 0, DType dtype = DType.F32, bool initialize = true)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        VisionModel = AddModule("vision_model", new ClipVisionTransformer(config, Init.SeedFor(seed, "vision_model"), dtype));
        if (initialize) ReinitialiseAsHuggingFace(seed);
    }

    private void ReinitialiseAsHuggingFace(ulong seed)
    {
        double c = Config.HiddenSize, std = 0.02;
        double inProj = Math.Pow(c, -0.5) * Math.Pow(2.0 * Config.NumHiddenLayers, -0.5), outProj = Math.Pow(c, -0.5), fc = Math.Pow(2 * c, -0.5);
        foreach (var (name, p) in NamedParameters())
        {
            double? sigma = name switch
            {
                _ when name.Contains("norm", StringComparison.Ordinal) => null, // layer_norm1/2, pre_layrnorm, post_layernorm keep 1 and 0
                _ when name.EndsWith("class_embedding", StringComparison.Ordinal) => Math.Pow(c, -0.5),
                _ when name.EndsWith("patch_embedding.weight", StringComparison.Ordinal) || name.EndsWith("position_embedding.weight", StringComparison.Ordinal) => std,
                _ when name.EndsWith(".bias", StringComparison.Ordinal) => 0,
                _ when name.EndsWith("out_proj.weight", StringComparison.Ordinal) => outProj,
                _ when name.EndsWith("_proj.weight", StringComparison.Ordinal) => inProj,
                _ when name.EndsWith("fc1.weight", StringComparison.Ordinal) => fc,
                _ when name.EndsWith("fc2.weight", StringComparison.Ordinal) => inProj,
                _ => throw new InvalidOperationException($"ClipVisionModel: no initialiser for {name}"),
            };
            if (sigma is not { } s) continue;
            using var fresh = s == 0 ? Tensor.Zeros(p.Shape, p.DType) : Init.Normal(p.Shape.ToArray(), s, Init.SeedFor(seed, name), p.DType);
            p.Value.CopyFrom(fresh);
        }
    }

    /// <summary>
    /// Hugging Face's index of a hidden state, 0 … L, from <paramref name="layer"/>, which may count from the
    /// end: −1 is the last layer's output, −2 the second-to-last (Parrot's choice), −(L + 1) the embeddings.
    /// </summary>
    public int HiddenStateIndex(int layer)
    {
        int count = Config.NumHiddenLayers + 1;
        int index = layer < 0 ? count + layer : layer;
        if (index < 0 || index >= count)
            throw new ArgumentOutOfRangeException(nameof(layer), $"ClipVisionModel: layer {layer} is outside the {count} hidden states (−{count} … {count - 1})");
        return index;
    }

    /// <summary>
    /// Every hidden state of pixels [B, channels, S, S] (<see cref="ClipVisionOutput"/>: embeddings after
    /// pre_layrnorm, then the output of each layer) and the pooled output.
    /// </summary>
    public ClipVisionOutput Forward(Variable pixelValues)
    {
        var states = new List<Variable> { VisionModel.Embed(pixelValues) };
        var last = VisionModel.Encoder.Forward(states[0], Config.NumHiddenLayers, states.Add);
        return new ClipVisionOutput(states, last, VisionModel.Pool(last));
    }

    /// <summary>
    /// Hidden state <paramref name="layer"/> ([B, 1 + N, C], Hugging Face indexing, negative counts from the
    /// end, see <see cref="HiddenStateIndex"/>) of pixels [B, channels, S, S]; the layers after it are not run.
    /// </summary>
    public Variable HiddenState(Variable pixelValues, int layer)
    {
        int index = HiddenStateIndex(layer);
        return VisionModel.Encoder.Forward(VisionModel.Embed(pixelValues), index);
    }
}
