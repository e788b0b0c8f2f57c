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
            if (_keys.Length != v) _keys = new double[v];
            l.CopyTo(_keys, 0);
            Array.Sort(_keys);
            double threshold = _keys[v - _options.TopK];
            for (int i = 0; i < v; i++) if (l[i] < threshold) l[i] = double.NegativeInfinity;
        }

        double max = double.NegativeInfinity;
        for (int i = 0; i < v; i++) if (l[i] > max) max = l[i];
        if (double.IsNegativeInfinity(max)) return ArgMax(l);
        double sum = 0;
        for (int i = 0; i < v; i++) { l[i] = Math.Exp(l[i] - max); sum += l[i]; }
        for (int i = 0; i < v; i++) l[i] /= sum;

        if (_options.TopP < 1)
        {
            // Most likely first (sorting negated probabilities with their ids; the order among exactly equal
            // probabilities is the sort's, which is deterministic); keep the shortest prefix reaching top-p, at least one.
            if (_order.Length != v) _order = new int[v];
            if (_keys.Length != v) _keys = new double[v];
            for (int i = 0; i < v; i++) { _order[i] = i; _keys[i] = -l[i]; }
            Array.Sort(_keys, _order);
            double cumulative = 0;
            int keep = 0;
            while (keep < v)
            {
                cumulative += l[_order[keep]];
                keep++;
                if (cumulative >= _options.TopP) break;
            }
            for (int i = keep; i < v; i++) l[_order[i]] = 0;
        }

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
