namespace Parrot.Parrot.Inference;

/// <summary>
/// Chooses the next token from logits (float64 arithmetic): repetition penalty, then greedy argmax, or
/// temperature, top-k, top-p and a draw from a seeded SplitMix64 stream (the same seed gives the same draws
/// on every machine). Top-k sampling, and greedy decoding with a repetition penalty, may also pick from the row's largest
/// logits together with those of the ids seen so far (<see cref="NextFromCandidates(int[], float[], int)"/>, read from
/// the device instead of the whole row) with the same result bit for bit; top-p without top-k from them and the device's
/// row sum where a margin check proves the pick (TokenSampler.TopP.cs); plain temperature sampling, penalised or not, from
/// the device's chunk sums and one chunk's logits (TokenSampler.Temperature.cs).
/// </summary>
internal sealed partial class TokenSampler
{
    private readonly GenerationOptions _options;
    private readonly bool[] _seen;
    /// <summary>The ids of <see cref="_seen"/> in the order they were first seen (the device's copy grows by its tail: <see cref="DeviceSeenIds"/>).</summary>
    private readonly List<int> _seenOrder = new();
    private ulong _state;
    private double[] _work = [];
    private int[] _order = [];
    private double[] _keys = [];
    private bool[] _inside = [];
    private int[] _ids = [];
    private float[] _values = [];

    public TokenSampler(GenerationOptions options, int vocab, IEnumerable<int> prompt)
    {
        _options = options;
        _seen = new bool[vocab];
        _state = options.Seed;
        foreach (int id in prompt)
            if ((uint)id < (uint)vocab) See(id);
    }

    /// <summary>The ids seen so far (the prompt's in the vocabulary, then each pick), each once, in the order first seen.</summary>
    internal IReadOnlyList<int> SeenIds => _seenOrder;

    /// <summary>Whether a repetition penalty rescales the seen ids' logits (the candidates must carry them then).</summary>
    internal bool Penalises => _options.RepetitionPenalty != 1;

    private void See(int id)
    {
        if (_seen[id]) return;
        _seen[id] = true;
        _seenOrder.Add(id);
    }

    /// <summary>A raw logit after the repetition penalty, as every path applies it (Hugging Face's rule, in double).</summary>
    internal double Penalised(float logit, int id)
    {
        double x = logit, penalty = _options.RepetitionPenalty;
        if (penalty != 1 && _seen[id]) x = x < 0 ? x * penalty : x / penalty;
        return x;
    }

    public int Next(float[] logits)
    {
        if (logits.Length != _seen.Length) throw new InvalidOperationException($"generate: the model returned {logits.Length} logits for a vocabulary of {_seen.Length}");
        int v = logits.Length;
        if (_work.Length < v) _work = new double[v];
        var l = _work.AsSpan(0, v);
        for (int i = 0; i < v; i++) l[i] = Penalised(logits[i], i);
        int id = _options.IsSampling ? Sample(l, [], out _) : ArgMax(l);
        See(id);
        return id;
    }

    /// <summary>A row as a session returns it: the whole row of logits, or its candidates.</summary>
    public int Next(LogitsRow row) =>
        row.Logits is { } full ? Next(full)
        : row.Chunk is { } chunk ? NextFromChunk(chunk)
        : row.Sum is { } sum ? NextFromCandidates(row.Ids!, row.Values!, row.Top, sum)
        : NextFromCandidates(row.Ids!, row.Values!, row.Top);

    /// <summary>Candidates that are all a row's top logits (no seen ids gathered): <see cref="NextFromCandidates(int[], float[], int)"/>.</summary>
    public int NextFromCandidates(int[] ids, float[] values) => NextFromCandidates(ids, values, ids.Length);

