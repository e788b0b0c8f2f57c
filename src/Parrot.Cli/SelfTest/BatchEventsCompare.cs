using Parrot.Parrot.Inference;

namespace Parrot.Cli.SelfTest;

/// <summary>One event of the selftest's continuous batch (<see cref="global::Parrot.Parrot.Inference.BatchEvent"/>, its sequence by index).</summary>
internal sealed record BatchLine(int Step, int Sequence, int Token, string Text, string Finished)
{
    public override string ToString() => $"step {Step}: sequence {Sequence} token {Token} '{Text}' {Finished}";
}

/// <summary>
/// The next token's logits for sequence <c>sequence</c> after the tokens it <c>generated</c> (one independent eager
/// forward): <c>Raw</c> as the model gives them, <c>Pick</c> as its greedy pick compares them (after a repetition penalty).
/// </summary>
internal delegate (float[] Raw, double[] Pick) PrefixLogits(int sequence, IReadOnlyList<int> generated);

/// <summary>
/// Where two batches may differ by a near tie (a GPU, whose products' bits may depend on the row count M): the model's
/// dtype precision (<see cref="MantissaBits"/>: 8 for bfloat16, 24 for float32), the tie tolerance in its ulps and the
/// independent judge. <see cref="Options"/>: each sequence's generation options, where some sample (null: every sequence
/// greedy); a sampled sequence's flip is judged by the draw (<see cref="BatchEventsCompare"/>, JudgeSampled), its
/// <see cref="PrefixLogits"/> then asked with those options at temperature 0 (the penalised logits the sampler starts from).
/// </summary>
internal sealed record NearTiePolicy(int MantissaBits, int Ulps, PrefixLogits Logits, Func<int, GenerationOptions>? Options = null)
{
    /// <summary>
    /// bfloat16's tie tolerance in ulps (at the larger |raw logit| of the two tokens). Why 5: the two batches compute the
    /// same products in another accumulation order (fp32 accumulators either way, on the GPU as on the CPU) and round every
    /// output to the dtype, so each batch's logit lies within the dtype's own error of the exact one; measured on the demo's
    /// tiny LM (the CPU, 300 greedy prefixes of "a long answer", the top two tokens' logits), bfloat16 against float32 is
    /// within 1.23 ulps (median 0.25). Batch A, which picked a, has l_a − l_b ≥ 0, batch B ≤ 0; each is within 2 × 1.23 of
    /// the exact gap, so that is within 2.46 of zero, and the judge's (a third order, as noisy) within 2.46 more: 4.9 ≈ 5.
    /// (The judge's top-2 spread is not added: where the two tokens are its top two, that spread is the gap itself, and
    /// adding it would pass any gap.) It is lenient on this model (83 of those 300 prefixes had their top two within 4
    /// ulps): what keeps the row a test is the rest — the same step, sequence and finish, both tokens at the top, at
    /// least <see cref="BatchEventsCompare.MinMatched"/> events equal before it.
    /// </summary>
    internal const int Bf16Ulps = 5;

    /// <summary>
    /// float32's: by the same argument, float32 against float64 measured within 10 ulps of the logit (median 1; the dot
    /// products' cancellation makes the error larger than the logit's own ulp): 4 × 10.
    /// </summary>
    internal const int F32Ulps = 40;

    /// <summary>The policy for a model in <paramref name="bfloat16"/> or float32.</summary>
    internal static NearTiePolicy For(bool bfloat16, PrefixLogits logits, Func<int, GenerationOptions>? options = null) =>
        bfloat16 ? new(8, Bf16Ulps, logits, options) : new(24, F32Ulps, logits, options);
}

/// <summary>The comparison's verdict: <see cref="Matched"/> events equal before the first difference (all when none); <see cref="Message"/> says why it failed, or names the near tie it passed on.</summary>
internal sealed record BatchVerdict(bool Pass, int Matched, string Message);

