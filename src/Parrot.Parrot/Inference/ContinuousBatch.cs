using Parrot.Nn.Layers;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;

namespace Parrot.Parrot.Inference;

/// <summary>What one step produced for one sequence of a <see cref="ContinuousBatch"/>.</summary>
/// <param name="Sequence">The sequence.</param>
/// <param name="Token">The id generated; −1 on an event of <see cref="FinishReason.Error"/> (no token was chosen).</param>
/// <param name="Text">New answer text: whole characters only, never any part of a stop string (often empty).</param>
/// <param name="Finished">Set on the sequence's last event: why it ended.</param>
/// <param name="Error">Why it failed, when <paramref name="Finished"/> is <see cref="FinishReason.Error"/>; else null.</param>
public sealed record BatchEvent(BatchSequence Sequence, int Token, string Text, FinishReason? Finished, string? Error = null);

/// <summary>One answer being generated in a <see cref="ContinuousBatch"/>, with its own KV cache.</summary>
public sealed class BatchSequence
{
    internal BatchSequence(GenerationOptions options, TokenSampler sampler, StopTextFilter filter, KvCache cache, int promptTokens, bool picksOnDevice)
    {
        Options = options; Sampler = sampler; Filter = filter; Cache = cache; PromptTokens = promptTokens; PicksOnDevice = picksOnDevice;
    }

    /// <summary>How it is generated.</summary>
    public GenerationOptions Options { get; }

    /// <summary>Positions of the prompt, an image's visual tokens included.</summary>
    public int PromptTokens { get; }

    /// <summary>Tokens generated so far.</summary>
    public int GeneratedTokens { get; internal set; }

    /// <summary>Why it ended; null while it is going.</summary>
    public FinishReason? Finished { get; internal set; }

    /// <summary>Why it failed (<see cref="Finished"/> is <see cref="FinishReason.Error"/>); null otherwise.</summary>
    public string? Error { get; internal set; }

    /// <summary>Whether it left the batch (finished or removed); its cache is freed then.</summary>
    public bool Left { get; internal set; }

    internal TokenSampler Sampler { get; }
    internal StopTextFilter Filter { get; }
    internal KvCache? Cache { get; set; }
    /// <summary>Its pick is a plain argmax, taken on the device: only its next id comes back (<see cref="Picked"/>), no logits.</summary>
    internal bool PicksOnDevice { get; }
    /// <summary>
    /// What a step reads of its row where not the whole row (<see cref="TopKCandidates.Plan"/>: top-k or top-p sampling,
    /// greedy with a penalty, on a device whose reads are copies): its top logits — or, plain temperature sampling, its
    /// chunk sums and one chunk — and, under a penalty, its own seen ids' logits (<see cref="CandidateAsk.Seen"/>, kept on
    /// the device while it is in the batch); null: its whole row (or its id, <see cref="PicksOnDevice"/>).
    /// </summary>
    internal CandidateAsk? Ask { get; init; }
    /// <summary>How many of its row's top logits a step reads for it; 0: none (<see cref="Ask"/> null, or chunk sums).</summary>
    internal int Candidates => Ask?.Count ?? 0;
    /// <summary>The next token's logits or candidates, for the host's pick (sequences that do not pick on the device).</summary>
    internal LogitsRow? Row { get; set; }
    /// <summary>The next token as the device picked it (sequences that pick there); −1 when there is none.</summary>
    internal int Picked { get; set; } = -1;
    internal int Pending { get; set; } = -1;
    /// <summary>Its slot in the static step (<see cref="KvCacheModel.StaticSlots"/>); −1 on the eager path or once it left.</summary>
    internal int Slot { get; set; } = -1;
    /// <summary>The batch it joined: only that batch may remove it (its cache and slot are that batch's).</summary>
    internal ContinuousBatch? Batch { get; init; }
}

