namespace Parrot.Parrot.Inference;

/// <summary>
/// Chooses the next token from logits (float64 arithmetic): repetition penalty, then greedy argmax, or
/// temperature, top-k, top-p and a draw from a seeded SplitMix64 stream (the same seed gives the same draws
/// on every machine). Top-k sampling without a repetition penalty may also pick from the row's largest logits alone
/// (<see cref="NextFromCandidates"/>, read from the device instead of the whole row) with the same result bit for bit.
/// </summary>
internal sealed class TokenSampler
{
    private readonly GenerationOptions _options;
    private readonly bool[] _seen;
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
            if ((uint)id < (uint)vocab) _seen[id] = true;
    }

    public int Next(float[] logits)
    {
        if (logits.Length != _seen.Length) throw new InvalidOperationException($"generate: the model returned {logits.Length} logits for a vocabulary of {_seen.Length}");
        int v = logits.Length;
        if (_work.Length < v) _work = new double[v];
        var l = _work.AsSpan(0, v);
        double penalty = _options.RepetitionPenalty;
        for (int i = 0; i < v; i++)
        {
            double x = logits[i];
            if (penalty != 1 && _seen[i]) x = x < 0 ? x * penalty : x / penalty;
            l[i] = x;
        }
        int id = _options.IsSampling ? Sample(l, [], out _) : ArgMax(l);
        _seen[id] = true;
        return id;
    }

    /// <summary>A row as a session returns it: the whole row of logits, or its largest ones.</summary>
    public int Next(LogitsRow row) => row.Logits is { } full ? Next(full) : NextFromCandidates(row.Ids!, row.Values!);

    /// <summary>
    /// <see cref="Next(float[])"/> of a row of which only <paramref name="ids"/>, <paramref name="values"/> are known (the
    /// largest logits, any order), where <see cref="CandidatesSuffice"/> says they decide the pick: the same id, the
    /// same draw taken from the stream. Throws where they do not (the caller reads the whole row then).
    /// </summary>
    public int NextFromCandidates(int[] ids, float[] values)
    {
        if (!CandidatesSuffice(_options, _seen.Length, ids, values))
            throw new InvalidOperationException("generate: the top-k candidates do not decide the sampled token (the whole row of logits is needed)");
        int n = ids.Length;
        // Index order: every loop below then visits the candidates in the order the whole row's loops would.
        if (_ids.Length < n) _ids = new int[n];
        if (_work.Length < n) _work = new double[n];
        var sortedIds = _ids.AsSpan(0, n);
        ids.CopyTo(sortedIds);
        if (_values.Length < n) _values = new float[n];
        var keys = _values.AsSpan(0, n);
        values.CopyTo(keys);
        sortedIds.Sort(keys);
        for (int i = 1; i < n; i++)
            if (sortedIds[i] == sortedIds[i - 1]) throw new InvalidOperationException($"generate: the top-k candidates name id {sortedIds[i]} twice");
        var l = _work.AsSpan(0, n);
        for (int i = 0; i < n; i++) l[i] = keys[i];
        int id = Sample(l, sortedIds, out bool needRow);
        if (needRow)
        {
            // A corner where the zeros of the ids left out take part (the nucleus's sort reached probability 0) or where
            // the arithmetic is not finite: the whole row rebuilt — every id left out is below the top-k threshold, so
            // −∞ after the cut either way — and sampled as the whole row. No draw was taken yet.
            var row = new float[_seen.Length];
            Array.Fill(row, float.NegativeInfinity);
            for (int i = 0; i < n; i++) row[ids[i]] = values[i];
            return Next(row);
        }
        _seen[id] = true;
        return id;
    }

    /// <summary>
    /// Whether the candidates <paramref name="ids"/>, <paramref name="values"/> (the largest logits of a row of
    /// <paramref name="vocab"/>, as <c>Tensor.TopK</c> gives them) decide <see cref="Next(float[])"/> under
    /// <paramref name="options"/>: sampling, top-k on, no repetition penalty; no candidate NaN (the sampler counts NaN as
    /// −∞, TopK ranks it first); and either the candidates are the whole row or the smallest of them, after the
    /// temperature, lies strictly below the k-th largest (so every id left out is cut by top-k, ties at the k-th value
    /// included, even where the division by the temperature merges two floats).
    /// </summary>
    public static bool CandidatesSuffice(GenerationOptions options, int vocab, ReadOnlySpan<int> ids, ReadOnlySpan<float> values)
    {
        if (ids.Length != values.Length) throw new InvalidOperationException($"generate: {ids.Length} candidate ids for {values.Length} values");
        foreach (int id in ids)
            if ((uint)id >= (uint)vocab) throw new InvalidOperationException($"generate: the candidate id {id} is outside the vocabulary [0, {vocab})");
        if (!options.IsSampling || options.RepetitionPenalty != 1 || options.TopK <= 0) return false;
        foreach (float x in values) if (float.IsNaN(x)) return false;
        if (ids.Length == vocab) return true;
        if (options.TopK >= vocab || ids.Length < options.TopK) return false;
        var sorted = values.ToArray();
        Array.Sort(sorted);
        double t = options.Temperature;
        double kth = sorted[^options.TopK] / t, least = sorted[0] / t;
        return least < kth;
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
    /// at <paramref name="ids"/> (ascending), every other id of the vocabulary cut by top-k (<see cref="CandidatesSuffice"/>).
    /// Each loop runs over the entries in index order, so a left-out id (probability exactly 0) would change no sum, no
    /// maximum and no draw. <paramref name="needRow"/>: the candidates alone cannot say (see <see cref="NextFromCandidates"/>);
    /// the stream is untouched then.
    /// </summary>
    private int Sample(Span<double> l, ReadOnlySpan<int> ids, out bool needRow)
    {
        int n = l.Length, v = _seen.Length;
        bool partial = !ids.IsEmpty && n < v;
        needRow = false;
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
        // No number above −∞ (the whole row's ArgMax: id 0), or +∞ (∞ − ∞: NaN sums that the left-out ids join): the row.
        if (partial && !double.IsFinite(max)) { needRow = true; return -1; }
        if (double.IsNegativeInfinity(max)) return Id(ids, ArgMax(l));
        double sum = 0;
        for (int i = 0; i < n; i++) { l[i] = Math.Exp(l[i] - max); sum += l[i]; }
        for (int i = 0; i < n; i++) l[i] /= sum;

        if (_options.TopP < 1 && !KeepNucleus(l, _options.TopP, v, partial)) { needRow = true; return -1; }

        double total = 0;
        for (int i = 0; i < n; i++) total += l[i];
        double u = NextDouble() * total;
        int last = -1;
        for (int i = 0; i < n; i++)
        {
            if (l[i] <= 0) continue;
            last = i;
            u -= l[i];
            if (u < 0) return Id(ids, i);
        }
        // Nothing kept any probability: a +∞ logit (∞ − ∞ made every probability NaN, which the nucleus drops).
        if (last < 0) throw new InvalidOperationException("generate: the logits leave no probability to sample from (a +∞ logit with top-p < 1)");
        return Id(ids, last); // rounding left u ≥ 0 after the last token with any mass
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
    private double NextDouble()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }
}
