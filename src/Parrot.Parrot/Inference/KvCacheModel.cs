using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// A Qwen2 decoder stack (plain Qwen2 or Parrot's) driven with the KV cache. Each prompt is prefilled on its
/// own into a cache of its own, exactly as if it were alone; a batch of several then decodes together, one
/// token per prompt per step, each row attending over its own cache (see <see cref="StepRows(IReadOnlyList{KvCache}, int[])"/>), so every
/// row computes what it would alone, with no padding. On a CUDA device the batch session decodes through the static
/// step instead, replayed from a CUDA graph (see KvCacheModel.Static.cs and <see cref="DecodeStepMode"/>).
/// </summary>
internal sealed partial class KvCacheModel : IAutoregressiveModel
{
    private readonly Qwen2Model _stack;
    private readonly Func<Variable, Variable> _head;
    private readonly Func<GenerationPrompt, Variable> _embed;
    private readonly Func<GenerationPrompt, int> _measure;

    /// <param name="stack">The decoder layers and final norm.</param>
    /// <param name="head">Hidden states → logits.</param>
    /// <param name="embed">A prompt → its input embeddings [1, T, hidden] (validates the prompt).</param>
    /// <param name="measure">
    /// A prompt → T, the positions <paramref name="embed"/> would give it (an image's visual tokens included), without
    /// running anything: it checks what <paramref name="embed"/> checks (ids, image), throwing an <see cref="ArgumentException"/>
    /// whose message names no prompt (the session prefixes it), so that a batch is checked whole before any prompt runs.
    /// </param>
    /// <param name="vocabSize">Logits per position.</param>
    public KvCacheModel(Qwen2Model stack, Func<Variable, Variable> head, Func<GenerationPrompt, Variable> embed, Func<GenerationPrompt, int> measure, int vocabSize)
    {
        _stack = stack; _head = head; _embed = embed; _measure = measure; VocabSize = vocabSize;
    }

    public int VocabSize { get; }

    /// <summary>Most positions (prompt and answer) the model takes: its max_position_embeddings.</summary>
    internal int ContextLength => _stack.Config.MaxPositionEmbeddings;

    /// <summary>
    /// A session's length check for prompt <paramref name="row"/> of <paramref name="rows"/>, started for
    /// <paramref name="maxNew"/> new tokens: the prompt and those tokens must fit the context (<see cref="ContextWindow.Room"/>,
    /// serve's rule); then the cache makes room for <paramref name="cacheRoom"/> more.
    /// </summary>
    private Func<int, int> Fits(int maxNew, int cacheRoom, int row, int rows) => length =>
    {
        try { ContextWindow.Room(ContextLength, length, maxNew); }
        catch (PromptTooLongException e) when (rows > 1) { throw new PromptTooLongException($"prompt {row}: {e.Message}"); }
        return cacheRoom;
    };

    /// <summary>
    /// Every prompt of a batch checked — its ids, its image, its length with <paramref name="maxNew"/> new tokens against
    /// the context — before any is prefilled. The sessions prefill row by row and checked each row as it came, so a batch
    /// whose prompt 1 did not fit (or held a bad id) ran prompt 0's prefill (an image's MoE routing included), then threw
    /// that work away. Errors name the prompt (its index) in a batch; the sessions' own checks at prefill stay as a backstop.
    /// </summary>
    private void CheckAll(IReadOnlyList<GenerationPrompt> prompts, int maxNew)
    {
        for (int r = 0; r < prompts.Count; r++)
        {
            var p = prompts[r] ?? throw new ArgumentException(prompts.Count > 1 ? $"generate: prompt {r} is null" : "generate: the prompt is null");
            int length;
            try { length = _measure(p); }
            catch (ArgumentException e) when (e is not ArgumentNullException)
            {
                throw new ArgumentException(prompts.Count > 1 ? $"generate: prompt {r}: {e.Message}" : $"generate: {e.Message}", e);
            }
            if (length == 0) throw new ArgumentException(prompts.Count > 1 ? $"generate: prompt {r} is empty" : "generate: the prompt is empty");
            Fits(maxNew, 0, r, prompts.Count)(length);
        }
    }

    /// <summary>Whether reading top-k candidates instead of rows saves a copy: the model is not on the CPU (<see cref="ICandidateDecodingSession"/>).</summary>
    internal bool CandidatesPay => _stack.EmbedTokens.Weight.Value.Device.Kind != DeviceKind.Cpu;