/// <summary>
/// Compares two continuous batches' events (selftest "continuous batch, …"). Exact (policy null): every event equal, the
/// contract on the CPU and the test device, where a row's bits do not depend on the batch. With a <see cref="NearTiePolicy"/>
/// the first difference may be a near tie: the same step, sequence and finish, another token, where one independent
/// forward of that sequence's prefix (<see cref="PrefixLogits"/>) puts both tokens at the top within a few ulps of each
/// other (<see cref="NearTiePolicy.Ulps"/>; a wrong slot — another row's cache, a stale position — is no near tie: its
/// token is not at the top of the right prefix's logits, or far below it); at least <see cref="MinMatched"/> must match
/// before it, so a flip at the start cannot pass vacuously. A flipped token changes that sequence's later prefix, so its
/// later tokens are not compared with the reference's but judged on the flipped batch's own prefix (each must be that
/// prefix's pick within the tolerance); the other sequences' events stay comparable (rows are independent) and are.
/// A sampled sequence's tokens (<see cref="NearTiePolicy.Options"/>) are judged by the draw instead of the top of the
/// logits (JudgeSampled): a near tie there is one at the boundary between two tokens or at the top-k/top-p cut.
/// </summary>
internal static class BatchEventsCompare
{
    /// <summary>Events that must match before a near tie may end the comparison.</summary>
    internal const int MinMatched = 20;

    /// <summary>
    /// Compares <paramref name="got"/> with <paramref name="want"/> (the reference) as the class says. After a near tie in
    /// sequence s the comparison goes on to the end: every later event must have the same step, sequence and finish; the
    /// other sequences' tokens must be equal (or pass as a near tie of their own); and each later token of a sequence that
    /// flipped is judged on <paramref name="got"/>'s own prefix of it (one more forward each): it must be at the top of
    /// those logits within the tolerance. So a tie early in the long answer does not leave the rest of it (the slots' C
    /// growing past 256 keys) unchecked.
    /// </summary>
    internal static BatchVerdict Compare(IReadOnlyList<BatchLine> got, IReadOnlyList<BatchLine> want, string gotName, string wantName, NearTiePolicy? nearTie)
    {
        ArgumentNullException.ThrowIfNull(got);
        ArgumentNullException.ThrowIfNull(want);
        int n = Math.Max(got.Count, want.Count), i = 0;
        while (i < n && i < got.Count && i < want.Count && got[i] == want[i]) i++;
        if (i == n) return new BatchVerdict(true, n, "");
        string Differs(int at, string why) =>
            $"continuous batch: event {at}: {gotName} gave '{(at < got.Count ? got[at] : "nothing")}', {wantName} '{(at < want.Count ? want[at] : "nothing")}'{why}";
        BatchVerdict Fail(string why) => new(false, i, Differs(i, why));
        if (nearTie is null) return Fail(" (bit-equal by contract here: no near tie allowed)");
        if (i >= got.Count || i >= want.Count) return Fail(" (one batch has fewer events)");
        if (i < MinMatched) return Fail($" (a token flip after only {i} matched events; at least {MinMatched} must match before a near tie passes)");
        var diverged = new HashSet<int>();
        string? first = null;
        int judged = 0;
        for (int j = i; j < n; j++)
        {
            if (j >= got.Count || j >= want.Count) return new(false, i, Differs(j, " (one batch has fewer events)"));
            BatchLine g = got[j], w = want[j];
            if (g.Step != w.Step || g.Sequence != w.Sequence || g.Finished != w.Finished)
                return new(false, i, Differs(j, " (not a token flip: only the token and its text may differ at a near tie)"));
            if (diverged.Contains(g.Sequence))
            {
                // This sequence flipped earlier: its prefix in `got` is its own; its token must be that prefix's pick.
                var own = got.Take(j).Where(e => e.Sequence == g.Sequence).Select(e => e.Token).ToList();
                string? why = JudgeAny(nearTie, g.Sequence, own, g.Token, null, out _);
                if (why is not null) return new(false, i, Differs(j, $" (after the near tie of sequence {g.Sequence}, {gotName}'s token is not its own prefix's pick: {why})"));
                judged++;
                continue;
            }
            if (g == w) continue;
            if (g.Token == w.Token) return new(false, i, Differs(j, " (not a token flip: only the token and its text may differ at a near tie)"));
            var generated = want.Take(j).Where(e => e.Sequence == w.Sequence).Select(e => e.Token).ToList();
            string? tie = JudgeAny(nearTie, w.Sequence, generated, g.Token, w.Token, out string numbers);
            if (tie is not null) return new(false, i, Differs(j, $" ({tie})"));
            diverged.Add(w.Sequence);
            first ??= $"continuous batch: near tie at event {j} (step {w.Step}, sequence {w.Sequence}): {gotName} token {g.Token} '{g.Text}', {wantName} token {w.Token} '{w.Text}'; {numbers}; {j} events equal before it";
        }
        return new BatchVerdict(true, i, $"{first}; after it {judged} tokens of the flipped sequence{(diverged.Count > 1 ? "s" : "")} ({string.Join(", ", diverged)}) each at the top of their own prefix's logits, every other event equal");
    }

