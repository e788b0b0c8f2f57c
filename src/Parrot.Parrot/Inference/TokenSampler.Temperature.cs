namespace Parrot.Parrot.Inference;

/// <summary>
/// A row's chunk sums as its device computed them (<see cref="TopKCandidates.ReadRows"/>): <see cref="Max"/> the largest
/// of the logits x ÷ T in float64 (the device's division), <see cref="RawMax"/> the largest x (exact), and
/// <see cref="Sums"/>[j] = Σ exp(x ÷ T − Max) over the ids [j·<see cref="Size"/>, (j + 1)·<see cref="Size"/>) of the row
/// (the last chunk shorter), float64, any summation order. x is the raw logit, or for the first <see cref="Seen"/> ids
/// the sampler has seen (a repetition penalty; 0 without one) the sampler's penalised value of it (float64, bit for bit
/// <see cref="TokenSampler.Penalised"/>'s), so the sums are of the row the whole-row sampler samples from.
/// </summary>
internal sealed record ChunkSums(double Max, double RawMax, double[] Sums, int Size, int Seen = 0)
{
    /// <summary>How many ids chunk <paramref name="j"/> of a row of <paramref name="vocab"/> holds.</summary>
    public int Length(int j, int vocab) => Math.Min(Size, vocab - j * Size);

    /// <summary>How many chunks a row of <paramref name="vocab"/> has at <paramref name="size"/> ids a chunk.</summary>
    public static int Count(int vocab, int size) => (vocab + size - 1) / size;
}

/// <summary>A plain-temperature row as the host samples from it: its <see cref="ChunkSums"/> and the raw logits of chunk <see cref="Chunk"/>.</summary>
internal sealed record ChunkRow(ChunkSums Sums, int Chunk, float[] Values);

/// <summary>
/// Plain temperature sampling (no top-k, no top-p; with or without a repetition penalty) from a row's device-computed
/// chunk sums (of the penalised row under a penalty: <see cref="ChunkSums.Seen"/>) and the raw logits of one chunk, which
/// the sampler penalises itself (docs/cuda.md, "Temperature sampling from device chunk sums"). The whole-row sampler walks
/// u = r·Σp − p₀ − p₁ − … (pᵢ = eᵢ / S, eᵢ = exp(lᵢ − max)) in index order and picks the first id where u &lt; 0; the sign
/// at id k is the sign of r·E − E_k (E = Σ eᵢ, E_k the prefix through k, exact sums) up to rounding ≤ μ. The chunk sums
/// bound every chunk's share of E to an interval; the chunk in which r·E falls is read, and the pick is proven where every
/// step's sign is the same for every E and prefix in those intervals; anything else reads the whole row.
/// </summary>
internal sealed partial class TokenSampler
{
    /// <summary>Whether this sampler's options are plain temperature sampling (the case <see cref="ChunkSums"/> decide).</summary>
    internal bool TemperatureOnly => IsTemperatureOnly(_options, _seen.Length);

    /// <summary>Sampling with no top-k cut (off, or at least the vocabulary) and top-p 1: every id takes part in the draw.</summary>
    internal static bool IsTemperatureOnly(GenerationOptions options, int vocab) =>
        options.IsSampling && options.TopP >= 1 && (options.TopK <= 0 || options.TopK >= vocab);

    /// <summary>The stream's next draw, not taken (tests replay the whole-row walk with it).</summary>
    internal double PeekDraw() => PeekDouble();

    /// <summary>Why the last chunk decision said no (tests count the fallbacks by reason); null when it decided.</summary>
    internal string? LastChunkFallback { get; private set; }

    /// <summary>
    /// The chunk whose raw logits decide this row's pick (the stream's next draw peeked, not taken), or null (with
    /// <see cref="LastChunkFallback"/>) where the sums alone already show that no single chunk can: the row is read whole.
    /// </summary>
    public int? ChunkToRead(ChunkSums sums) => ChunkToRead(sums, PeekDouble());

    /// <summary><see cref="ChunkToRead(ChunkSums)"/> for the draw <paramref name="r"/> (tests place it near boundaries).</summary>
    internal int? ChunkToRead(ChunkSums sums, double r)
    {
        var b = ChunkBoundsOf(sums);
        if (b is null) return null;
        int c = b.Locate(r);
        LastChunkFallback = b.Straddles(c, r);
        return LastChunkFallback is null ? c : null;
    }

