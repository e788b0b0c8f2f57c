using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// Step-wise decoding where every sequence keeps its own KV cache (continuous batching): a prompt is
/// prefilled alone into a cache of its own; a decode step then runs any set of such sequences together,
/// one token each: the projections and the MLP see the whole batch as one matrix, while attention runs per
/// row over that row's own cache (no padding, so sequences may join and leave at any token boundary).
/// </summary>
internal sealed partial class KvCacheModel
{
    /// <summary>Decoder layers of the stack.</summary>
    internal int LayerCount => _stack.Layers.Count;

    /// <summary>
    /// Runs <paramref name="prompt"/> alone into a fresh cache; returns the logits of the next token.
    /// <paramref name="checkLength"/> gets the prompt length (image tokens included) before the model runs
    /// and returns how many new tokens the cache must make room for (or throws). <paramref name="cache"/>
    /// belongs to the caller; <paramref name="name"/> names the prompt in errors.
    /// </summary>
    internal float[] PrefillRow(GenerationPrompt prompt, Func<int, int> checkLength, out KvCache cache, out int length, string name = "the prompt") =>
        PrefillRow(prompt, checkLength, out cache, out length, name, logits => logits.ToFloatArray());

    /// <summary>
    /// As <see cref="PrefillRow(GenerationPrompt, Func{int, int}, out KvCache, out int, string)"/>, but returns the greedy
    /// token after the prompt, taken on the device (<see cref="global::Parrot.Nn.GreedyToken"/>): int64 [1] on the
    /// model's device, the caller's to dispose; nothing is read back. <see cref="Generator.NoNumber"/> (−1) where the
    /// logits hold no number: the caller reads it and checks it before anything embeds it.
    /// </summary>
    internal Tensor PrefillRowGreedy(GenerationPrompt prompt, Func<int, int> checkLength, out KvCache cache, out int length, string name = "the prompt") =>
        PrefillRow(prompt, checkLength, out cache, out length, name, logits => TensorScope.Detach(global::Parrot.Nn.GreedyToken.Pick(logits.Reshape(1, VocabSize))));

    /// <summary>
    /// As <see cref="PrefillRow(GenerationPrompt, Func{int, int}, out KvCache, out int, string)"/>, but returns the
    /// candidates after the prompt that <paramref name="ask"/> asks for, or the whole row where its check says no
    /// (<see cref="TopKCandidates.Read"/>).
    /// </summary>
    internal LogitsRow PrefillRowCandidates(GenerationPrompt prompt, Func<int, int> checkLength, out KvCache cache, out int length, string name, CandidateAsk ask) =>
        PrefillRow(prompt, checkLength, out cache, out length, name, logits => TopKCandidates.Read(logits.Reshape(1, VocabSize), [ask])[0]);

