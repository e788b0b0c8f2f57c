namespace Parrot.Parrot.Inference;

/// <summary>
/// A row's normalising sum as its device computed it (<see cref="TopKCandidates.ReadRows"/>): <see cref="Max"/> the
/// largest of the raw logits ÷ T and <see cref="Sum"/> Σ exp(logit ÷ T − Max) over the whole row, in float64, any
/// summation order, with no repetition penalty applied (the host corrects for the seen ids it knows).
/// </summary>
internal readonly record struct RowSum(double Max, double Sum);

/// <summary>
/// Top-p sampling without top-k from a row's candidates plus its device-computed <see cref="RowSum"/> (docs/cuda.md,
/// "Top-p sampling from device candidates and a row sum"). The candidates give every probability that can enter the
/// nucleus bit for bit except for the sum S by which they are divided; the device's sum bounds S to an interval
/// [S_lo, S_hi] (a rigorous relative error bound), and the candidates decide the token only where every comparison the
/// whole-row sampler makes comes out the same for every S of that interval: the same nucleus, the same pick, one draw.
/// </summary>
internal sealed partial class TokenSampler
{
    /// <summary>The unit roundoff of float64 (half an ulp of 1).</summary>
    private const double U = 1.0 / (1UL << 53);

    /// <summary>Whether this sampler's options are top-p without top-k (the case a <see cref="RowSum"/> decides).</summary>
    internal bool TopPOnly => IsTopPOnly(_options, _seen.Length);

    /// <summary>Sampling with top-p below 1 and no top-k cut (off, or at least the vocabulary).</summary>
    internal static bool IsTopPOnly(GenerationOptions options, int vocab) =>
        options.IsSampling && options.TopP < 1 && (options.TopK <= 0 || options.TopK >= vocab);

    /// <summary>
    /// Whether the candidates (<see cref="CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int)"/>'s layout)
    /// with the device's <paramref name="sum"/> decide this top-p sampler's next pick as <see cref="Next(float[])"/>
    /// would (the stream is not advanced).
    /// </summary>
    public bool CandidatesSuffice(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, int top, RowSum sum) =>
        DecideTopP(ids, values, top, sum, out _) is not null;

    /// <summary>
    /// <see cref="Next(float[])"/> from the candidates and the device's row sum: the same id, one draw taken. Throws where
    /// <see cref="CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int, RowSum)"/> says no.
    /// </summary>
    public int NextFromCandidates(int[] ids, float[] values, int top, RowSum sum)
    {
        if (DecideTopP(ids, values, top, sum, out _) is not int id)
            throw new InvalidOperationException("generate: the candidates and the row sum do not decide the token (the whole row of logits is needed)");
        NextDouble(); // the draw the whole row's sampler takes
        See(id);
        return id;
    }

    /// <summary>The pick the candidates and <paramref name="sum"/> prove, or null; the stream is not advanced (tests).</summary>
    internal int? TopPPick(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, int top, RowSum sum) => DecideTopP(ids, values, top, sum, out _);

    /// <summary>The interval of the whole row's sum the last <see cref="DecideTopP"/> derived (tests), null where none.</summary>
    internal (double Lo, double Hi)? LastTopPInterval { get; private set; }

    /// <summary>Why the last <see cref="DecideTopP"/> said no (tests count the fallbacks by reason); null when it decided.</summary>
    internal string? LastTopPFallback { get; private set; }

    /// <summary>
    /// The token the whole-row sampler would pick, or null (with <see cref="LastTopPFallback"/>) where the candidates and
    /// the sum's interval do not prove it. The stream is peeked, not advanced.
    /// </summary>
    private int? DecideTopP(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, int top, RowSum sum, out string? why)
    {
        why = TopPCore(ids, values, top, sum, out int pick);
        LastTopPFallback = why;
        return why is null ? pick : null;
    }

    /// <summary>
    /// Whether asking again with <paramref name="count"/> top candidates could decide the row the last
    /// <see cref="DecideTopP"/> refused (<see cref="CandidateAsk.MayEscalate"/>): not for a NaN, a +∞ or the device's
    /// numbers (the same at any count), nor where even <paramref name="count"/> candidates cannot hold top-p. The new
    /// candidates are the count − top ids past the first read's top (the seen ids it gathered are candidates already, so
    /// not n: a long penalised prompt's ids outside the top would shrink the bound and skip rows the escalation decides;
    /// a tie at the first cut that the larger TopK resolves to other ids swaps ids of equal value); each has a probability
    /// of at most the largest left out's, so the candidates' mass plus (count − top) of those at S_lo bounds the mass of
    /// any threshold's set; below top-p the nucleus's threshold reaches 0 at that count too.
    /// </summary>
    internal bool TopPEscalationMayDecide(int count) => LastTopPFallback is not null && _escalation switch
    {
        EscalationHope.None => false,
        EscalationHope.Bounded => _heldMass + Math.Max(0, count - _heldTop) * _leftOutP >= _options.TopP * (1 - 1e-9),
        _ => true,
    };

