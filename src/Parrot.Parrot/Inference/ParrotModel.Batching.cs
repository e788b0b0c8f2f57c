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
        ThrowIfDisposed();
        var lm = _generator.Model as KvCacheModel ?? throw new InvalidOperationException("ParrotModel: continuous batching needs the KV-cache model");
        return new ContinuousBatch(this, lm, ContextLength, EndOfSequenceIds, Tokenizer, mode);
    }

    internal void EnterTurn() => Enter();

    internal void ExitTurn() => Exit();

    internal GenerationPrompt BuildPrompt(IReadOnlyList<ChatTurn> conversation, RgbImage? image, List<Tensor> owned) => Prompt(conversation, image, owned);
}