    /// <summary>The judge for <paramref name="sequence"/>: by the draw where its options sample (<see cref="JudgeSampled"/>), else by the logits (<see cref="Judge"/>).</summary>
    private static string? JudgeAny(NearTiePolicy nearTie, int sequence, List<int> generated, int a, int? b, out string numbers) =>
        nearTie.Options?.Invoke(sequence) is { IsSampling: true } options
            ? JudgeSampled(nearTie, options, sequence, generated, a, b, out numbers)
            : Judge(nearTie, sequence, generated, a, b, out numbers);

    /// <summary>
    /// Null when the judge's logits for <paramref name="sequence"/> after <paramref name="generated"/> put token
    /// <paramref name="a"/> at the top within the tolerance (and, given <paramref name="b"/>, b too with |logit a − logit b|
    /// within it); else why not. <paramref name="numbers"/>: the figures, for the messages.
    /// </summary>
    private static string? Judge(NearTiePolicy nearTie, int sequence, List<int> generated, int a, int? b, out string numbers)
    {
        numbers = "";
        float[] raw;
        double[] pick;
        try { (raw, pick) = nearTie.Logits(sequence, generated); }
        catch (ArgumentException e) { return $"no near-tie judge for sequence {sequence}: {e.Message}"; }
        int bb = b ?? a;
        if (raw.Length != pick.Length || (uint)a >= (uint)raw.Length || (uint)bb >= (uint)raw.Length)
            return $"the judge's logits have {raw.Length}/{pick.Length} entries; tokens {a} and {bb} must be inside both";
        if (pick.Any(double.IsNaN)) return "the judge's logits hold NaN";
        double max = pick.Max();
        int top = Array.IndexOf(pick, max);
        double second = pick.Select((v, k) => (v, k)).Where(x => x.k != top).Select(x => x.v).DefaultIfEmpty(double.NegativeInfinity).Max();
        if (b is null) bb = top; // a single token: judged against the prefix's own pick
        double tol = nearTie.Ulps * Ulp(Math.Max(Math.Abs(raw[a]), Math.Abs(raw[bb])), nearTie.MantissaBits)
            * Math.Max(PenaltyScale(raw[a], pick[a]), PenaltyScale(raw[bb], pick[bb]));
        double gap = pick[a] - pick[bb];
        numbers = $"logit[{a}] − logit[{bb}] = {gap:G4} in one eager forward of the prefix ({generated.Count} generated tokens), tolerance {tol:G4} ({nearTie.Ulps} ulps), its top two {max:G6} and {second:G6}";
        bool AtTop(int t) => pick[t] >= second || max - pick[t] <= tol;
        return Math.Abs(gap) <= tol && AtTop(a) && AtTop(bb) ? null : $"no near tie: {numbers}";
    }