    /// <summary>What more candidates could do for the last refusal, set where <see cref="TopPCore"/> refuses.</summary>
    private enum EscalationHope { May, None, Bounded }

    private EscalationHope _escalation;

    /// <summary>What <see cref="TopPEscalationMayDecide"/> bounds with (<see cref="EscalationHope.Bounded"/>): the candidates' mass, the largest left-out probability, at S_lo, and the first read's top count.</summary>
    private double _heldMass, _leftOutP;
    private int _heldTop;

    /// <summary>A refusal that more candidates cannot change (a NaN, no finite maximum, the device's numbers, the whole row).</summary>
    private string Final(string why)
    {
        _escalation = EscalationHope.None;
        return why;
    }

    private string? TopPCore(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, int top, RowSum sum, out int pick)
    {
        pick = -1;
        LastTopPInterval = null;
        _escalation = EscalationHope.May;
        int n = ids.Length, vocab = _seen.Length;
        // The layout checks of the top-k path (ids in range, distinct, every seen id there under a penalty).
        ValidateCandidates(ids, values, top);
        if (!TopPOnly) return Final("not top-p only");
        foreach (float x in values) if (float.IsNaN(x)) return Final("NaN");
        if (n >= vocab) return Final("the whole row");
        double t = _options.Temperature, penalty = _options.RepetitionPenalty;

        // The candidates in id order, each after the penalty and the temperature exactly as Sample computes it.
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        var sortedIds = ids.ToArray();
        Array.Sort(sortedIds, order);
        var l = new double[n];
        double raw0 = double.NegativeInfinity, m = double.PositiveInfinity;
        for (int i = 0; i < top; i++) { raw0 = Math.Max(raw0, values[i]); m = Math.Min(m, values[i]); }
        for (int i = 0; i < n; i++) l[i] = Penalised(values[order[i]], sortedIds[i]) / t;
        double max = double.NegativeInfinity;
        foreach (double x in l) if (x > max) max = x;
        double mT = m / t; // every id left out is unseen with a raw logit ≤ m: its l ≤ m / T (division is monotonic)
        if (!double.IsFinite(max)) return Final("no finite maximum");
        if (!(max >= mT)) return "the maximum may be left out";

        // The probabilities' numerators: the whole row's bits (same l, same max, same Math.Exp).
        var e = new double[n];
        for (int i = 0; i < n; i++) e[i] = Math.Exp(l[i] - max);

        LastTopPInterval = SumInterval(sum, raw0 / t, max, sortedIds, values, order, l);
        if (LastTopPInterval is not var (sLo, sHi)) return Final("the row sum's interval");

        // Nucleus at both ends: the same threshold, the same preselected set, the same kept set.
        var a = Nucleus(e, sLo, vocab);
        var b = Nucleus(e, sHi, vocab);
        // Every id left out has e_out ≤ exp(m/T − max) (generous for exp's rounding and monotonicity).
        double eOut = Math.Exp(mT - max) * (1 + 1e-12);
        if (a is null || b is null)
        {
            // The threshold reached 0. For the escalation's bound: the largest the candidates' mass can be (at S_lo).
            _heldMass = e.Sum() / sLo * (1 + 1e-9);
            _leftOutP = eOut / sLo;
            _heldTop = top;
            _escalation = EscalationHope.Bounded;
            return "the candidates hold less than top-p";
        }
        if (a.Value.Threshold != b.Value.Threshold || a.Value.Level != b.Value.Level) return "threshold level";
        double threshold = a.Value.Threshold;
        // The sort's comparisons the same at every S: distinct numerators apart by more than rounding can merge.
        var pre = a.Value.Pre.Select(i => e[i]).ToArray();
        Array.Sort(pre);
        for (int i = 1; i < pre.Length; i++)
            if (pre[i] != pre[i - 1] && !(pre[i] - pre[i - 1] > 8 * U * pre[i])) return "near-equal probabilities";
        if (a.Value.Keep != b.Value.Keep || !a.Value.Kept.AsSpan().SequenceEqual(b.Value.Kept)) return "the nucleus's cut";
        if (eOut / sLo * (1 + 4 * U) < threshold)
        {
            // (A) No id left out is preselected at any level up to the last, at any S: the whole row's loops see
            // exactly the candidates' entries (its masses, its sort of the same keys in the same order, its cut).
            if (!a.Value.Pre.AsSpan().SequenceEqual(b.Value.Pre)) return "preselected set";
        }
        else
        {
            // (B) Ids left out may be preselected, but below the cut: the first level's mass over the candidates alone
            // reaches top-p at both ends (the whole row's, a superset summed in index order, is no smaller: level 0
            // for it too, the same threshold); every entry down to the cut is a candidate (its numerator above every
            // left-out one by more than rounding can merge), so the whole row's sorted prefix is the candidates'; and
            // no tie straddles the cut (the kept ids among equal probabilities would depend on the whole sort).
            if (a.Value.Level != 0) return "a left-out id may be preselected";
            // The sorted walk must reach top-p within the candidates at every S (at S_hi, where its sums are smallest):
            // its sum in sort order may fall a few ulps short of the index-order mass that reached top-p, and the whole
            // row's walk would then go on into the preselected ids left out and keep one of them.
            if (!b.Value.Reached) return "the nucleus's walk ends below top-p";
            var sorted = a.Value.Sorted;
            int keep = a.Value.Keep;
            double eCut = e[sorted[keep - 1]];
            if (!(eCut > eOut * (1 + 8 * U))) return "a left-out id may reach the cut";
            if (keep < sorted.Length && !(e[sorted[keep]] < eCut)) return "a tie at the cut";
        }

        // The draw: u = r·total, walked in index order over the kept entries. Its sign at each step is the sign of
        // r·E − E_k (E: the kept numerators' sum, E_k a prefix) for every S, up to rounding bounded by μ.
        var kept = a.Value.Kept; // ascending index order
        if (DrawFromNumerators(e, kept, PeekDouble()) is not int k) return "the draw's boundary";
        pick = sortedIds[k];
        return null;
    }