/// <summary>
/// Continuous batching over a <see cref="ParrotModel"/>: sequences join at token boundaries (their prompt is
/// prefilled alone into a KV cache of their own), every <see cref="Step"/> generates one token for each
/// sequence in the batch (one batched pass of the model), and a sequence leaves as soon as it is finished or
/// removed, freeing its cache. A sequence generates what it would alone (greedy: the same tokens), whatever
/// joins or leaves around it. A sequence whose pick is a plain argmax (greedy, no repetition penalty: the
/// generator's condition) has it taken on the device and reads back its id alone, not its row of logits (151,936
/// floats on Qwen2): the same token as the host's pick (<see cref="global::Parrot.Nn.GreedyToken"/>); the host still
/// checks every id (end-of-sequence, stop strings, length). A sequence that samples with top-k, or decodes greedily with a
/// repetition penalty, reads only its row's top logits and under a penalty its own seen ids' logits where they decide its
/// token (<see cref="TopKCandidates"/>, as the generator does), the whole row where they do not. On a CUDA device where the static step can run (the
/// generator's rule: <see cref="DecodeStepMode.Auto"/>, PARROT_STATIC_DECODE; and PARROT_STATIC_SLOTS not "0") the steps run it with slots
/// (<see cref="KvCacheModel.StaticSlots"/>: one CUDA graph replay a step, whoever is in the batch); eagerly elsewhere.
/// Not thread-safe: one thread drives a batch; each call holds the model's turn
/// (see <see cref="ParrotModel"/>), so other callers of the model interleave between calls.
/// A sequence whose row of logits holds no number (every logit NaN or −∞: <see cref="Generator.CheckPick"/>), or from
/// whose row its sampler cannot pick (a +∞ logit under top-p), fails alone: its event ends it with
/// <see cref="FinishReason.Error"/> and the message, it leaves the batch (cache or slot freed), and the others' events of
/// that step and after are what they would have been without it.
/// </summary>
public sealed class ContinuousBatch : IDisposable
{
    private readonly ParrotModel _owner;
    private readonly KvCacheModel _lm;
    private readonly IReadOnlySet<int> _eos;
    private readonly BpeTokenizer _tokenizer;
    private readonly List<BatchSequence> _active = new();
    private readonly KvCacheModel.StaticSlots? _slots;

    internal ContinuousBatch(ParrotModel owner, KvCacheModel lm, int contextLength, IReadOnlySet<int> eos, BpeTokenizer tokenizer, DecodeStepMode mode)
    {
        _owner = owner; _lm = lm; ContextLength = contextLength; _eos = eos; _tokenizer = tokenizer;
        if (lm.UsesSlotsIn(mode)) _slots = new KvCacheModel.StaticSlots(lm, contextLength, mode);
    }

    /// <summary>The static step's slots; null where the batch decodes eagerly.</summary>
    internal KvCacheModel.StaticSlots? Slots => _slots;

    /// <summary>
    /// How the steps run, for logs and checks: "eager", or "static slots S × C" (S slots of C positions; with ", CUDA
    /// graph" once the step replays a captured graph; "static slots" alone before the first join).
    /// </summary>
    public string DecodePath => _slots is null ? "eager"
        : _slots.Slots == 0 ? "static slots"
        : $"static slots {_slots.Slots} × {_slots.Capacity}{(_slots.Captured ? ", CUDA graph" : "")}";

    /// <summary>Most positions (prompt and answer) a sequence may have: the model's max_position_embeddings.</summary>
    public int ContextLength { get; }

    /// <summary>
    /// Every pick on the host from the whole row of logits, greedy ones too, no candidates (the path before the device
    /// picks), for sequences that join after it is set: what tests and `selftest` compare the device picks against.
    /// </summary>
    public bool HostPicksOnly { get; set; }

    /// <summary>
    /// Candidates read beyond top-k for sequences that join after it is set (<see cref="TopKCandidates.Count"/>; below 0:
    /// every sampling row read whole): tests reach small vocabularies with it, as <see cref="Generator.CandidateMargin"/>.
    /// </summary>
    internal int CandidateMargin { get; set; } = TopKCandidates.DefaultMargin;

    /// <summary>Candidates read for top-p without top-k for sequences that join after it is set (<see cref="TopKCandidates.TopPCount"/>; tests with small vocabularies set fewer).</summary>
    internal int TopPCandidates { get; set; } = TopKCandidates.TopPCount;

    /// <summary>Candidates asked once more for a row the first ones do not decide, for sequences that join after it is set (<see cref="TopKCandidates.EscalatedCount"/>; 0: none).</summary>
    internal int EscalatedCandidates { get; set; } = TopKCandidates.EscalatedCount;

    /// <summary>Ids a chunk for plain temperature sampling, for sequences that join after it is set (<see cref="TopKCandidates.ChunkSize"/>; tests with small vocabularies set fewer).</summary>
    internal int TemperatureChunk { get; set; } = TopKCandidates.ChunkSize;

    /// <summary>Rows sampled from escalated candidates so far (<see cref="CandidateAsk.Escalation"/>; tests count them).</summary>
    internal int EscalatedRows { get; private set; }