    /// <summary>
    /// The near-tie rule of a sampled sequence (<paramref name="options"/> sample): null when token <paramref name="a"/>
    /// (and, given <paramref name="b"/>, b; else the judge's own draw) could each be the draw of this step under logits
    /// within the tolerance of the judge's. The judge's logits (one eager forward of the prefix, penalised as the sampler
    /// penalises) go through the sampler's own arithmetic (<see cref="TokenSampler.Distribution"/>: temperature, top-k,
    /// softmax, top-p) and the step's draw r is the sequence's seeded stream at index <c>generated.Count</c>
    /// (<see cref="TokenSampler.DrawAt"/>: every earlier token took one draw). The sampler picks the first token, in id
    /// order, whose cumulative probability passes r; so two tokens can trade places by a perturbation of the logits only
    /// (1) where both have mass, no token with mass lies between them in id order, and r lies within the tolerance of the
    /// cumulative boundary B between them (the mass of every token up to the lower one, over the total) — with tokens of
    /// mass between them (a near tie can jump small ones), where logits within the tolerance box make the same draw pick
    /// the token the judge did not draw (exact under the judge's cut, <see cref="WitnessOfPick"/>, plus a grid of points for
    /// cuts that move); or (2) where the
    /// top-k/top-p cut moves by a near tie at the cut: under some logits within the tolerance one of the two tokens enters
    /// or leaves the kept set and the same draw then picks the other one.
    /// <para>
    /// The tolerance: each raw logit may move by half of <see cref="NearTiePolicy.Ulps"/> ulps of itself (the dtype's, as
    /// <see cref="Judge"/>), scaled by the penalty where one applies; the sampler divides by the temperature itself. Why
    /// half: Ulps bounds the judge's gap of two logits (each batch's logit and the judge's within about Ulps / 4 of the
    /// exact one, <see cref="NearTiePolicy.Bf16Ulps"/>), so each logit lies within Ulps / 2 of its value in either batch.
    /// B is a softmax mass, Σ_{i∈S} e^{z_i} / Σ_j e^{z_j} (S: the kept tokens up to the lower one), increasing in every z_i
    /// of S and decreasing in every other: so over the box of perturbations its extremes lie at its corners "S up, the rest
    /// down" and "S down, the rest up", and the window for r is B's range between those two (not symmetric about B),
    /// evaluated by the sampler itself (exact for the box where the cut stays; where the cut moves at a corner, that
    /// corner's boundary is taken as it is — rule (2) is the one for cuts). At a corner B's log-odds move by exactly the
    /// two sides' shifts together, Ulps ulps over the temperature where all logits share an ulp: for two tokens alone at
    /// temperature 1 and a draw of 1/2 the rule is <see cref="Judge"/>'s gap rule. Not vacuous: at bfloat16 logits near 10
    /// (ulp 1/16, 2.5 ulps each, temperature 0.9) a boundary at 0.5 moves by about ±0.086, so a draw far from every
    /// boundary — a wrong slot, a stale cache, a wrong draw index — still fails. Rule (2) tries the corners that move one
    /// token alone against all the others (up or down): each is inside the box.
    /// </para>
    /// </summary>
    private static string? JudgeSampled(NearTiePolicy nearTie, GenerationOptions options, int sequence, List<int> generated, int a, int? b, out string numbers)
    {
        numbers = "";
        float[] raw;
        double[] pick;
        try { (raw, pick) = nearTie.Logits(sequence, generated); }
        catch (ArgumentException e) { return $"no near-tie judge for sequence {sequence}: {e.Message}"; }
        if (raw.Length != pick.Length || (uint)a >= (uint)raw.Length || b is int bv && (uint)bv >= (uint)raw.Length)
            return $"the judge's logits have {raw.Length}/{pick.Length} entries; tokens {a} and {b} must be inside both";
        if (pick.Any(double.IsNaN)) return "the judge's logits hold NaN";
        double[]? p;
        try { p = TokenSampler.Distribution(options, pick); }
        catch (InvalidOperationException e) { return $"the sampler takes no draw from the judge's logits: {e.Message}"; }
        if (p is null) return "the sampler takes no draw from the judge's logits (every one −∞)";
        double r = TokenSampler.DrawAt(options.Seed, generated.Count);
        int drawn = TokenSampler.Draw(p, r);
        int other = b ?? drawn;
        var eps = new double[raw.Length];
        for (int i = 0; i < raw.Length; i++)
        {
            // The penalty scales a seen logit by 1/θ or θ, by its sign, which a perturbation of a logit near 0 may flip: the larger.
            // A non-finite logit (a mask's −∞) has no rounding error to move it; an exact 0 none either (Ulp(0) = 0).
            // Half the gap tolerance per logit: Ulps bounds the gap of two logits (each batch's logit, and the judge's,
            // within Ulps / 4 of the exact one: NearTiePolicy.Bf16Ulps), and the boundary's log-odds move by the two sides'
            // shifts together, so logits of S up by Ulps / 2 and the rest down by as much move it by the greedy gap's Ulps.
            double scale = PenaltyScale(raw[i], pick[i]);
            eps[i] = float.IsFinite(raw[i]) ? nearTie.Ulps / 2.0 * Ulp(Math.Abs(raw[i]), nearTie.MantissaBits) * Math.Max(scale, 1 / scale) : 0;
        }
        double[]? Corner(Func<int, double> sign)
        {
            var q = new double[pick.Length];
            for (int i = 0; i < q.Length; i++) q[i] = pick[i] + sign(i) * eps[i];
            try { return TokenSampler.Distribution(options, q); }
            catch (InvalidOperationException) { return null; }
        }
        string draw = $"draw r = {r:G6} (draw {generated.Count} of seed {options.Seed}) picks {drawn} from one eager forward of the prefix ({generated.Count} generated tokens), p[{a}] = {p[a]:G4}, p[{other}] = {p[other]:G4}";
        numbers = draw;
        if (a == other) return null; // the judge's own draw: the token is this prefix's pick
        var kept = Enumerable.Range(0, p.Length).Where(i => p[i] > 0).ToHashSet();
        string why;
        if (p[a] > 0 && p[other] > 0)
        {
            int lo = Math.Min(a, other), hi = Math.Max(a, other);
            var between = Enumerable.Range(lo + 1, hi - lo - 1).Where(i => p[i] > 0).ToList();
            if (between.Count > 0)
            {
                // Tokens with mass between the two: the draw crosses their intervals only if the noise moves x's boundaries
                // (x: the token the judge did not draw) by more than that mass while r stays inside x's own interval. Both
                // boundaries move together, so the box's vertices alone can overshoot x (a small interval jumped whole).
                // Under the judge's cut the search is exact (WitnessOfPick); where the cut moves with the logits a grid of
                // points is tried besides: ids below x, x, and ids above x each moved by −1, −½, 0, ½ or 1 times their
                // tolerance. Every point tried lies inside the box and the sampler itself confirms the pick, so a pick of
                // x at one is a near tie.
                string notAdjacent = $"tokens {lo} and {hi} are not adjacent in the sampler's order ({between.Count} token{(between.Count > 1 ? "s" : "")} with mass {between.Sum(i => p[i]):G4} between them, first {between[0]})";
                if (drawn != a && drawn != other) why = $"the draw picks neither; {notAdjacent}";
                else
                {
                    int x = drawn == a ? other : a;
                    string Moved(double below, double at, double above) =>
                        $"{draw}; {notAdjacent}, but with ids below {x} moved by {below:+0.###;−0.###;0}, {x} by {at:+0.###;−0.###;0} and ids above by {above:+0.###;−0.###;0} times their tolerance ({nearTie.Ulps / 2.0} ulps each) the same draw picks {x}";
                    if (WitnessOfPick(options, pick, eps, kept, x, r) is (double tb, double tc)
                        && Corner(i => i < x ? tb : i == x ? 1 : tc) is { } qw && TokenSampler.Draw(qw, r) == x)
                    {
                        numbers = Moved(tb, 1, tc);
                        return null;
                    }
                    double[] steps = [-1, -0.5, 0, 0.5, 1];
                    foreach (double below in steps)
                        foreach (double at in steps)
                            foreach (double above in steps)
                                if (Corner(i => i < x ? below : i == x ? at : above) is { } q && TokenSampler.Draw(q, r) == x)
                                {
                                    numbers = Moved(below, at, above);
                                    return null;
                                }
                    why = $"{notAdjacent}, and no logits within the tolerance box ({nearTie.Ulps / 2.0} ulps each) make the draw pick {x}";
                }
            }
            else
            {
                double Boundary(double[] q) { double s = 0, t = 0; for (int i = 0; i < q.Length; i++) { t += q[i]; if (i <= lo) s += q[i]; } return s / t; }
                double bound = Boundary(p);
                double up = Corner(i => i <= lo ? 1 : -1) is { } u ? Boundary(u) : double.NaN;
                double down = Corner(i => i <= lo ? -1 : 1) is { } d ? Boundary(d) : double.NaN;
                // The window is the range the corners span, not symmetric about B: B's log-odds move alike both ways, so
                // B itself not (a boundary at 0.9 moves up less than down); the larger side on both would widen the narrow one.
                // A corner the sampler refuses (NaN) leaves no window.
                double low = Math.Min(bound, Math.Min(down, up)), high = Math.Max(bound, Math.Max(down, up));
                numbers = $"{draw}; cumulative boundary between {lo} and {hi} B = {bound:G6}, within [{down:G6}, {up:G6}] for logits within {nearTie.Ulps / 2.0} ulps each ({nearTie.Ulps} for the gap of two), r − B = {r - bound:G4}";
                if ((drawn == a || drawn == other) && low <= r && r <= high) return null;
                why = drawn != a && drawn != other ? $"the draw picks neither ({numbers})" : $"r is not within the tolerance of the boundary ({numbers})";
            }
        }
        else why = $"token {(p[a] > 0 ? other : a)} is cut (top-k {options.TopK}, top-p {options.TopP}: {kept.Count} tokens kept)";
        // Rule (2): a cut that a near tie moves.
        foreach (int x in new[] { a, other })
            foreach (int sx in new[] { 1, -1 })
            {
                var q = Corner(i => i == x ? sx : -sx);
                if (q is null) continue;
                var keptQ = Enumerable.Range(0, q.Length).Where(i => q[i] > 0).ToHashSet();
                bool moved = keptQ.Contains(a) != kept.Contains(a) || keptQ.Contains(other) != kept.Contains(other);
                int drawnQ = TokenSampler.Draw(q, r);
                if (moved && drawnQ != drawn && (drawnQ == a || drawnQ == other) && (drawn == a || drawn == other))
                {
                    numbers = $"{draw}; with logit {x} {(sx > 0 ? "raised" : "lowered")} by {eps[x]:G4} and every other moved the other way by its tolerance ({nearTie.Ulps / 2.0} ulps each) the top-k/top-p cut keeps {keptQ.Count} tokens instead of {kept.Count} and the draw picks {drawnQ}";
                    return null;
                }
            }
        return $"no near tie of the draw: {why}; nor a near tie at the top-k/top-p cut ({draw})";
    }