    /// <summary>
    /// The entry the whole-row draw picks among <paramref name="kept"/> (ascending), numerators <paramref name="e"/>, for
    /// every sum S: the sampler walks u = r·Σp − p_1 − … with p = e / S, and the sign at each step is the sign of
    /// r·E − E_k (E the kept numerators' sum, E_k a prefix's) up to rounding (≤ (2|K| + 3)·u·E on its side, (2|K| + 2)·u·E
    /// on ours); null where some step is within that margin μ. The last entry needs no margin: the sampler picks it
    /// either by u &lt; 0 or by the rounding rule.
    /// </summary>
    internal static int? DrawFromNumerators(double[] e, int[] kept, double r)
    {
        double eTot = 0;
        foreach (int i in kept) eTot += e[i];
        double mu = (4.0 * kept.Length + 8) * 1.1 * U * eTot;
        double prefix = 0;
        for (int k = 0; k < kept.Length - 1; k++)
        {
            prefix += e[kept[k]];
            double d = r * eTot - prefix;
            if (d > mu) continue;
            if (d < -mu) return kept[k];
            return null;
        }
        return kept[^1];
    }

    /// <summary>
    /// The interval that holds the whole-row sampler's sum S = Σ fl(exp(fl(l_i − max))) (index order), from the device's
    /// <paramref name="sum"/> (raw logits ÷ T, no penalty) and the seen candidates (the penalty's correction); null where
    /// the device's numbers are not usable. The bound (docs/cuda.md): every term within a relative ρ of its exact value
    /// (argument rounding ≤ u·|argument| on either side, exp within 1 ulp), every sum of k positive terms within 1.01·k·u.
    /// </summary>
    private (double Lo, double Hi)? SumInterval(RowSum sum, double hostMr, double max, int[] sortedIds, ReadOnlySpan<float> values, int[] order, double[] l)
    {
        double mr = sum.Max, d = sum.Sum;
        int vocab = _seen.Length;
        if (!double.IsFinite(mr) || !double.IsFinite(d) || !(d >= 0.5)) return null;
        // The device's maximum is the host's (max is exact; its division within an ulp).
        if (!(Math.Abs(mr - hostMr) <= 4 * U * Math.Abs(hostMr))) return null;
        double a = Math.Max(Math.Abs(mr), Math.Abs(max)) + 746;
        if (!(a * U < 1e-9) || !(mr - max < 700)) return null;
        double rho = 1.01 * (4 * U * a + 4 * U);
        double eps = rho + 1.01 * vocab * U;
        double tiny = vocab * Math.Pow(2, -1070); // terms below exp(−746): absolute, not relative
        double rLo = d / (1 + eps) - tiny, rHi = d / (1 - eps) + tiny;
        // Seen ids (a penalty): the device summed their raw terms; the sampler sums their penalised ones.
        double seenRaw = 0, seenPen = 0;
        int s = 0;
        if (Penalises)
            for (int i = 0; i < sortedIds.Length; i++)
            {
                if (!_seen[sortedIds[i]]) continue;
                s++;
                seenRaw += Math.Exp((double)values[order[i]] / _options.Temperature - mr);
                seenPen += Math.Exp(l[i] - max);
            }
        double es = rho + 1.01 * (s + 1) * U;
        double uLo = rLo - seenRaw * (1 + es), uHi = rHi - seenRaw * (1 - es);
        double slack = 4 * U * (rHi + seenRaw);
        uLo = Math.Max(0, uLo - slack);
        uHi += slack;
        double scale = Math.Exp(mr - max);
        double lo = uLo * scale * (1 - 3 * rho) + seenPen * (1 - es);
        double hi = uHi * scale * (1 + 3 * rho) + seenPen * (1 + es);
        lo = lo * (1 - eps) * (1 - 1e-14) - tiny;
        hi = hi * (1 + eps) * (1 + 1e-14) + tiny;
        // S ≥ 1 always (the maximum's term is exp(0) = 1).
        lo = Math.Max(lo, 1);
        if (!(hi >= lo) || !double.IsFinite(hi)) return null;
        return (lo, hi);
    }