    /// <summary>
    /// <see cref="Next(float[])"/> of a row of which only <paramref name="ids"/>, <paramref name="values"/> are known: its
    /// first <paramref name="top"/> entries the row's largest raw logits (as <c>Tensor.TopK</c> gives them), the rest the
    /// raw logits of seen ids not among them (<see cref="TopKCandidates"/>), where <see cref="CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int)"/>
    /// says they decide the pick: the same id, the same draw taken from the stream. Throws where they do not (the caller
    /// reads the whole row then).
    /// </summary>
    public int NextFromCandidates(int[] ids, float[] values, int top)
    {
        if (!CandidatesSuffice(ids, values, top))
            throw new InvalidOperationException("generate: the candidates do not decide the token (the whole row of logits is needed)");
        int n = ids.Length;
        // Index order: every loop below then visits the candidates in the order the whole row's loops would.
        if (_ids.Length < n) _ids = new int[n];
        if (_work.Length < n) _work = new double[n];
        var sortedIds = _ids.AsSpan(0, n);
        ids.CopyTo(sortedIds);
        if (_values.Length < n) _values = new float[n];
        var keys = _values.AsSpan(0, n);
        values.CopyTo(keys);
        sortedIds.Sort(keys); // distinct: the check refused duplicates
        var l = _work.AsSpan(0, n);
        // The penalty on the candidates only: every id left out is unseen (the check counted the seen ones in).
        for (int i = 0; i < n; i++) l[i] = Penalised(keys[i], sortedIds[i]);
        bool needRow = false;
        // Greedy: the first largest in id order, as the whole row's ArgMax (no id left out reaches the maximum).
        int id = _options.IsSampling ? Sample(l, sortedIds, out needRow) : sortedIds[ArgMax(l)];
        if (needRow)
        {
            // A corner where the zeros of the ids left out take part (the nucleus's sort reached probability 0) or where
            // the arithmetic is not finite: the whole row rebuilt from the raw candidates — every id left out is below
            // the top-k threshold, so −∞ after the cut either way, and unseen, so the penalty leaves −∞ — and sampled as
            // the whole row. No draw was taken yet.
            var row = new float[_seen.Length];
            Array.Fill(row, float.NegativeInfinity);
            for (int i = 0; i < n; i++) row[ids[i]] = values[i];
            return Next(row);
        }
        See(id);
        return id;
    }

    /// <summary>
    /// Whether the candidates <paramref name="ids"/>, <paramref name="values"/> (the largest logits of a row of
    /// <paramref name="vocab"/>, as <c>Tensor.TopK</c> gives them, no seen ids gathered) decide <see cref="Next(float[])"/>
    /// under <paramref name="options"/>: the rule of <see cref="CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int)"/>
    /// for a sampler that knows no seen ids, so never with a repetition penalty.
    /// </summary>
    public static bool CandidatesSuffice(GenerationOptions options, int vocab, ReadOnlySpan<int> ids, ReadOnlySpan<float> values) =>
        Suffice(options, vocab, null, 0, ids, values, ids.Length);

    /// <summary>
    /// Whether the candidates decide this sampler's next pick: <paramref name="ids"/>, <paramref name="values"/> (raw
    /// logits), the first <paramref name="top"/> a row's largest (<c>Tensor.TopK</c>: every id outside them is ≤ their
    /// smallest, m), the rest the logits of seen ids not among them. Every seen id must be there (a penalty: throws if one
    /// is missing), so every id left out is unseen, its value unchanged by the penalty and ≤ m. Then:
    /// <list type="bullet">
    /// <item>no candidate NaN (the sampler counts NaN as −∞, TopK ranks it first: none among them, none in the row);</item>
    /// <item>greedy: the largest candidate after the penalty strictly above m, so no id left out reaches the maximum and
    /// the lowest-id rule among the candidates (sorted by id) is the whole row's;</item>
    /// <item>sampling with top-k on (top-p alone needs the whole row's sum: the overload with the device's <see cref="RowSum"/>): the k-th largest candidate after the penalty
    /// and the temperature strictly above m / T, so every id left out (≤ m / T after the division, which is monotonic) is
    /// cut by top-k as on the whole row, ties at the k-th value included, even where the division merges two floats; the
    /// k largest of the row are then candidates, so the row's k-th value is theirs;</item>
    /// </list>
    /// or the candidates are the whole row. A penalty below 1 raises the seen values, above 1 lowers them: neither touches
    /// an id left out, so the rule holds either way.
    /// </summary>
    public bool CandidatesSuffice(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, int top) =>
        Suffice(_options, _seen.Length, _seen, _seenOrder.Count, ids, values, top);

