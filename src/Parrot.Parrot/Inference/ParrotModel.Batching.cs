using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

namespace Parrot.Parrot;

public sealed partial class ParrotModel
{
    /// <summary>The language model's configuration (text part of a Parrot model).</summary>
    private Qwen2Config TextConfig => _model switch
    {
        ParrotModelDirectory d => d.Model.Config.Text,
        Qwen2ForCausalLM q => q.Config,
        _ => throw new InvalidOperationException("ParrotModel: unknown model kind"),
    };

    /// <summary>Most positions (prompt and answer) the model takes: max_position_embeddings.</summary>
    public int ContextLength => TextConfig.MaxPositionEmbeddings;

    /// <summary>Starts a <see cref="ContinuousBatch"/> over this model (a server's scheduler drives it).</summary>
    public ContinuousBatch StartContinuousBatch() => StartContinuousBatch(DecodeStepMode.Auto);

    /// <summary>
    /// As <see cref="StartContinuousBatch()"/>, its steps run as <paramref name="mode"/> says (<see cref="DecodeStepMode.Auto"/>:
    /// the static step with slots on CUDA devices where it can run; Eager and Static force either, for comparisons).
    /// </summary>
    public ContinuousBatch StartContinuousBatch(DecodeStepMode mode)
    {
        KvCacheModel.CheckMode(mode);
        ThrowIfDisposed();
        var lm = _generator.Model as KvCacheModel ?? throw new InvalidOperationException("ParrotModel: continuous batching needs the KV-cache model");
        return new ContinuousBatch(this, lm, ContextLength, EndOfSequenceIds, Tokenizer, mode);
    }

    internal void EnterTurn() => Enter();

    internal void ExitTurn() => Exit();

    /// <summary>
    /// The prompt of <paramref name="conversation"/> (checked as every entry point checks it), <paramref name="image"/>
    /// encoded into <paramref name="owned"/>. <paramref name="checkLength"/> gets the prompt's positions (visual tokens
    /// included) before the image is encoded, when they are known without encoding it (<see cref="KnownLength"/>), and
    /// throws when they do not fit: the tower, the costly part, used to run for a prompt the length check then refused.
    /// The caller's check after the embedding (the actual length) stays.
    /// </summary>
    internal GenerationPrompt BuildPrompt(IReadOnlyList<ChatTurn> conversation, RgbImage? image, List<Tensor> owned, Action<int> checkLength)
    {
        var ids = PromptIds(conversation, image);
        if (KnownLength(ids, image) is int length) checkLength(length);
        return Encoded(ids, image, owned);
    }

    /// <summary>
    /// The next token's logits after <paramref name="answer"/> continuing <paramref name="conversation"/>, from one eager
    /// forward of the prompt (built as <see cref="ContinuousBatch.Join"/> builds it) and the answer: <c>Raw</c> as the model
    /// gives them, <c>Pick</c> as a greedy pick with <paramref name="options"/> compares them (its repetition penalty over
    /// the prompt's and the answer's ids, as <see cref="TokenSampler"/> applies it). An independent judge for checks of
    /// the batch (selftest's near ties), not a decoding path.
    /// </summary>
    /// <exception cref="ArgumentException">Sampling options (a sampled pick is a draw, not a comparison of logits), an id outside the vocabulary, or a bad conversation.</exception>
    internal (float[] Raw, double[] Pick) NextTokenLogits(IReadOnlyList<ChatTurn> conversation, RgbImage? image, GenerationOptions options, IReadOnlyList<int> answer)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(answer);
        if (options.IsSampling) throw new ArgumentException("next-token logits: the options sample (temperature > 0); only a greedy pick compares logits");
        var lm = _generator.Model as KvCacheModel ?? throw new InvalidOperationException("ParrotModel: next-token logits need the KV-cache model");
        foreach (int id in answer)
            if ((uint)id >= (uint)lm.VocabSize) throw new ArgumentException($"next-token logits: answer id {id} is outside the vocabulary of {lm.VocabSize}", nameof(answer));
        Enter();
        var features = new List<Tensor>();
        try
        {
            // The prompt and answer must fit the context (as the prefill below checks), known before the image is encoded.
            var prompt = BuildPrompt(conversation, image, features, length => ContextWindow.CheckPrompt(lm.ContextLength, length + answer.Count));
            int[] ids = [.. prompt.Ids, .. answer];
            var raw = lm.PrefillRow(prompt with { Ids = ids }, length => { ContextWindow.CheckPrompt(lm.ContextLength, length); return 0; }, out var cache, out _, "the prompt and answer");
            cache.Dispose();
            var sampler = new TokenSampler(options, lm.VocabSize, ids);
            var pick = new double[raw.Length];
            for (int i = 0; i < raw.Length; i++) pick[i] = sampler.Penalised(raw[i], i);
            return (raw, pick);
        }
        finally
        {
            foreach (var f in features) f.Dispose();
            Exit();
        }
    }
}