    /// <summary>The prefill of one prompt; <paramref name="take"/> turns its last logits [1, 1, vocab] (on the device, inside the prefill's scope) into the result.</summary>
    private T PrefillRow<T>(GenerationPrompt prompt, Func<int, int> checkLength, out KvCache cache, out int length, string name, Func<Tensor, T> take)
    {
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        var embeds = _embed(prompt);
        length = embeds.Shape[1];
        if (length == 0) throw new ArgumentException($"generate: {name} is empty");
        int maxNew = checkLength(length);
        var c = new KvCache(LayerCount, length + Math.Max(maxNew, 1));
        try
        {
            var hidden = _stack.Forward(embeds, cache: c);
            var result = take(_head(hidden.Narrow(1, length - 1, 1)).Value);
            cache = c;
            return result;
        }
        catch
        {
            c.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Appends <paramref name="tokens"/>[r] to the sequence in <paramref name="caches"/>[r], all rows in one
    /// pass; returns, per row, the logits [vocab] of the token after it. One sequence alone takes the plain
    /// cached decode step, exactly what a single-prompt generation has always run.
    /// </summary>
    internal float[][] StepRows(IReadOnlyList<KvCache> caches, int[] tokens) => StepRows(caches, tokens, logits =>
    {
        var flat = logits.ToFloatArray();
        int vocab = flat.Length / tokens.Length;
        var rows = new float[tokens.Length][];
        for (int r = 0; r < rows.Length; r++) rows[r] = flat.AsSpan(r * vocab, vocab).ToArray();
        return rows;
    });

    /// <summary>
    /// As <see cref="StepRows(IReadOnlyList{KvCache}, int[])"/>, but returns each row's greedy token, taken on the device
    /// (<see cref="global::Parrot.Nn.GreedyToken"/>): one read of B ids instead of B rows of logits
    /// (<see cref="Generator.NoNumber"/> for a row that holds no number).
    /// </summary>
    internal int[] StepRowsGreedy(IReadOnlyList<KvCache> caches, int[] tokens) =>
        StepRows(caches, tokens, logits => ReadIds(global::Parrot.Nn.GreedyToken.Pick(logits.Reshape(tokens.Length, VocabSize))));

    /// <summary>
    /// As <see cref="StepRows(IReadOnlyList{KvCache}, int[])"/>, but returns each row's candidates as
    /// <paramref name="asks"/>[r] asks, or its whole row where its check says no (<see cref="TopKCandidates.Read"/>).
    /// </summary>
    internal LogitsRow[] StepRowsCandidates(IReadOnlyList<KvCache> caches, int[] tokens, CandidateAsk[] asks) =>
        StepRows(caches, tokens, logits => TopKCandidates.Read(logits.Reshape(tokens.Length, VocabSize), asks));

    /// <summary>
    /// As <see cref="StepRows(IReadOnlyList{KvCache}, int[])"/> for a batch that mixes both picks (the continuous batch):
    /// a row where <paramref name="greedy"/> is set gets its greedy token taken on the device (Ids[r]; its Logits[r] is
    /// null), any other row its logits (Logits[r]; Ids[r] = −1), for the host to sample. One read of the B ids when
    /// some row is greedy; one read of only the sampling rows' logits when some row samples.
    /// </summary>
    internal (int[] Ids, float[]?[] Logits) StepRows(IReadOnlyList<KvCache> caches, int[] tokens, bool[] greedy)
    {
        var (ids, rows) = StepRows(caches, tokens, greedy, new CandidateAsk?[tokens.Length]);
        return (ids, rows.Select(r => r.Logits).ToArray());
    }

    /// <summary>
    /// As <see cref="StepRows(IReadOnlyList{KvCache}, int[], bool[])"/>, but a sampling row where <paramref name="asks"/>[r]
    /// is set gets its candidates, or its whole logits where its check says they do not decide it
    /// (<see cref="TopKCandidates.ReadRows"/>); a row with no ask its whole logits. Rows[r] of a greedy row is empty (default).
    /// </summary>
    internal (int[] Ids, LogitsRow[] Rows) StepRows(IReadOnlyList<KvCache> caches, int[] tokens, bool[] greedy, CandidateAsk?[] asks)
    {
        CheckPicks(tokens.Length, greedy, asks);
        return StepRows(caches, tokens, logits => SplitPicks(logits.Reshape(tokens.Length, VocabSize), greedy, asks));
    }

    /// <summary>Checks what a mixed step is asked to read of its <paramref name="b"/> rows (a greedy row asks no candidates).</summary>
    internal static void CheckPicks(int b, bool[] greedy, CandidateAsk?[] asks)
    {
        if (greedy.Length != b || asks.Length != b)
            throw new ArgumentException($"generate: {greedy.Length} greedy flags, {asks.Length} candidate asks for {b} rows");
        for (int r = 0; r < b; r++)
            if (greedy[r] && asks[r] is { } a) throw new ArgumentException($"generate: row {r} is greedy and asks for {a.Count} candidates");
    }

    /// <summary>Rows [B, vocab] on the device → the greedy rows' ids and the other rows as the host samples from them (see the overloads above).</summary>
    private static (int[] Ids, LogitsRow[] Rows) SplitPicks(Tensor logits, bool[] greedy, CandidateAsk?[] asks)
    {
        int b = greedy.Length;
        var ids = new int[b];
        var rows = new LogitsRow[b];
        Array.Fill(ids, -1);
        if (greedy.Contains(true))
        {
            // Every row is picked (a few elementwise passes, less work than choosing rows); the sampling rows' ids are dropped.
            var picked = ReadIds(global::Parrot.Nn.GreedyToken.Pick(logits));
            for (int r = 0; r < b; r++) if (greedy[r]) ids[r] = picked[r];
        }
        var sampling = Enumerable.Range(0, b).Where(r => !greedy[r]).ToArray();
        if (sampling.Length > 0)
        {
            var read = TopKCandidates.ReadRows(logits, sampling, sampling.Select(r => asks[r]).ToArray());
            for (int i = 0; i < sampling.Length; i++) rows[sampling[i]] = read[i];
        }
        return (ids, rows);
    }

    /// <summary>
    /// The embedding rows [B, 1, hidden] of ids [B, 1] that the host has already checked (<see cref="StepRows{T}"/>): the
    /// embedding's own check on the device would queue a verdict that the step's read then fetches, a second device→host
    /// copy every step. The same row copy as <see cref="Tensor.Embedding"/> (as the static step's).
    /// </summary>
    private Variable EmbedChecked(Tensor ids)
    {
        var weight = _stack.EmbedTokens.Weight.Value;
        int b = ids.Dim(0);
        var rows = Tensor.Empty([b, weight.Dim(1)], weight.DType, weight.Device);
        weight.Backend.IndexSelect(weight, 0, ids.Reshape(b), rows);
        return new Variable(rows.ViewAs(b, 1, weight.Dim(1)));
    }

    /// <summary>Ids on the device (int64) → the host: one read.</summary>
    internal static int[] ReadIds(Tensor ids) => ids.ToLongArray().Select(x => (int)x).ToArray();

    /// <summary>One decode step of every row; <paramref name="take"/> turns the logits [B, 1, vocab] (on the device, inside the step's scope) into the result.</summary>
    private T StepRows<T>(IReadOnlyList<KvCache> caches, int[] tokens, Func<Tensor, T> take)
    {
        int b = tokens.Length;
        if (caches.Count != b || b == 0) throw new ArgumentException($"generate: {tokens.Length} tokens for {caches.Count} sequences");
        foreach (var id in tokens)
            if ((uint)id >= (uint)VocabSize) throw new ArgumentException($"generate: token id {id} is outside the vocabulary [0, {VocabSize})");
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        var device = _stack.EmbedTokens.Weight.Value.Device;
        Variable h;
        if (b == 1)
        {
            // Alone: the plain cached decode step (its RoPE rows are views of the model's tables at the cache length).
            h = _stack.Forward(EmbedChecked(Tensor.FromArray(new long[] { tokens[0] }, device, 1, 1)), cache: caches[0]);
        }
        else
        {
            // The ids, then each row's position (its cache length): one copy to the device for both.
            var packed = new long[2 * b];
            int limit = 0;
            for (int r = 0; r < b; r++)
            {
                packed[r] = tokens[r];
                packed[b + r] = caches[r].Length(0);
                limit = Math.Max(limit, caches[r].Length(0) + 1);
            }
            var both = Tensor.FromArray(packed, device, 2, b);
            var embeds = EmbedChecked(both.Narrow(0, 0, 1).Reshape(b, 1));
            // The positions pick their rows of the model's cached RoPE tables on the device (below the limit: no read-back).
            h = _stack.Forward(embeds, positions: both.Narrow(0, 1, 1).Reshape(b, 1), cache: new KvCacheRows(caches), positionLimit: limit);
        }
        return take(_head(h).Value);
    }
}