    /// <summary>
    /// <see cref="KeepNucleus"/> over the candidates' numerators <paramref name="e"/> divided by <paramref name="s"/>:
    /// the final threshold and its level, the preselected entries (p ≥ threshold, index order), them sorted as the
    /// nucleus sorts them, how many of those are kept, the kept ones in index order, and whether the sorted walk reached
    /// top-p (it may end a few ulps short: its sum in sort order, the mass's in index order); null where the threshold reached 0 (the ids left out would join).
    /// </summary>
    private (double Threshold, int Level, int[] Pre, int[] Sorted, int Keep, int[] Kept, bool Reached)? Nucleus(double[] e, double s, int vocab)
    {
        int n = e.Length;
        double topP = _options.TopP;
        var p = new double[n];
        for (int i = 0; i < n; i++) p[i] = e[i] / s;
        double pmax = double.NegativeInfinity;
        foreach (double x in p) if (x > pmax) pmax = x;
        double threshold = Math.Min(pmax, 1.0 / vocab);
        int level = 0;
        while (true)
        {
            double mass = 0;
            for (int i = 0; i < n; i++) if (p[i] >= threshold) mass += p[i];
            if (mass >= topP || threshold == 0) break;
            threshold = threshold > 1e-300 ? threshold / 64 : 0;
            level++;
        }
        if (threshold == 0) return null;
        var pre = Enumerable.Range(0, n).Where(i => p[i] >= threshold).ToArray();
        var keys = pre.Select(i => -p[i]).ToArray();
        var sorted = pre.ToArray();
        // The same keys in the same order as the whole row's: the same permutation.
        Array.Sort(keys, sorted);
        double cumulative = 0;
        int keep = 0;
        while (keep < sorted.Length)
        {
            cumulative += p[sorted[keep]];
            keep++;
            if (cumulative >= topP) break;
        }
        var kept = sorted.AsSpan(0, keep).ToArray();
        Array.Sort(kept);
        return (threshold, level, pre, sorted, keep, kept, cumulative >= topP);
    }

    /// <summary>The layout checks of the candidates (as the top-k path's): lengths, ids in range and distinct, every seen id there under a penalty.</summary>
    private void ValidateCandidates(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, int top)
    {
        int n = ids.Length, vocab = _seen.Length;
        if (n != values.Length) throw new InvalidOperationException($"generate: {n} candidate ids for {values.Length} values");
        if (top < 1 || top > n) throw new InvalidOperationException($"generate: {top} top candidates of {n}");
        var sorted = ids.ToArray();
        Array.Sort(sorted);
        for (int i = 0; i < n; i++)
        {
            if ((uint)sorted[i] >= (uint)vocab) throw new InvalidOperationException($"generate: the candidate id {sorted[i]} is outside the vocabulary [0, {vocab})");
            if (i > 0 && sorted[i] == sorted[i - 1]) throw new InvalidOperationException($"generate: the candidates name id {sorted[i]} twice");
        }
        if (!Penalises) return;
        int seenHere = 0;
        foreach (int id in ids) if (_seen[id]) seenHere++;
        if (seenHere != _seenOrder.Count)
            throw new InvalidOperationException($"generate: the candidates carry {seenHere} of the {_seenOrder.Count} seen ids (the repetition penalty needs every seen id's logit)");
    }

    /// <summary>The next <see cref="NextDouble"/> without taking it.</summary>
    private double PeekDouble()
    {
        ulong saved = _state;
        double r = NextDouble();
        _state = saved;
        return r;
    }
}
