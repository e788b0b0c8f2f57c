namespace Parrot.Nn.Models.Qwen2;

/// <summary>The Qwen2 (and Qwen1.5) decoder's hyper-parameters, named as in Hugging Face's config.json.</summary>
public sealed record Qwen2Config
{
    /// <summary>vocab_size</summary>
    public int VocabSize { get; init; } = 151936;
    /// <summary>hidden_size</summary>
    public int HiddenSize { get; init; } = 4096;
    /// <summary>intermediate_size</summary>
    public int IntermediateSize { get; init; } = 11008;
    /// <summary>num_hidden_layers</summary>
    public int NumHiddenLayers { get; init; } = 32;
    /// <summary>num_attention_heads</summary>
    public int NumAttentionHeads { get; init; } = 32;
    /// <summary>num_key_value_heads (equal to the heads for multi-head attention)</summary>
    public int NumKeyValueHeads { get; init; } = 32;
    /// <summary>rope_theta</summary>
    public double RopeTheta { get; init; } = 1e6;
    /// <summary>rms_norm_eps</summary>
    public double RmsNormEps { get; init; } = 1e-6;
    /// <summary>max_position_embeddings</summary>
    public int MaxPositionEmbeddings { get; init; } = 32768;
    /// <summary>tie_word_embeddings: lm_head shares the embedding table.</summary>
    public bool TieWordEmbeddings { get; init; }
    /// <summary>initializer_range, the std of fresh weights.</summary>
    public double InitializerRange { get; init; } = 0.02;

    /// <summary>eos_token_id: ids that end generation (may be empty).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>Width of one attention head.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Throws when the sizes do not fit together.</summary>
    public void Validate()
    {
        foreach (var (key, value) in new[]
        {
            ("vocab_size", VocabSize), ("hidden_size", HiddenSize), ("intermediate_size", IntermediateSize), ("num_hidden_layers", NumHiddenLayers),
            ("num_attention_heads", NumAttentionHeads), ("num_key_value_heads", NumKeyValueHeads), ("max_position_embeddings", MaxPositionEmbeddings),
        })
            if (value <= 0) throw new ArgumentException($"Qwen2Config: {key} {value} must be positive");
        if (HiddenSize % NumAttentionHeads != 0) throw new ArgumentException($"Qwen2Config: hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}");
        if (NumAttentionHeads % NumKeyValueHeads != 0) throw new ArgumentException($"Qwen2Config: num_attention_heads {NumAttentionHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}");
        if (HeadDim % 2 != 0) throw new ArgumentException($"Qwen2Config: head dim {HeadDim} must be even for rotary embeddings");
        if (!(RopeTheta > 1)) throw new ArgumentException($"Qwen2Config: rope_theta {RopeTheta} must be > 1");
        if (!(RmsNormEps > 0)) throw new ArgumentException($"Qwen2Config: rms_norm_eps {RmsNormEps} must be > 0");
        // An id the model can never produce would silently never end generation.
        foreach (int id in EosTokenIds)
            if (id < 0 || id >= VocabSize) throw new ArgumentException($"Qwen2Config: eos_token_id {id} is outside the vocabulary [0, {VocabSize})");
    }
}