    /// <summary>Whether chunk <paramref name="chunk"/>'s raw logits <paramref name="values"/> (not penalised) with <paramref name="sums"/> decide the next pick (the stream not advanced).</summary>
    public bool ChunkSuffices(ChunkSums sums, int chunk, ReadOnlySpan<float> values) => ChunkPick(sums, chunk, values, PeekDouble()) is not null;

    /// <summary>
    /// <see cref="Next(float[])"/> from a row's chunk sums and one chunk: the same id, the one draw the whole row takes.
    /// Throws where <see cref="ChunkSuffices"/> says no.
    /// </summary>
    public int NextFromChunk(ChunkRow row)
    {
        if (ChunkPick(row.Sums, row.Chunk, row.Values, PeekDouble()) is not int id)
            throw new InvalidOperationException($"generate: the chunk sums and chunk {row.Chunk} do not decide the token ({LastChunkFallback}; the whole row of logits is needed)");
        NextDouble(); // the draw the whole row's sampler takes
        See(id);
        return id;
    }

    /// <summary>
    /// The id the whole-row sampler picks with draw <paramref name="r"/>, proven from <paramref name="sums"/> and chunk
    /// <paramref name="chunk"/>'s raw logits, or null (<see cref="LastChunkFallback"/> says why).
    /// </summary>
    internal int? ChunkPick(ChunkSums sums, int chunk, ReadOnlySpan<float> values, double r)
    {
        var b = ChunkBoundsOf(sums);
        if (b is null) return null;
        // The chunk's logits as the whole row's sampler takes them: the penalty on the seen ids (Next's first loop).
        int start = chunk * sums.Size;
        var x = new double[values.Length];
        for (int i = 0; i < x.Length; i++) x[i] = Penalised(values[i], start + i);
        LastChunkFallback = b.Walk(chunk, x, r, _options.Temperature, out int pick);
        return LastChunkFallback is null ? pick : null;
    }

    /// <summary>
    /// The intervals <paramref name="sums"/> give for each chunk's exact Σ eᵢ (the whole-row sampler's numerators), or
    /// null where they are refused: tests and the selftest check that the host's sums lie inside (the device's exp and
    /// reduction order within the bound).
    /// </summary>
    internal (double[] Lo, double[] Hi)? ChunkIntervals(ChunkSums sums) => ChunkBoundsOf(sums) is { } b ? (b.Lo.ToArray(), b.Hi.ToArray()) : null;

    /// <summary>The bounds of <paramref name="sums"/> for this sampler, or null with <see cref="LastChunkFallback"/> set.</summary>
    private ChunkBounds? ChunkBoundsOf(ChunkSums sums)
    {
        int vocab = _seen.Length;
        if (sums.Size < 1 || sums.Sums.Length != ChunkSums.Count(vocab, sums.Size))
            throw new InvalidOperationException($"generate: {sums.Sums.Length} chunk sums of {sums.Size} ids for a vocabulary of {vocab}");
        // Sums of another row than this sampler's (raw logits under a penalty, or penalised at another seen set) would
        // prove nothing about its pick: a caller's error, not a fallback.
        int seen = Penalises ? _seenOrder.Count : 0;
        if (sums.Seen != seen)
            throw new InvalidOperationException($"generate: chunk sums with {sums.Seen} penalised ids for a sampler that penalises {seen}");
        LastChunkFallback = !TemperatureOnly ? "not plain temperature" : null;
        if (LastChunkFallback is not null) return null;
        var b = ChunkBounds.From(sums, vocab, _options.Temperature, out string? why);
        LastChunkFallback = why;
        return b;
    }

    /// <summary>
    /// What the chunk sums prove about the whole-row sampler's numerators: the exact maximum it subtracts, and for every
    /// chunk j an interval [Lo[j], Hi[j]] holding E_j, the exact sum of its eᵢ = fl(exp(fl(fl(xᵢ ÷ T) − max))).
    /// </summary>
    private sealed class ChunkBounds
    {
        private readonly double[] _lo, _hi, _prefixLo, _prefixHi;
        private readonly ChunkSums _sums;
        private readonly int _vocab;
        /// <summary>The whole row's maximum l, bit for bit: fl(max x ÷ T) (division rounds monotonically; x penalised where seen).</summary>
        private readonly double _max;
        /// <summary>Relative widening of every host-side sum of interval ends (its own rounding) and of E's ends.</summary>
        private readonly double _w;

