using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// Incremental text generation with the KV cache: the prompts are run once (prefill), then one token per
/// prompt at a time, greedy or sampled (<see cref="GenerationOptions"/>), until an end-of-sequence id, a
/// stop string or the maximum length. Several prompts of different lengths generate together as one batch
/// and give what each would give alone. With a tokenizer the answers are also decoded and streamed as text
/// that never splits a character. Greedy decoding without a repetition penalty takes the argmax on the model's device
/// where the session can (<see cref="IGreedyDecodingSession"/>: ids read back instead of logits; the same tokens); top-k
/// sampling, and greedy decoding with a penalty, read each row's top logits (and the seen ids' logits where a penalty
/// applies) instead of the row (<see cref="ICandidateDecodingSession"/>). A
/// generator holds no state between calls; the model must not be used by two calls at once (the
/// <see cref="ParrotModel"/> API serialises its callers).
/// </summary>
public sealed class Generator
{
    private readonly HashSet<int> _eos;

    /// <summary>
    /// A generator over <paramref name="model"/>. <paramref name="endOfSequenceIds"/>: ids that end an
    /// answer; null: the tokenizer's <c>&lt;|im_end|&gt;</c> and <c>&lt;|endoftext|&gt;</c> when it has them.
    /// Without a <paramref name="tokenizer"/> results carry ids only and stop strings cannot be used.
    /// </summary>
    public Generator(IAutoregressiveModel model, BpeTokenizer? tokenizer = null, IEnumerable<int>? endOfSequenceIds = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        Model = model;
        Tokenizer = tokenizer;
        _eos = endOfSequenceIds is not null ? new HashSet<int>(endOfSequenceIds) : DefaultEndOfSequenceIds(tokenizer);
    }

    /// <summary>The model.</summary>
    public IAutoregressiveModel Model { get; }

    /// <summary>The tokenizer that decodes answers, if any.</summary>
    public BpeTokenizer? Tokenizer { get; }

    /// <summary>The ids that end an answer.</summary>
    public IReadOnlySet<int> EndOfSequenceIds => _eos;

    /// <summary><c>&lt;|im_end|&gt;</c> and <c>&lt;|endoftext|&gt;</c> of <paramref name="tokenizer"/>, those it has.</summary>
    public static HashSet<int> DefaultEndOfSequenceIds(BpeTokenizer? tokenizer)
    {
        var set = new HashSet<int>();
        if (tokenizer is null) return set;
        foreach (var t in new[] { "<|im_end|>", "<|endoftext|>" })
            if (tokenizer.TokenToId(t) is int id) set.Add(id);
        return set;
    }

    /// <summary>A plain Qwen2 language model over the KV cache (prompts must be text only).</summary>
    public static IAutoregressiveModel Wrap(Qwen2ForCausalLM model) => Wrap(model, DecodeStepMode.Auto);

    /// <summary>As <see cref="Wrap(Qwen2ForCausalLM)"/>, its decode steps run as <paramref name="mode"/> says.</summary>
    public static IAutoregressiveModel Wrap(Qwen2ForCausalLM model, DecodeStepMode mode)
    {
        ArgumentNullException.ThrowIfNull(model);
        KvCacheModel.CheckMode(mode);
        int vocab = model.Config.VocabSize;
        // Messages without "generate: " and without the prompt's name: the session's batch check adds both (MeasureText).
        int MeasureText(GenerationPrompt p)
        {
            if (p.ImageFeatures is not null || p.Ids.Contains(ChatMl.ImageTokenIndex))
                throw new ArgumentException("this is a text-only Qwen2 model; it cannot take an image");
            foreach (var id in p.Ids)
                if ((uint)id >= (uint)vocab) throw new ArgumentException($"token id {id} is outside the vocabulary [0, {vocab})");
            return p.Ids.Length;
        }
        return new KvCacheModel(model.Model, model.LmHead, p =>
        {
            if (p.ImageFeatures is not null || p.Ids.Contains(ChatMl.ImageTokenIndex))
                throw new ArgumentException("generate: this is a text-only Qwen2 model; it cannot take an image");
            foreach (var id in p.Ids)
                if ((uint)id >= (uint)vocab) throw new ArgumentException($"generate: token id {id} is outside the vocabulary [0, {vocab})");
            var ids = Tensor.FromArray(p.Ids.Select(i => (long)i).ToArray(), model.Model.EmbedTokens.Weight.Value.Device, 1, p.Ids.Length);
            return model.Model.EmbedTokens.Forward(ids);
        }, MeasureText, vocab) { Mode = mode };
    }