    /// <summary>
    /// Moves (tb, tc) ∈ [−1, 1]² of the ids below <paramref name="x"/> and above it, each id by t times its tolerance
    /// <paramref name="eps"/>, with x raised by its whole tolerance, under which the draw <paramref name="r"/> picks x —
    /// where the top-k/top-p cut stays the judge's (<paramref name="kept"/>); null where no logits of the box do. Why this
    /// is exact there: with A, X and C the unnormalised masses of the kept ids below x, of x and of the kept ids above
    /// it, the draw picks x iff A ≤ r·(A + X + C) &lt; A + X, that is A·(1 − r) ≤ r·(X + C) and (A + X)·(1 − r) &gt; r·C.
    /// Raising X loosens both, so x moves up by its whole tolerance; A runs continuously over [A(−1), A(1)] as the ids
    /// below move together (each term between its own extremes), C likewise; for each C the A that work form an interval
    /// that slides with C, so a pair exists iff one of them meets [A(−1), A(1)]. The caller has the sampler confirm the
    /// pick at the moves returned (its rounding, and a cut that the moves shift).
    /// </summary>
    internal static (double Below, double Above)? WitnessOfPick(GenerationOptions options, double[] pick, double[] eps, HashSet<int> kept, int x, double r)
    {
        double temperature = options.Temperature;
        double top = double.NegativeInfinity;
        foreach (int i in kept) top = Math.Max(top, (pick[i] + eps[i]) / temperature);
        if (!double.IsFinite(top) || !kept.Contains(x)) return null;
        double Mass(bool below, double t)
        {
            double m = 0;
            foreach (int i in kept)
                if (below ? i < x : i > x) m += Math.Exp((pick[i] + t * eps[i]) / temperature - top);
            return m;
        }
        double X = Math.Exp((pick[x] + eps[x]) / temperature - top);
        double aLow = Mass(true, -1), aHigh = Mass(true, 1), cLow = Mass(false, -1), cHigh = Mass(false, 1);
        // For a given C the A that work are (r·C / (1 − r) − X, r·(X + C) / (1 − r)]; both ends grow with C, so the C
        // whose interval meets [aLow, aHigh] are those with r·(X + C) / (1 − r) ≥ aLow and r·C / (1 − r) − X < aHigh.
        // The middle of each range, for a witness the sampler's rounding leaves inside. A range may be a single point (no
        // kept ids on one side: its mass is 0 whatever the move): taken, and the caller's sampler check settles the strict
        // inequality there.
        double cFrom = Math.Max(cLow, aLow * (1 - r) / r - X), cTo = Math.Min(cHigh, (aHigh + X) * (1 - r) / r);
        if (!(cFrom <= cTo)) return null;
        double c = (cFrom + cTo) / 2;
        double aFrom = Math.Max(aLow, r * c / (1 - r) - X), aTo = Math.Min(aHigh, r * (X + c) / (1 - r));
        if (!(aFrom <= aTo)) return null;
        return (Solve(true, (aFrom + aTo) / 2), Solve(false, c));

        // The move t ∈ [−1, 1] of one side that gives it the mass wanted: the mass increases with t, so bisect.
        double Solve(bool below, double wanted)
        {
            double lo = -1, hi = 1;
            for (int k = 0; k < 60; k++)
            {
                double mid = (lo + hi) / 2;
                if (Mass(below, mid) < wanted) lo = mid; else hi = mid;
            }
            return (lo + hi) / 2;
        }
    }