    public IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) throw new ArgumentException("generate: no prompts");
        CheckAll(prompts, Math.Max(maxNewTokens, 1));
        return UsesStaticStep ? new StaticSession(this, prompts, maxNewTokens) : new Session(this, prompts, maxNewTokens);
    }

    /// <summary>
    /// The eager session: each row its own cache (<see cref="StepRows(IReadOnlyList{KvCache}, int[])"/>). Its greedy path
    /// (<see cref="IGreedyDecodingSession"/>) runs the same step and takes the argmax on the device.
    /// </summary>
    private sealed class Session : IGreedyDecodingSession, ICandidateDecodingSession
    {
        private readonly KvCacheModel _m;
        private readonly IReadOnlyList<GenerationPrompt> _prompts;
        private readonly int _maxNew;
        private KvCache[]? _caches;
        private bool _greedy;
        private int _steps;

        public Session(KvCacheModel m, IReadOnlyList<GenerationPrompt> prompts, int maxNew)
        {
            _m = m; _prompts = prompts; _maxNew = Math.Max(maxNew, 1);
        }

        public float[][] Prefill() => Prefill(greedy: false, (GenerationPrompt p, int r, out KvCache c) => _m.PrefillRow(p, _m.Fits(_maxNew, _maxNew, r, _prompts.Count), out c, out _, $"prompt {r}"), rows => rows);

        /// <summary>Each prompt's greedy token stays on the device until all are there: one read for the batch.</summary>
        public int[] PrefillGreedy() => Prefill(greedy: true, (GenerationPrompt p, int r, out KvCache c) => _m.PrefillRowGreedy(p, _m.Fits(_maxNew, _maxNew, r, _prompts.Count), out c, out _, $"prompt {r}"), PrefillIds);

        public bool CandidatesPay => _m.CandidatesPay;

        /// <summary>The logits path with each row's top logits read back in place of the row (both read the same step).</summary>
        public LogitsRow[] PrefillCandidates(CandidateAsk[] asks) =>
            Prefill(greedy: false, (GenerationPrompt p, int r, out KvCache c) => _m.PrefillRowCandidates(p, _m.Fits(_maxNew, _maxNew, r, _prompts.Count), out c, out _, $"prompt {r}", Ask(asks, r, _prompts.Count)), rows => rows);

        public LogitsRow[] StepCandidates(int[] tokens, CandidateAsk[] asks) =>
            Step(tokens, greedy: false, (caches, t) => _m.StepRowsCandidates(caches, t, asks));

        private delegate T RowPrefill<T>(GenerationPrompt prompt, int row, out KvCache cache);

        private TResult Prefill<TRow, TResult>(bool greedy, RowPrefill<TRow> row, Func<TRow[], TResult> finish)
        {
            if (_caches is not null) throw new InvalidOperationException("generate: the session was already prefilled");
            var caches = new KvCache[_prompts.Count];
            var rows = new TRow[caches.Length];
            try
            {
                for (int r = 0; r < caches.Length; r++) rows[r] = row(_prompts[r], r, out caches[r]);
                var result = finish(rows);
                _caches = caches;
                _greedy = greedy;
                return result;
            }
            catch
            {
                foreach (var c in caches) c?.Dispose();
                throw;
            }
            finally
            {
                foreach (var x in rows) (x as IDisposable)?.Dispose();
            }
        }

        public float[][] Step(int[] tokens) => Step(tokens, greedy: false, _m.StepRows);

        public int[] StepGreedy(int[] tokens) => Step(tokens, greedy: true, _m.StepRowsGreedy);

        private T Step<T>(int[] tokens, bool greedy, Func<KvCache[], int[], T> run)
        {
            var caches = _caches ?? throw new InvalidOperationException("generate: Prefill first");
            CheckPath(_greedy, greedy);
            if (tokens.Length != caches.Length) throw new ArgumentException($"generate: {tokens.Length} tokens for a batch of {caches.Length}");
            _m.CheckIds(tokens);
            if (_steps >= _maxNew) throw NoRoom(_maxNew);
            var result = run(caches, tokens);
            _steps++;
            return result;
        }

        public void Dispose()
        {
            foreach (var c in _caches ?? []) c.Dispose();
            _caches = null;
        }
    }

    /// <summary>Row <paramref name="r"/>'s ask of a session's <paramref name="b"/> rows (one each, none null).</summary>
    private static CandidateAsk Ask(CandidateAsk[] asks, int r, int b) =>
        asks.Length == b ? asks[r] ?? throw new ArgumentException($"generate: no candidate ask for row {r}")
            : throw new ArgumentException($"generate: {asks.Length} candidate asks for a batch of {b}");

    /// <summary>Each prompt's greedy token [1] (on the device) → all of them on the host in one read.</summary>
    private static int[] PrefillIds(Tensor[] picks)
    {
        using var scope = TensorScope.Begin();
        return ReadIds(Tensor.Concat(0, picks));
    }

    /// <summary>A session takes one path, the one its prefill took (the static session's step keeps only that path's output).</summary>
    private static void CheckPath(bool prefilledGreedy, bool stepGreedy)
    {
        if (prefilledGreedy != stepGreedy)
            throw new InvalidOperationException(prefilledGreedy
                ? "generate: the session was prefilled greedy (PrefillGreedy), so its steps are StepGreedy"
                : "generate: the session was prefilled for logits (Prefill), so its steps are Step");
    }
}