    /// <summary>
    /// <paramref name="model"/> with its sessions' greedy path (<see cref="IGreedyDecodingSession"/>) and top-k candidates
    /// path (<see cref="ICandidateDecodingSession"/>) hidden: a generator over it reads every row of logits back and picks
    /// every token on the host, as before greedy picks moved to the device — for side-by-side checks and timings of the paths.
    /// </summary>
    public static IAutoregressiveModel LogitsOnly(IAutoregressiveModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new LogitsOnlyModel(model);
    }

    private sealed class LogitsOnlyModel(IAutoregressiveModel inner) : IAutoregressiveModel
    {
        public int VocabSize => inner.VocabSize;

        public IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens) => new Session(inner.Start(prompts, maxNewTokens));

        private sealed class Session(IDecodingSession s) : IDecodingSession
        {
            public float[][] Prefill() => s.Prefill();
            public float[][] Step(int[] tokens) => s.Step(tokens);
            public void Dispose() => s.Dispose();
        }
    }

    /// <summary>A Parrot model over the KV cache: an image's features are projected, routed by the MoE and spliced in at the marker.</summary>
    public static IAutoregressiveModel Wrap(ParrotForCausalLM model) => Wrap(model, null);

    /// <summary>
    /// As <see cref="Wrap(ParrotForCausalLM)"/>; <paramref name="onRouting"/> hears the MoE's routing weights
    /// (softmax over the experts) of every prompt with an image as it is prefilled, in the order the prompts
    /// were given (not called for text-only prompts or while the MoE is off).
    /// </summary>
    public static IAutoregressiveModel Wrap(ParrotForCausalLM model, Action<double[]>? onRouting) => Wrap(model, onRouting, DecodeStepMode.Auto);

    /// <summary>
    /// As <see cref="Wrap(ParrotForCausalLM, Action{double[]})"/>, its decode steps run as <paramref name="mode"/> says
    /// (a decode step embeds its text ids through the stack's embedding either way, as the eager step does).
    /// </summary>
    public static IAutoregressiveModel Wrap(ParrotForCausalLM model, Action<double[]>? onRouting, DecodeStepMode mode)
    {
        ArgumentNullException.ThrowIfNull(model);
        KvCacheModel.CheckMode(mode);
        return new KvCacheModel(model.Model, model.LmHead, p =>
        {
            bool marker = p.Ids.Contains(ChatMl.ImageTokenIndex);
            if (marker != (p.ImageFeatures is not null))
                throw new ArgumentException(marker ? "generate: the prompt has an image marker but no image features" : "generate: image features were given but the prompt has no image marker");
            var features = p.ImageFeatures?.Unsqueeze(0);
            var (embeds, _, _, routing) = model.Assemble([new ParrotSample(p.Ids, null, features is null ? -1 : 0)], features, int.MaxValue);
            if (onRouting is not null && routing[0] is { } weights) onRouting(weights.Value.ToDoubleArray());
            return embeds;
        }, p => MeasureParrot(model.Config, p), model.Config.Text.VocabSize) { Mode = mode };
    }

    /// <summary>
    /// The positions a Parrot prompt takes, checked as <c>ParrotForCausalLM.Assemble</c> checks it but without running
    /// anything: T − 1 + the image's visual tokens (its feature rows [1+N, C], less the CLS row for "patch") with an image,
    /// T without. Messages name no prompt (the session's batch check does).
    /// </summary>
    internal static int MeasureParrot(ParrotConfig config, GenerationPrompt p)
    {
        int vocab = config.Text.VocabSize, markers = 0;
        for (int t = 0; t < p.Ids.Length; t++)
        {
            int id = p.Ids[t];
            if (id == ChatMl.ImageTokenIndex) markers++;
            else if ((uint)id >= (uint)vocab) throw new ArgumentException($"token id {id} (position {t}) is outside the vocabulary [0, {vocab})");
        }
        if (markers > 1) throw new ArgumentException($"the prompt has {markers} image markers; one image per prompt is supported");
        if ((markers == 1) != (p.ImageFeatures is not null))
            throw new ArgumentException(markers == 1 ? "the prompt has an image marker but no image features" : "image features were given but the prompt has no image marker");
        if (p.ImageFeatures is not { } f) return p.Ids.Length;
        if (f.Rank != 2 || f.Dim(1) != config.MmHiddenSize || f.Dim(0) < 1)
            throw new ArgumentException($"image features {f.ShapeString()} must be [1+N, {config.MmHiddenSize}]");
        int visual = config.MmVisionSelectFeature == "patch" ? f.Dim(0) - 1 : f.Dim(0);
        return p.Ids.Length - 1 + visual;
    }

    /// <summary>Generates the answer to one prompt.</summary>
    public GenerationResult Generate(GenerationPrompt prompt, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        return Generate([prompt], options)[0];
    }

    /// <summary>Generates answers to several prompts at once (one batch); result i answers prompt i.</summary>
    public IReadOnlyList<GenerationResult> Generate(IReadOnlyList<GenerationPrompt> prompts, GenerationOptions? options = null)
    {
        var results = new GenerationResult[prompts?.Count ?? 0];
        var tokens = new List<int>[results.Length];
        var text = new System.Text.StringBuilder[results.Length];
        for (int i = 0; i < results.Length; i++) { tokens[i] = new(); text[i] = new(); }
        foreach (var e in Stream(prompts!, options))
        {
            if (e.Token is int t) tokens[e.Row].Add(t);
            text[e.Row].Append(e.Text);
            if (e.Finished is FinishReason reason) results[e.Row] = new GenerationResult(tokens[e.Row].ToArray(), text[e.Row].ToString(), reason);
        }
        return results;
    }

    /// <summary>
    /// Generates answers to <paramref name="prompts"/> step by step: each step yields one event per prompt
    /// still going (its new token and the text it releases), and a prompt's last event says why it ended.
    /// Nothing is computed until enumeration starts; stopping the enumeration early frees the cache.
    /// </summary>
    public IEnumerable<GenerationEvent> Stream(IReadOnlyList<GenerationPrompt> prompts, GenerationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        options ??= new GenerationOptions();
        options.Validate();
        if (prompts.Count == 0) throw new ArgumentException("generate: no prompts");
        foreach (var p in prompts)
        {
            if (p?.Ids is null) throw new ArgumentException("generate: a prompt or its ids are null");
            if (p.Ids.Length == 0) throw new ArgumentException("generate: a prompt is empty");
        }
        if (options.StopStrings.Count > 0 && Tokenizer is null) throw new ArgumentException("generate: stop strings need a tokenizer");
        return Run(prompts, options);
    }

    /// <summary>
    /// What a new token <paramref name="id"/> (the <paramref name="generated"/>-th of its answer) does, in both
    /// decoders (this one and <see cref="ContinuousBatch"/>): an end-of-sequence id ends the answer (unless
    /// ignored); else the stop filter, if any, takes it and releases text or stops; else the answer ends at the
    /// maximum length. An answer that ends releases the filter's held-back text too.
    /// </summary>
    internal static (string Piece, FinishReason? Finished) AfterToken(int id, StopTextFilter? filter, IReadOnlySet<int> eos, GenerationOptions options, int generated)
    {
        FinishReason? finished = null;
        string piece = "";
        if (!options.IgnoreEos && eos.Contains(id)) finished = FinishReason.EndOfSequence;
        else if (filter is not null)
        {
            piece = filter.Push(id);
            if (filter.Stopped) finished = FinishReason.StopString;
        }
        if (finished is null && generated >= options.MaxNewTokens) finished = FinishReason.MaxTokens;
        if (finished is not null && filter is not null) piece += filter.Finish();
        return (piece, finished);
    }

    /// <summary>
    /// Whether <paramref name="options"/> make the pick a plain argmax of the logits, which a session may take on its
    /// device (<see cref="IGreedyDecodingSession"/>): greedy, no repetition penalty (top-k and top-p shape sampling only).
    /// </summary>
    internal static bool PicksPlainArgMax(GenerationOptions options) => !options.IsSampling && options.RepetitionPenalty == 1;

    private IEnumerable<GenerationEvent> Run(IReadOnlyList<GenerationPrompt> prompts, GenerationOptions options)
    {
        int b = prompts.Count, vocab = Model.VocabSize;
        var samplers = prompts.Select(p => new TokenSampler(options, vocab, p.Ids)).ToArray();
        var filters = prompts.Select(_ => Tokenizer is null ? null : new StopTextFilter(Tokenizer, options.StopStrings)).ToArray();
        var done = new bool[b];
        var last = new int[b];
        if (options.MaxNewTokens == 0)
        {
            for (int r = 0; r < b; r++) yield return new GenerationEvent(r, null, "", FinishReason.MaxTokens);
            yield break;
        }
        using var session = Model.Start(prompts, options.MaxNewTokens);
        // Greedy on the device where the session can: ids come back instead of logits.
        var greedy = PicksPlainArgMax(options) ? session as IGreedyDecodingSession : null;
        // Top-k sampling (greedy with a penalty) where the session's reads are copies: each row's top logits, and under a
        // penalty its seen ids' logits (each row's own seen ids, kept on the device), come back instead of the row.
        var plan = greedy is null ? TopKCandidates.Plan(options, vocab, CandidateMargin, TopPCandidates) : default;
        var candidates = plan.Asks && session is ICandidateDecodingSession { CandidatesPay: true } c ? c : null;
        var asks = candidates is null ? null
            : samplers.Select(s => CandidateAsk.For(plan.Count, s, options, EscalatedCandidates, TemperatureChunk)).ToArray();
        try
        {
            LogitsRow[]? rows = null;
            int[]? ids = null;
            if (greedy is not null) ids = CheckIds(greedy.PrefillGreedy(), b, vocab);
            else rows = candidates is not null ? candidates.PrefillCandidates(asks!) : Whole(session.Prefill());
            for (int step = 0; ; step++)
            {
                for (int r = 0; r < b; r++)
                {
                    if (done[r]) continue;
                    if (rows?[r] is { Escalated: true, Logits: null }) EscalatedRows++;
                    int id = ids is not null ? ids[r] : samplers[r].Next(rows![r]);
                    CheckPick(id, rows?[r], step + 1, r, b);
                    last[r] = id;
                    var (piece, finished) = AfterToken(id, filters[r], _eos, options, step + 1);
                    if (finished is not null) done[r] = true;
                    yield return new GenerationEvent(r, id, piece, finished);
                }
                if (done.All(d => d)) yield break;
                if (greedy is not null)
                {
                    // A finished row is fed what the device picked for it (its output is dropped either way), so the ids
                    // already on the device need no copy. One whose pick says no number (−1, never fed to an embedding)
                    // is fed its last token instead (one copy, only then).
                    for (int r = 0; r < b; r++) if (done[r] && ids![r] != NoNumber) last[r] = ids[r];
                    ids = CheckIds(greedy.StepGreedy(last), b, vocab);
                }
                else rows = candidates is not null ? candidates.StepCandidates(last, asks!) : Whole(session.Step(last));
            }
        }
        finally
        {
            foreach (var a in asks ?? []) a.Seen?.Dispose();
        }
    }

    /// <summary>Whole rows of logits as the sampler takes them.</summary>
    private static LogitsRow[] Whole(float[][] logits) => logits.Select(l => LogitsRow.Full(l)).ToArray();

    /// <summary>
    /// Candidates read beyond top-k (<see cref="TopKCandidates"/>): room for ties at the k-th value before a row is read
    /// whole. Tests set it small to exercise the path on a small vocabulary.
    /// </summary>
    internal int CandidateMargin { get; init; } = TopKCandidates.DefaultMargin;

    /// <summary>Candidates read for top-p without top-k (<see cref="TopKCandidates.TopPCount"/>; tests with small vocabularies set fewer).</summary>
    internal int TopPCandidates { get; init; } = TopKCandidates.TopPCount;

    /// <summary>Candidates asked once more for a row the first ones do not decide (<see cref="TopKCandidates.EscalatedCount"/>; 0: none; tests with small vocabularies set fewer).</summary>
    internal int EscalatedCandidates { get; init; } = TopKCandidates.EscalatedCount;

    /// <summary>Ids a chunk for plain temperature sampling (<see cref="TopKCandidates.ChunkSize"/>; tests with small vocabularies set fewer).</summary>
    internal int TemperatureChunk { get; init; } = TopKCandidates.ChunkSize;

    /// <summary>Rows sampled from escalated candidates so far (<see cref="CandidateAsk.Escalation"/>; the selftest counts them).</summary>
    internal int EscalatedRows { get; private set; }

    /// <summary>
    /// A greedy session's ids, checked as TokenSampler checks the logits it is given (<see cref="NoNumber"/> passes: the
    /// pick's check after reports it with its step).
    /// </summary>
    private static int[] CheckIds(int[] ids, int batch, int vocab)
    {
        if (ids is null || ids.Length != batch) throw new InvalidOperationException($"generate: the model returned {ids?.Length ?? 0} greedy ids for a batch of {batch}");
        foreach (int id in ids)
            if ((uint)id >= (uint)vocab && id != NoNumber) throw new InvalidOperationException($"generate: the model returned the greedy id {id}, outside the vocabulary [0, {vocab})");
        return ids;
    }

    /// <summary>
    /// The greedy id a session returns (<see cref="IGreedyDecodingSession"/>) for a row of logits that holds no number:
    /// every logit NaN or −∞ (a checkpoint with NaN weights gives such rows): the device pick's own answer
    /// (<see cref="global::Parrot.Nn.GreedyToken.NoNumber"/>, ArgReduceOp.ArgMaxNumber).
    /// </summary>
    internal const int NoNumber = (int)global::Parrot.Nn.GreedyToken.NoNumber;

    /// <summary>
    /// Refuses a pick made from a row of logits that holds no number (every logit NaN or −∞), which every path would
    /// otherwise turn into id 0 (the argmax's rule, NaN below every number) step after step, silently: a greedy id of
    /// <see cref="NoNumber"/> from the device, or a whole row read to the host (TokenSampler's) whose pick has a raw logit
    /// of NaN or −∞ — the argmax's pick is the row's largest, and a draw never takes a logit of probability 0, so that
    /// happens only where no logit is a number. One look at the picked logit: no pass over the row. A row whose
    /// candidates decided the pick (read instead of the row) holds a number (a NaN or a row without a finite maximum makes
    /// every check read it whole); rows with some NaN among numbers keep the sampler's rule (NaN below every number).
    /// <paramref name="step"/>: 1 for the token after the prompt.
    /// </summary>
    /// <exception cref="InvalidOperationException">The row held no number.</exception>
    internal static void CheckPick(int id, LogitsRow? row, int step, int prompt, int prompts)
    {
        if (id == NoNumber || row is { Logits: { } full } && (uint)id < (uint)full.Length && !(full[id] > float.NegativeInfinity))
            throw new InvalidOperationException($"generate: the logits of step {step}{(prompts > 1 ? $" (prompt {prompt})" : "")} are all NaN or −∞, so no token can be chosen"
                + " — the checkpoint or the inputs hold non-finite values (NaN/Inf)");
    }
}