    /// <summary>The rule of the overloads above; <paramref name="seen"/> null: no seen ids known (a penalty is refused).</summary>
    private static bool Suffice(GenerationOptions options, int vocab, bool[]? seen, int seenCount, ReadOnlySpan<int> ids, ReadOnlySpan<float> values, int top)
    {
        int n = ids.Length;
        if (n != values.Length) throw new InvalidOperationException($"generate: {n} candidate ids for {values.Length} values");
        if (top < 1 || top > n) throw new InvalidOperationException($"generate: {top} top candidates of {n}");
        foreach (int id in ids)
            if ((uint)id >= (uint)vocab) throw new InvalidOperationException($"generate: the candidate id {id} is outside the vocabulary [0, {vocab})");
        double penalty = options.RepetitionPenalty;
        if (options.IsSampling && options.TopK <= 0) return false;
        if (penalty != 1 && seen is null) return false;
        foreach (float x in values) if (float.IsNaN(x)) return false;
        var p = new double[n];
        int seenHere = 0;
        for (int i = 0; i < n; i++)
        {
            p[i] = values[i];
            if (penalty != 1 && seen![ids[i]])
            {
                seenHere++;
                p[i] = p[i] < 0 ? p[i] * penalty : p[i] / penalty;
            }
        }
        // Distinct ids (a seen one named twice would hide a missing one below; the sampler refuses duplicates too).
        var sorted = ids.ToArray();
        Array.Sort(sorted);
        for (int i = 1; i < n; i++)
            if (sorted[i] == sorted[i - 1]) throw new InvalidOperationException($"generate: the candidates name id {sorted[i]} twice");
        if (penalty != 1 && seenHere != seenCount)
            throw new InvalidOperationException($"generate: the candidates carry {seenHere} of the {seenCount} seen ids (the repetition penalty needs every seen id's logit)");
        if (n == vocab) return true;
        double m = double.PositiveInfinity;
        for (int i = 0; i < top; i++) m = Math.Min(m, values[i]);
        if (!options.IsSampling)
        {
            double max = double.NegativeInfinity;
            foreach (double x in p) max = Math.Max(max, x);
            return max > m;
        }
        if (options.TopK >= vocab || n < options.TopK) return false;
        double t = options.Temperature;
        for (int i = 0; i < n; i++) p[i] /= t;
        Array.Sort(p);
        return p[^options.TopK] > m / t;
    }

    /// <summary>The largest logit's id, the lowest id on a tie; NaN counts as smaller than everything.</summary>
    internal static int ArgMax(ReadOnlySpan<double> l)
    {
        int best = 0;
        for (int i = 1; i < l.Length; i++)
            if (l[i] > l[best] || double.IsNaN(l[best]) && !double.IsNaN(l[i])) best = i;
        return best;
    }

    /// <summary>
    /// The sampled id from <paramref name="l"/>: the whole row (<paramref name="ids"/> empty) or the candidates, values
    /// at <paramref name="ids"/> (ascending), every other id of the vocabulary cut by top-k (<see cref="CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int)"/>).
    /// Each loop runs over the entries in index order, so a left-out id (probability exactly 0) would change no sum, no
    /// maximum and no draw. <paramref name="needRow"/>: the candidates alone cannot say (see <see cref="NextFromCandidates(int[], float[], int)"/>);
    /// the stream is untouched then.
    /// </summary>
    private int Sample(Span<double> l, ReadOnlySpan<int> ids, out bool needRow)
    {
        if (!Distribute(l, ids, out needRow, out int noDraw)) return needRow ? -1 : Id(ids, noDraw);
        return Id(ids, Draw(l, NextDouble()));
    }