    /// <summary>Sequences in the batch.</summary>
    public int Count => _active.Count;

    /// <summary>
    /// Adds a sequence continuing <paramref name="conversation"/> (with <paramref name="image"/> on the turn
    /// that carries it): its prompt is encoded and prefilled now. <paramref name="maxNewTokens"/> null: as
    /// many as the context leaves (<see cref="GenerationOptions.MaxNewTokens"/> is ignored).
    /// </summary>
    /// <exception cref="PromptTooLongException">The prompt with the answer would not fit the context.</exception>
    /// <exception cref="ArgumentException">A bad conversation or option (<paramref name="maxNewTokens"/> below 1), or an image the model cannot take.</exception>
    public BatchSequence Join(IReadOnlyList<ChatTurn> conversation, RgbImage? image, GenerationOptions options, int? maxNewTokens)
    {
        ArgumentNullException.ThrowIfNull(conversation);
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(_disposed, this);
        // A sequence in the batch always produces its next token at the next Step, so it must be allowed one.
        if (maxNewTokens is < 1) throw new ArgumentException($"continuous batch: max new tokens must be at least 1 (or null: as many as the context leaves), got {maxNewTokens}", nameof(maxNewTokens));
        // A bad option fails before any work (the prefill, its read); its MaxNewTokens is ignored here (see above).
        (options with { MaxNewTokens = 0 }).Validate();
        _owner.EnterTurn();
        var features = new List<Tensors.Tensor>();
        try
        {
            // The length is checked before the image is encoded and before the prefill's embedding (an image's MoE routing)
            // where it is known without them (an encoder that says its feature rows): a prompt too long used to run the
            // tower first, wasted work per refused request on a server. The prefill checks the actual length again below.
            var prompt = _owner.BuildPrompt(conversation, image, features, length => ContextWindow.Room(ContextLength, length, maxNewTokens));
            int chosen = 0;
            // With slots the prefill's cache only carries the prompt into a slot (its room is the slot's).
            int Room(int length) { int c = CheckLength(length); return _slots is null ? c : 0; }
            int CheckLength(int length) => chosen = ContextWindow.Room(ContextLength, length, maxNewTokens);
            bool onDevice = !HostPicksOnly && Generator.PicksPlainArgMax(options);
            int vocab = _lm.VocabSize;
            var plan = onDevice || HostPicksOnly || !_lm.CandidatesPay ? default : TopKCandidates.Plan(options, vocab, CandidateMargin, TopPCandidates);
            // The sampler sees the prompt before the prefill's read: a penalised row gathers the prompt's ids' logits. It
            // takes no option that the length below changes (max new tokens).
            var sampler = new TokenSampler(options, vocab, prompt.Ids);
            var ask = plan.Asks ? CandidateAsk.For(plan.Count, sampler, options, EscalatedCandidates, TemperatureChunk) : null;
            LogitsRow? row = null;
            int picked = -1;
            KvCache cache;
            int length;
            try
            {
                if (onDevice)
                {
                    using var id = _lm.PrefillRowGreedy(prompt, Room, out cache, out length);
                    picked = KvCacheModel.ReadIds(id)[0];
                }
                else if (ask is not null) row = _lm.PrefillRowCandidates(prompt, Room, out cache, out length, "the prompt", ask);
                else row = LogitsRow.Full(_lm.PrefillRow(prompt, Room, out cache, out length));
            }
            catch { ask?.Seen?.Dispose(); throw; }
            var opts = options with { MaxNewTokens = chosen };
            int slot = -1;
            try
            {
                opts.Validate();
                // The slot is taken now (a growth of the decoder happens at the join, not inside a step); the cache goes in
                // before the first step that feeds this sequence.
                if (_slots is not null) slot = _slots.Reserve(length + chosen);
            }
            catch { cache.Dispose(); ask?.Seen?.Dispose(); throw; }
            var seq = new BatchSequence(opts, sampler, new StopTextFilter(_tokenizer, opts.StopStrings), cache, length, onDevice)
            {
                Row = row, Picked = picked, Slot = slot, Ask = ask, Batch = this,
            };
            _active.Add(seq);
            return seq;
        }
        finally
        {
            foreach (var f in features) f.Dispose();
            _owner.ExitTurn();
        }
    }

