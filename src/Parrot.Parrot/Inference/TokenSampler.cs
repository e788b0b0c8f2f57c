namespace Parrot.Parrot.Inference;

/// <summary>
/// Chooses the next token from logits (float64 arithmetic): repetition penalty, then greedy argmax, or
/// temperature, top-k, top-p and a draw from a seeded SplitMix64 stream (the same seed gives the same draws
/// on every machine).
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
        if (_work.Length != v) _work = new double[v];
        var l = _work;
        double penalty = _options.RepetitionPenalty;
        for (int i = 0; i < v; i++)
        {
            double x = logits[i];
            if (penalty != 1 && _seen[i]) x = x < 0 ? x * penalty : x / penalty;
            l[i] = x;
        }
        int id = _options.IsSampling ? Sample(l) : ArgMax(l);
        _seen[id] = true;
        return id;
    }

    /// <summary>The largest logit's id, the lowest id on a tie; NaN counts as smaller than everything.</summary>
    internal static int ArgMax(ReadOnlySpan<double> l)
    {
        int best = 0;
        for (int i = 1; i < l.Length; i++)
            if (l[i] > l[best] || double.IsNaN(l[best]) && !double.IsNaN(l[i])) best = i;
        return best;
    }

    private int Sample(double[] l)
    {
        int v = l.Length;
        double t = _options.Temperature;
        for (int i = 0; i < v; i++) l[i] = double.IsNaN(l[i]) ? double.NegativeInfinity : l[i] / t;

        if (_options.TopK > 0 && _options.TopK < v)
        {
            // The k-th largest value; everything below it goes (ties at the boundary stay, as in Hugging Face).
            double threshold = KthLargest(l, _options.TopK);
            for (int i = 0; i < v; i++) if (l[i] < threshold) l[i] = double.NegativeInfinity;
        }

        double max = double.NegativeInfinity;
        for (int i = 0; i < v; i++) if (l[i] > max) max = l[i];
        if (double.IsNegativeInfinity(max)) return ArgMax(l);
        double sum = 0;
        for (int i = 0; i < v; i++) { l[i] = Math.Exp(l[i] - max); sum += l[i]; }
        for (int i = 0; i < v; i++) l[i] /= sum;

        if (_options.TopP < 1) KeepNucleus(l, _options.TopP);

        double total = 0;
        for (int i = 0; i < v; i++) total += l[i];
        double u = NextDouble() * total;
        int last = -1;
        for (int i = 0; i < v; i++)
        {
            if (l[i] <= 0) continue;
            last = i;
            u -= l[i];
            if (u < 0) return i;
        }
        return last; // rounding left u ≥ 0 after the last token with any mass
    }

    /// <summary>The k-th largest of <paramref name="values"/> (NaN-free), with a min-heap of the k largest seen: O(V log k).</summary>
    private double KthLargest(double[] values, int k)
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
    /// a peaked distribution, all of them in the worst case.
    /// </summary>
    private void KeepNucleus(double[] probs, double topP)
    {
        int v = probs.Length;
        double max = probs.Max();
        double threshold = Math.Min(max, 1.0 / v);
        int count;
        while (true)
        {
            double mass = 0;
            count = 0;
            for (int i = 0; i < v; i++) if (probs[i] >= threshold) { mass += probs[i]; count++; }
            if (mass >= topP || threshold == 0) break;
            threshold = threshold > 1e-300 ? threshold / 64 : 0;
        }
        if (_order.Length < count) _order = new int[count];
        if (_keys.Length < count) _keys = new double[count];
        int n = 0;
        for (int i = 0; i < v; i++)
            if (probs[i] >= threshold) { _order[n] = i; _keys[n] = -probs[i]; n++; }
        // Most likely first (negated keys; among exactly equal probabilities the sort's own deterministic order).
        Array.Sort(_keys, _order, 0, n);
        double cumulative = 0;
        int keep = 0;
        while (keep < n)
        {
            cumulative += probs[_order[keep]];
            keep++;
            if (cumulative >= topP) break;
        }
        if (_inside.Length != v) _inside = new bool[v];
        else Array.Clear(_inside);
        for (int i = 0; i < keep; i++) _inside[_order[i]] = true;
        for (int i = 0; i < v; i++) if (!_inside[i]) probs[i] = 0;
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