    /// <summary>
    /// The first part of <see cref="Sample"/>: turns the penalised logits <paramref name="l"/> into the probabilities the
    /// draw walks (temperature, top-k, softmax, top-p; 0 outside the cut), in place. False where no draw is taken:
    /// <paramref name="needRow"/> (the candidates alone cannot say), or every value −∞ (<paramref name="noDraw"/>: the
    /// index greedy takes then).
    /// </summary>
    private bool Distribute(Span<double> l, ReadOnlySpan<int> ids, out bool needRow, out int noDraw)
    {
        int n = l.Length, v = _seen.Length;
        bool partial = !ids.IsEmpty && n < v;
        needRow = false;
        noDraw = -1;
        double t = _options.Temperature;
        for (int i = 0; i < n; i++) l[i] = double.IsNaN(l[i]) ? double.NegativeInfinity : l[i] / t;

        if (_options.TopK > 0 && _options.TopK < v)
        {
            // The k-th largest value; everything below it goes (ties at the boundary stay, as in Hugging Face).
            double threshold = KthLargest(l, _options.TopK);
            for (int i = 0; i < n; i++) if (l[i] < threshold) l[i] = double.NegativeInfinity;
        }

        double max = double.NegativeInfinity;
        for (int i = 0; i < n; i++) if (l[i] > max) max = l[i];
        // No number above −∞ (the whole row's ArgMax: id 0), or +∞ (the whole row refuses it below): the row.
        if (partial && !double.IsFinite(max)) { needRow = true; return false; }
        if (double.IsNegativeInfinity(max)) { noDraw = ArgMax(l); return false; }
        // A +∞ logit leaves no distribution (∞ − ∞ makes every probability NaN; the draw would run past them all to the
        // last id): refused, as PyTorch's multinomial refuses such probabilities. Greedy takes it as the largest logit.
        if (double.IsPositiveInfinity(max))
            throw new InvalidOperationException("generate: the logits leave no probability to sample from (a +∞ logit) — the checkpoint or the inputs hold non-finite values");
        double sum = 0;
        for (int i = 0; i < n; i++) { l[i] = Math.Exp(l[i] - max); sum += l[i]; }
        for (int i = 0; i < n; i++) l[i] /= sum;

        if (_options.TopP < 1 && !KeepNucleus(l, _options.TopP, v, partial)) { needRow = true; return false; }
        return true;
    }

    /// <summary>
    /// The index the draw <paramref name="r"/> ∈ [0, 1) picks from the probabilities <paramref name="p"/> (as
    /// <see cref="Distribute"/> leaves them): the first entry, in index order, where the running sum of the entries with
    /// mass passes r × their total. So entry i is picked where r × total lies in [its cumulative before, its cumulative
    /// through it): the boundary between two entries adjacent in that order is the cumulative through the first.
    /// </summary>
    internal static int Draw(ReadOnlySpan<double> p, double r)
    {
        int n = p.Length;
        double total = 0;
        for (int i = 0; i < n; i++) total += p[i];
        double u = r * total;
        int last = -1;
        for (int i = 0; i < n; i++)
        {
            if (p[i] <= 0) continue;
            last = i;
            u -= p[i];
            if (u < 0) return i;
        }
        if (last < 0) throw new InvalidOperationException("generate: the logits leave no probability to sample from");
        return last; // rounding left u ≥ 0 after the last token with any mass
    }

