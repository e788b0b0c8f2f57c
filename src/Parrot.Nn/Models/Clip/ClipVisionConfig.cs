using Parrot.Nn.Layers;

namespace Parrot.Nn.Models.Clip;

/// <summary>
/// The CLIP vision tower's hyper-parameters, named as in Hugging Face's CLIPVisionConfig. The defaults are
/// transformers 4.39's (ViT-B/32 at 224 px), which apply to every key a config.json leaves out.
/// </summary>
public sealed record ClipVisionConfig
{
    /// <summary>openai/clip-vit-large-patch14-336, Parrot's vision tower: width 1024, 24 layers, 16 heads, MLP 4096, 14-px patches at 336 px.</summary>
    public static ClipVisionConfig VitL14_336 { get; } = new()
    {
        HiddenSize = 1024, IntermediateSize = 4096, NumHiddenLayers = 24, NumAttentionHeads = 16, ImageSize = 336, PatchSize = 14,
    };

    /// <summary>hidden_size, the token width C.</summary>
    public int HiddenSize { get; init; } = 768;
    /// <summary>intermediate_size, the MLP width.</summary>
    public int IntermediateSize { get; init; } = 3072;
    /// <summary>num_hidden_layers</summary>
    public int NumHiddenLayers { get; init; } = 12;
    /// <summary>num_attention_heads</summary>
    public int NumAttentionHeads { get; init; } = 12;
    /// <summary>num_channels of the input image.</summary>
    public int NumChannels { get; init; } = 3;
    /// <summary>image_size: the side S of the square input.</summary>
    public int ImageSize { get; init; } = 224;
    /// <summary>patch_size: the side P of one patch.</summary>
    public int PatchSize { get; init; } = 32;
    /// <summary>hidden_act of the MLP: quick_gelu, gelu (exact), gelu_new or gelu_pytorch_tanh (tanh approximation).</summary>
    public string HiddenAct { get; init; } = "quick_gelu";
    /// <summary>layer_norm_eps</summary>
    public double LayerNormEps { get; init; } = 1e-5;

    /// <summary>Patches per image, (S / P)².</summary>
    public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);
    /// <summary>Tokens per image: the class token and the patches.</summary>
    public int NumPositions => NumPatches + 1;
    /// <summary>Width of one attention head.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>The MLP activation <see cref="HiddenAct"/> names.</summary>
    public MlpActivation Activation => HiddenAct switch
    {
        "quick_gelu" => MlpActivation.QuickGelu,
        "gelu" => MlpActivation.Gelu,
        "gelu_new" or "gelu_pytorch_tanh" => MlpActivation.GeluTanh,
        _ => throw new ArgumentException($"ClipVisionConfig: hidden_act '{HiddenAct}' is not supported (quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)"),
    };

    /// <summary>Throws <see cref="ArgumentException"/> naming the key when the sizes do not fit together.</summary>
    public void Validate()
    {
        Positive(HiddenSize, "hidden_size");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumChannels, "num_channels");
        Positive(ImageSize, "image_size");
        Positive(PatchSize, "patch_size");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new ArgumentException($"ClipVisionConfig: hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}");
        if (ImageSize % PatchSize != 0)
            throw new ArgumentException($"ClipVisionConfig: image_size {ImageSize} is not a multiple of patch_size {PatchSize}");
        if (!(LayerNormEps > 0) || !double.IsFinite(LayerNormEps))
            throw new ArgumentException($"ClipVisionConfig: layer_norm_eps {LayerNormEps} must be a positive number");
        _ = Activation;
    }

    private static void Positive(int value, string key)
    {
        if (value <= 0) throw new ArgumentException($"ClipVisionConfig: {key} {value} must be positive");
    }
}