        private ChunkBounds(ChunkSums sums, int vocab, double max, double[] lo, double[] hi)
        {
            _sums = sums;
            _vocab = vocab;
            _max = max;
            _lo = lo;
            _hi = hi;
            int n = lo.Length;
            _w = 1.01 * (n + 4) * U + 1e-15;
            _prefixLo = new double[n + 1];
            _prefixHi = new double[n + 1];
            for (int j = 0; j < n; j++)
            {
                _prefixLo[j + 1] = _prefixLo[j] + lo[j];
                _prefixHi[j + 1] = _prefixHi[j] + hi[j];
            }
        }

        /// <summary>
        /// The intervals, or null with <paramref name="why"/>. The device's numbers must be finite (a NaN logit makes its
        /// chunk's sum NaN, a +∞ the maximum or a sum infinite, all −∞ the maximum −∞: those rows are read whole), its
        /// maximum the host's within 4u. Per term (as the top-p row sum's bound, docs/cuda.md): the arguments differ by at most
        /// 6u·A (the host's ÷ T and − max, the device's ÷ T — division or a reciprocal product — and − M), exp within
        /// 1 ulp on each side: ρ = 1.01·(6uA + 4u), A = max(|max|, |M|) + 746; terms below exp(−746) are subnormal,
        /// 2⁻¹⁰⁷⁰ absolute each. A sum of n positive terms in any order within 1.01·n·u. The rescaling by exp(M − max)
        /// (M within 4u of max) within 3ρ.
        /// </summary>
        public static ChunkBounds? From(ChunkSums sums, int vocab, double temperature, out string? why)
        {
            why = null;
            double mr = sums.Max, raw = sums.RawMax;
            if (!double.IsFinite(mr) || !double.IsFinite(raw)) { why = "no finite maximum"; return null; }
            foreach (double d in sums.Sums)
                if (!double.IsFinite(d) || d < 0) { why = "a chunk sum that is not finite"; return null; }
            double max = raw / temperature; // the whole row's maximum: every l = fl(x ÷ T), monotonic in x
            if (!double.IsFinite(max)) { why = "no finite maximum"; return null; }
            if (!(Math.Abs(mr - max) <= 4 * U * Math.Abs(max))) { why = "the device's maximum"; return null; }
            double a = Math.Max(Math.Abs(mr), Math.Abs(max)) + 746;
            if (!(a * U < 1e-9)) { why = "the logits' magnitude"; return null; }
            double rho = 1.01 * (6 * U * a + 4 * U);
            double scale = Math.Exp(mr - max);
            int n = sums.Sums.Length;
            var lo = new double[n];
            var hi = new double[n];
            for (int j = 0; j < n; j++)
            {
                int len = sums.Length(j, vocab);
                double eps = rho + 1.01 * len * U, tiny = len * Math.Pow(2, -1070);
                double d = sums.Sums[j] * scale;
                lo[j] = Math.Max(0, d / (1 + eps) * (1 - 3 * rho) * (1 - 4 * U) - tiny);
                hi[j] = d / (1 - eps) * (1 + 3 * rho) * (1 + 4 * U) + tiny;
            }
            return new ChunkBounds(sums, vocab, max, lo, hi);
        }

        public ReadOnlySpan<double> Lo => _lo;

        public ReadOnlySpan<double> Hi => _hi;

        /// <summary>The lower end of Σ_{j &lt; c} E_j (0 exactly for c = 0).</summary>
        private double PrefixLo(int c) => _prefixLo[c] * (1 - _w);

        private double PrefixHi(int c) => _prefixHi[c] * (1 + _w);

        /// <summary>The sum of the chunks after <paramref name="c"/>, as an interval.</summary>
        private (double Lo, double Hi) After(int c) =>
            ((_prefixLo[^1] - _prefixLo[c + 1]) * (1 - 2 * _w) - 2 * _w * _prefixLo[^1], (_prefixHi[^1] - _prefixHi[c + 1]) * (1 + 2 * _w) + 2 * _w * _prefixHi[^1]);

