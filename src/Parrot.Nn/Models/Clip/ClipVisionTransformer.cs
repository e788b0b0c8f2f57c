using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Models.Clip;

/// <summary>The tower itself (Hugging Face's CLIPVisionTransformer, named "vision_model"): embeddings, pre_layrnorm, encoder, post_layernorm.</summary>
public sealed class ClipVisionTransformer : Module
{
    /// <summary>embeddings: class token, patches, positions.</summary>
    public ClipVisionEmbeddings Embeddings { get; }
    /// <summary>pre_layrnorm (Hugging Face's spelling), applied to the embeddings.</summary>
    public LayerNorm PreLayrnorm { get; }
    /// <summary>encoder: the layers.</summary>
    public ClipEncoder Encoder { get; }
    /// <summary>post_layernorm, applied to the pooled class token only.</summary>
    public LayerNorm PostLayernorm { get; }

    /// <summary>Creates the tower.</summary>
    public ClipVisionTransformer(ClipVisionConfig c, ulong seed, DType dtype)
    {
        Embeddings = AddModule("embeddings", new ClipVisionEmbeddings(c, Init.SeedFor(seed, "embeddings"), dtype));
        PreLayrnorm = AddModule("pre_layrnorm", new LayerNorm(c.HiddenSize, c.LayerNormEps, dtype));
        Encoder = AddModule("encoder", new ClipEncoder(c, Init.SeedFor(seed, "encoder"), dtype));
        PostLayernorm = AddModule("post_layernorm", new LayerNorm(c.HiddenSize, c.LayerNormEps, dtype));
    }

    /// <summary>hidden_states[0]: the embeddings of pixels [B, channels, S, S] after pre_layrnorm.</summary>
    public Variable Embed(Variable pixels) => PreLayrnorm.Forward(Embeddings.Forward(pixels));

    /// <summary>post_layernorm of the class token of <paramref name="lastHiddenState"/> [B, 1 + N, C] → [B, C].</summary>
    public Variable Pool(Variable lastHiddenState) => PostLayernorm.Forward(lastHiddenState.Select(1, 0));
}

/// <summary>The encoder: layers.0 … layers.{L−1}.</summary>
public sealed class ClipEncoder : Module
{
    private readonly ClipEncoderLayer[] _layers;

    /// <summary>The layers.</summary>
    public IReadOnlyList<ClipEncoderLayer> Layers => _layers;

    /// <summary>Creates the layers.</summary>
    public ClipEncoder(ClipVisionConfig c, ulong seed, DType dtype)
    {
        var list = AddModule("layers", new ModuleList());
        _layers = new ClipEncoderLayer[c.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++) _layers[i] = list.Add(new ClipEncoderLayer(c, Init.SeedFor(seed, $"layers.{i}"), dtype));
    }

    /// <summary>
    /// Runs layers 0 … <paramref name="count"/>−1 over x [B, T, C], handing each layer's output to
    /// <paramref name="onOutput"/>, and returns the last output. Without gradients, each layer's temporaries
    /// (attention scores, MLP activations) are freed as soon as the layer is done, so a deep tower needs the
    /// memory of one layer, not of all of them.
    /// </summary>
    public Variable Forward(Variable x, int count, Action<Variable>? onOutput = null)
    {
        if (count < 0 || count > _layers.Length) throw new ArgumentOutOfRangeException(nameof(count), $"ClipEncoder: {count} layers asked of {_layers.Length}");
        for (int i = 0; i < count; i++)
        {
            x = RunLayer(_layers[i], x);
            onOutput?.Invoke(x);
        }
        return x;
    }

    private static Variable RunLayer(ClipEncoderLayer layer, Variable x)
    {
        if (!Graph.IsGradDisabled) return layer.Forward(x); // the graph keeps what backward needs
        using var scope = TensorScope.Begin();
        var y = layer.Forward(x).Value;
        scope.Keep(y);
        return new Variable(y);
    }
}