    /// <summary>
    /// The probabilities a sampler with <paramref name="options"/> (sampling) draws from, given a whole row of
    /// <paramref name="penalised"/> logits (after the repetition penalty, as <see cref="Penalised"/> gives them): the
    /// sampler's own arithmetic (<see cref="Distribute"/>), for checks that judge a draw (selftest's near ties). Null
    /// where the row takes no draw (every value −∞).
    /// </summary>
    internal static double[]? Distribution(GenerationOptions options, ReadOnlySpan<double> penalised)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!options.IsSampling) throw new ArgumentException("sampler distribution: the options do not sample (temperature 0)", nameof(options));
        var l = penalised.ToArray();
        // No prompt: the penalty is already in the values; the sampler's buffers are its own.
        var sampler = new TokenSampler(options, l.Length, []);
        return sampler.Distribute(l, [], out _, out _) ? l : null;
    }

    /// <summary>
    /// The draw r ∈ [0, 1) a sampler seeded with <paramref name="seed"/> takes for its <paramref name="index"/>-th draw
    /// (0-based). SplitMix64 is a counter: its state after n draws is the seed plus n times its increment, so the n-th draw
    /// needs no replay of the ones before — for a sequence's token n where every earlier token took one draw (each
    /// sampled pick does, but a row with every logit −∞, which takes none).
    /// </summary>
    internal static double DrawAt(ulong seed, int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        return Mix(seed + (ulong)(index + 1) * Golden);
    }

    /// <summary>The vocabulary id of entry <paramref name="i"/>: itself for the whole row.</summary>
    private static int Id(ReadOnlySpan<int> ids, int i) => ids.IsEmpty ? i : ids[i];

    /// <summary>The k-th largest of <paramref name="values"/> (NaN-free), with a min-heap of the k largest seen: O(V log k).</summary>
    private double KthLargest(ReadOnlySpan<double> values, int k)
    {
        if (_keys.Length < k) _keys = new double[k];
        var heap = _keys;
        for (int i = 0; i < k; i++)
        {
            // Sift up.
            int c = i;
            heap[c] = values[i];
            while (c > 0 && heap[(c - 1) / 2] > heap[c]) { (heap[c], heap[(c - 1) / 2]) = (heap[(c - 1) / 2], heap[c]); c = (c - 1) / 2; }
        }
        for (int i = k; i < values.Length; i++)
        {
            if (!(values[i] > heap[0])) continue;
            heap[0] = values[i];
            // Sift down.
            int c = 0;
            while (true)
            {
                int l = 2 * c + 1, r = l + 1, m = c;
                if (l < k && heap[l] < heap[m]) m = l;
                if (r < k && heap[r] < heap[m]) m = r;
                if (m == c) break;
                (heap[c], heap[m]) = (heap[m], heap[c]);
                c = m;
            }
        }
        return heap[0];
    }

    /// <summary>
    /// Zeroes every probability outside the nucleus: the shortest run of the most likely tokens whose mass
    /// reaches <paramref name="topP"/> (at least one token). Only tokens at or above a threshold whose set already
    /// holds that mass are sorted (that set is a prefix of the full order, so the nucleus lies inside it): few for
    /// a peaked distribution, all of them in the worst case. <paramref name="vocab"/>: the row's length (the first
    /// threshold's 1/V), of which <paramref name="probs"/> may hold only the candidates (<paramref name="partial"/>): the
    /// ids left out have probability 0 and stay out of every set while the threshold is above 0; at 0 they would join the
    /// sort (whose order among equal keys depends on all its entries), so that returns false with nothing changed.
    /// </summary>
    private bool KeepNucleus(Span<double> probs, double topP, int vocab, bool partial)
    {
        int v = probs.Length;
        // Enumerable.Max's rule (the former probs.Max()): NaN only when every entry is NaN.
        double max = probs[0];
        int first = 1;
        while (double.IsNaN(max) && first < v) max = probs[first++];
        for (int i = first; i < v; i++) if (probs[i] > max) max = probs[i];
        double threshold = Math.Min(max, 1.0 / vocab);
        int count;
        while (true)
        {
            double mass = 0;
            count = 0;
            for (int i = 0; i < v; i++) if (probs[i] >= threshold) { mass += probs[i]; count++; }
            if (mass >= topP || threshold == 0) break;
            threshold = threshold > 1e-300 ? threshold / 64 : 0;
        }
        if (partial && threshold == 0) return false;
        if (_order.Length < count) _order = new int[count];
        if (_keys.Length < count) _keys = new double[count];
        int n = 0;
        for (int i = 0; i < v; i++)
            if (probs[i] >= threshold) { _order[n] = i; _keys[n] = -probs[i]; n++; }
        // Most likely first (negated keys; among exactly equal probabilities the sort's own deterministic order, which
        // depends on the keys alone: the candidates' entries sort as the whole row's).
        Array.Sort(_keys, _order, 0, n);
        double cumulative = 0;
        int keep = 0;
        while (keep < n)
        {
            cumulative += probs[_order[keep]];
            keep++;
            if (cumulative >= topP) break;
        }
        if (_inside.Length < v) _inside = new bool[v];
        Array.Clear(_inside, 0, v);
        for (int i = 0; i < keep; i++) _inside[_order[i]] = true;
        for (int i = 0; i < v; i++) if (!_inside[i]) probs[i] = 0;
        return true;
    }

    /// <summary>A uniform double in [0, 1) from SplitMix64.</summary>
    private double NextDouble() => Mix(_state += Golden);

    /// <summary>SplitMix64's increment.</summary>
    private const ulong Golden = 0x9E3779B97F4A7C15UL;

    /// <summary>SplitMix64's output for the state <paramref name="z"/>, as a double in [0, 1).</summary>
    private static double Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }
}