        /// <summary>
        /// The rounding margin μ: the whole-row sampler's u at id k, times S, is r·E − E_k within
        /// (2V + 4)·1.02·u·E (Σp and its sequential total within (V + 1)·u·E/S, u₀ = fl(r·total), each of at most V
        /// subtractions within u·E/S while u stays in [−p_k, u₀]); our own evaluation of r·E − prefix with a chunk's
        /// sequential prefix sums adds (C + 8)·u·E. 1.1 covers the second-order terms.
        /// </summary>
        private double Mu(double eHi) => 1.1 * (2.0 * _vocab + _sums.Size + 16) * U * eHi + Math.Pow(2, -1000);

        /// <summary>The chunk where r·E most likely falls (the midpoints of the intervals); the last non-empty chunk if none.</summary>
        public int Locate(double r)
        {
            int n = _lo.Length, last = 0;
            double e = (_prefixLo[n] + _prefixHi[n]) / 2, target = r * e;
            for (int j = 0; j < n; j++)
            {
                if (_hi[j] > 0) last = j;
                if ((_prefixLo[j + 1] + _prefixHi[j + 1]) / 2 > target) return j;
            }
            return last;
        }

        /// <summary>
        /// Null where the sums prove that the walk crosses inside chunk <paramref name="c"/> for every E in the intervals: no
        /// earlier step below 0 (r·E − Σ_{j&lt;c} E_j > μ, where c > 0) and the chunk's end below (r·E − Σ_{j≤c} E_j &lt; −μ);
        /// else why not.
        /// </summary>
        public string? Straddles(int c, double r)
        {
            var (afterLo, afterHi) = After(c);
            double eLo = PrefixLo(c) + _lo[c] + afterLo, eHi = PrefixHi(c) + _hi[c] + afterHi, mu = Mu(eHi);
            if (c > 0 && !(r * eLo - PrefixHi(c) > mu)) return "the draw is near a chunk's start";
            if (!(r * eHi - (PrefixLo(c) + _lo[c]) < -mu)) return "the draw is near a chunk's end";
            return null;
        }

        /// <summary>
        /// The whole-row walk over chunk <paramref name="c"/>'s logits <paramref name="values"/> (penalised where seen, as
        /// <see cref="Next(float[])"/> gives them to <see cref="Sample"/>): null with the picked id where every step before
        /// it is proven ≥ 0 and its own proven &lt; 0 at every E; else why not. The chunk's numerators are the whole row's
        /// bits (the same l, max and Math.Exp as <see cref="Sample"/>), so its share of E is its own sum, no longer an interval.
        /// </summary>
        public string? Walk(int c, ReadOnlySpan<double> values, double r, double temperature, out int pick)
        {
            pick = -1;
            if ((uint)c >= (uint)_lo.Length) throw new InvalidOperationException($"generate: chunk {c} of {_lo.Length}");
            int start = c * _sums.Size, len = _sums.Length(c, _vocab);
            if (values.Length != len) throw new InvalidOperationException($"generate: {values.Length} logits for chunk {c} of {len} ids");
            var e = new double[len];
            double own = 0;
            for (int i = 0; i < len; i++)
            {
                if (double.IsNaN(values[i])) return "a NaN in the chunk";
                e[i] = Math.Exp(values[i] / temperature - _max);
                own += e[i];
            }
            // The chunk must be the one the device summed (a logit above the maximum, or a sum outside its interval,
            // means the two disagree: no proof from them).
            double ownLo = own * (1 - 1.01 * len * U), ownHi = own * (1 + 1.01 * len * U);
            if (ownHi < _lo[c] * (1 - _w) || ownLo > _hi[c] * (1 + _w)) return "the chunk disagrees with its sum";
            foreach (double x in e) if (x > 1) return "the chunk disagrees with its sum";
            var (afterLo, afterHi) = After(c);
            double pLo = PrefixLo(c), pHi = PrefixHi(c);
            double eLo = pLo + ownLo + afterLo, eHi = pHi + ownHi + afterHi, mu = Mu(eHi);
            // Every step before the chunk: u ≥ its value before the chunk's first step (u only falls).
            if (c > 0 && !(r * eLo - pHi > mu)) return "the draw is near a chunk's start";
            double q = 0;
            for (int k = 0; k < len; k++)
            {
                q += e[k];
                if (r * eLo - (pHi + q) > mu) continue; // u > 0 after id k at every E
                if (r * eHi - (pLo + q) < -mu) { pick = start + k; return null; } // u < 0: the pick
                return "the draw is near an id's boundary";
            }
            return "the draw is past the chunk";
        }
    }
}