    /// <summary>The sampler's probabilities of penalised logits (<see cref="TokenSampler.Distribution"/>; here for the tests, which see this assembly's internals, not the sampler's).</summary>
    internal static double[]? Distribution(GenerationOptions options, double[] penalised) => TokenSampler.Distribution(options, penalised);

    /// <summary>The index draw <paramref name="r"/> picks (<see cref="TokenSampler.Draw"/>).</summary>
    internal static int Draw(double[] p, double r) => TokenSampler.Draw(p, r);

    /// <summary>The <paramref name="index"/>-th draw of a sampler seeded <paramref name="seed"/> (<see cref="TokenSampler.DrawAt"/>).</summary>
    internal static double DrawAt(ulong seed, int index) => TokenSampler.DrawAt(seed, index);

    /// <summary>The spacing of a float with <paramref name="mantissaBits"/> bits of precision at <paramref name="x"/> ≥ 0 (0 at 0).</summary>
    internal static double Ulp(double x, int mantissaBits) => x > 0 ? Math.ScaleB(1.0, Math.ILogB(x) - (mantissaBits - 1)) : 0;

    /// <summary>How much the pick's value scales the raw logit's noise: the repetition penalty's factor (1 without one).</summary>
    private static double PenaltyScale(float raw, double pick) => raw == 0 ? 1 : Math.Abs(pick / raw);
}