    /// <summary>
    /// Generates one token for every sequence in the batch (one batched model pass for those that need it);
    /// returns their events; finished sequences leave the batch. Empty when the batch is. A sequence whose row held no
    /// number (or that its sampler could not pick from) gets an event of <see cref="FinishReason.Error"/> (token −1, no
    /// text, <see cref="BatchEvent.Error"/> saying why) and leaves; the others are not affected.
    /// </summary>
    public IReadOnlyList<BatchEvent> Step()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_active.Count == 0) return [];
        _owner.EnterTurn();
        try
        {
            var stepping = _active.Where(s => s.Pending >= 0).ToList();
            if (stepping.Count > 0 && _slots is not null)
            {
                foreach (var s in stepping.Where(s => s.Cache is not null))
                {
                    _slots.Load(s.Slot, s.Cache!);
                    s.Cache!.Dispose();
                    s.Cache = null;
                }
                var (ids, rows) = _slots.Step(stepping.Select(s => s.Slot).ToArray(), stepping.Select(s => s.Pending).ToArray(), stepping.Select(s => s.PicksOnDevice).ToArray(),
                    stepping.Select(s => s.Ask).ToArray());
                Took(stepping, ids, rows);
            }
            else if (stepping.Count > 0)
            {
                var (ids, rows) = _lm.StepRows(stepping.Select(s => s.Cache!).ToList(), stepping.Select(s => s.Pending).ToArray(), stepping.Select(s => s.PicksOnDevice).ToArray(),
                    stepping.Select(s => s.Ask).ToArray());
                Took(stepping, ids, rows);
            }
            var events = new List<BatchEvent>(_active.Count);
            foreach (var s in _active.ToList())
            {
                if (s.Row is { Escalated: true, Logits: null }) EscalatedRows++;
                int id;
                try
                {
                    id = s.PicksOnDevice ? s.Picked : s.Sampler.Next(s.Row!.Value);
                    Generator.CheckPick(id, s.Row, s.GeneratedTokens + 1, 0, 1);
                }
                catch (InvalidOperationException e)
                {
                    // This sequence's row held no number (a NaN met in its own prompt or tokens), or its sampler could
                    // not pick from it (a +∞ logit under top-p): it fails alone. The step threw here before, after the
                    // sequences ahead in the loop had advanced (their events lost) and with those behind never taken,
                    // so serve failed every request in the batch. Each sequence's row is its own (its own cache or slot,
                    // attention within it), so the others are untouched.
                    s.Error = e.Message;
                    s.Finished = FinishReason.Error;
                    Remove(s);
                    events.Add(new BatchEvent(s, Generator.NoNumber, "", FinishReason.Error, e.Message));
                    continue;
                }
                s.Row = null;
                s.Picked = -1;
                s.GeneratedTokens++;
                var (piece, finished) = Generator.AfterToken(id, s.Filter, _eos, s.Options, s.GeneratedTokens);
                if (finished is not null)
                {
                    s.Finished = finished;
                    Remove(s);
                }
                else s.Pending = id;
                events.Add(new BatchEvent(s, id, piece, finished));
            }
            return events;
        }
        finally { _owner.ExitTurn(); }
    }

    /// <summary>A step's results to its sequences: a greedy row's id, a sampling row's logits or candidates.</summary>
    private static void Took(List<BatchSequence> stepping, int[] ids, LogitsRow[] rows)
    {
        for (int i = 0; i < stepping.Count; i++)
        {
            var s = stepping[i];
            s.Picked = ids[i];
            s.Row = s.PicksOnDevice ? null : rows[i];
            s.Pending = -1;
        }
    }

    /// <summary>Takes <paramref name="sequence"/> out of the batch (a cancelled request) and frees its cache; nothing if it already left.</summary>
    /// <exception cref="ArgumentException">The sequence joined another batch.</exception>
    public void Remove(BatchSequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        // A sequence of another batch used to be marked as left and have its cache freed (and this batch's slot of the
        // same number freed) while its own batch went on stepping it: a freed cache or a slot given to someone else.
        if (sequence.Batch != this) throw new ArgumentException("continuous batch: the sequence belongs to another batch; remove it from the batch it joined", nameof(sequence));
        if (sequence.Left) return;
        sequence.Left = true;
        _active.Remove(sequence);
        sequence.Cache?.Dispose();
        sequence.Cache = null;
        if (sequence.Slot >= 0) _slots?.Free(sequence.Slot);
        sequence.Slot = -1;
        sequence.Row = null;
        sequence.Ask?.Seen?.Dispose();
    }

    private bool _disposed;

    /// <summary>Frees every sequence's cache.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        foreach (var s in _active.ToList()) Remove(s);
        _slots?.Dispose();
        _disposed = true;
    }
}
