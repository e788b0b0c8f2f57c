using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;

namespace Parrot.Parrot.Inference;

/// <summary>
/// A Qwen2 decoder stack (plain Qwen2 or Parrot's) driven with the KV cache. Each prompt is prefilled on its
/// own into a cache of its own, exactly as if it were alone; a batch of several then decodes together, one
/// token per prompt per step, each row attending over its own cache (see <see cref="StepRows"/>), so every
/// row computes what it would alone, with no padding. On a CUDA device the batch session decodes through the static
/// step instead, replayed from a CUDA graph (see KvCacheModel.Static.cs and <see cref="DecodeStepMode"/>).
/// </summary>
internal sealed partial class KvCacheModel : IAutoregressiveModel
{
    private readonly Qwen2Model _stack;
    private readonly Func<Variable, Variable> _head;
    private readonly Func<GenerationPrompt, Variable> _embed;

    /// <param name="stack">The decoder layers and final norm.</param>
    /// <param name="head">Hidden states → logits.</param>
    /// <param name="embed">A prompt → its input embeddings [1, T, hidden] (validates the prompt).</param>
    /// <param name="vocabSize">Logits per position.</param>
    public KvCacheModel(Qwen2Model stack, Func<Variable, Variable> head, Func<GenerationPrompt, Variable> embed, int vocabSize)
    {
        _stack = stack; _head = head; _embed = embed; VocabSize = vocabSize;
    }

    public int VocabSize { get; }

    public IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) throw new ArgumentException("generate: no prompts");
        return UsesStaticStep ? new StaticSession(this, prompts, maxNewTokens) : new Session(this, prompts, maxNewTokens);
    }

    private sealed class Session : IDecodingSession
    {
        private readonly KvCacheModel _m;
        private readonly IReadOnlyList<GenerationPrompt> _prompts;
        private readonly int _maxNew;
        private KvCache[]? _caches;
        private int _steps;

        public Session(KvCacheModel m, IReadOnlyList<GenerationPrompt> prompts, int maxNew)
        {
            _m = m; _prompts = prompts; _maxNew = Math.Max(maxNew, 1);
        }

        public float[][] Prefill()
        {
            if (_caches is not null) throw new InvalidOperationException("generate: the session was already prefilled");
            var caches = new KvCache[_prompts.Count];
            var logits = new float[caches.Length][];
            try
            {
                for (int r = 0; r < caches.Length; r++)
                    logits[r] = _m.PrefillRow(_prompts[r], _ => _maxNew, out caches[r], out _, $"prompt {r}");
            }
            catch
            {
                foreach (var c in caches) c?.Dispose();
                throw;
            }
            _caches = caches;
            return logits;
        }

        public float[][] Step(int[] tokens)
        {
            var caches = _caches ?? throw new InvalidOperationException("generate: Prefill first");
            if (tokens.Length != caches.Length) throw new ArgumentException($"generate: {tokens.Length} tokens for a batch of {caches.Length}");
            _m.CheckIds(tokens);
            if (_steps >= _maxNew) throw NoRoom(_maxNew);
            var logits = _m.StepRows(caches, tokens);
            _steps++;
            return logits;
        }

        public void Dispose()
        {
            foreach (var c in _caches ?? []) c.Dispose();
            _caches = null;
        }
    }
}
