using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// One row of a decode step as the host samples from it: the whole row of <see cref="Logits"/>, or its candidates
/// (<see cref="Ids"/>, <see cref="Values"/>: <see cref="TopKCandidates"/>), of which the first <see cref="Top"/> are the
/// row's largest logits and the rest those of seen ids not among them (a repetition penalty); with <see cref="Sum"/>
/// the whole row's normalising sum as the device computed it (top-p without top-k).
/// </summary>
internal readonly record struct LogitsRow(float[]? Logits, int[]? Ids, float[]? Values, int Top, RowSum? Sum = null)
{
    public static LogitsRow Full(float[] logits) => new(logits, null, null, 0);

    public static LogitsRow Candidates(int[] ids, float[] values, int top, RowSum? sum = null) => new(null, ids, values, top, sum);
}

/// <summary>
/// A session that can return each row's candidates instead of the whole row (on a GPU: [B, k + margin] values and ids,
/// and the seen ids' logits under a repetition penalty, read back instead of [B, vocab] floats, 151,936 for Qwen2), for
/// top-k sampling and greedy decoding with a penalty, where the ids left out cannot change the token
/// (<see cref="TokenSampler.CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int)"/>). A row whose candidates do
/// not decide it comes back whole. The same path choice as <see cref="IGreedyDecodingSession"/>: the prefill picks it.
/// </summary>
internal interface ICandidateDecodingSession : IDecodingSession
{
    /// <summary>Whether candidates save anything here (a device whose reads are copies; not the CPU).</summary>
    bool CandidatesPay { get; }

    /// <summary>As <see cref="IDecodingSession.Prefill"/>: row r read as <paramref name="asks"/>[r] says, or whole where its check says no.</summary>
    LogitsRow[] PrefillCandidates(CandidateAsk[] asks);

    /// <summary>As <see cref="IDecodingSession.Step"/>, the rows as <see cref="PrefillCandidates"/> gives them.</summary>
    LogitsRow[] StepCandidates(int[] tokens, CandidateAsk[] asks);
}

/// <summary>
/// Whether a row's candidates (ids, values: the first <paramref name="top"/> its largest logits, the rest seen ids'
/// logits) decide its token.
/// </summary>
internal delegate bool CandidateCheck(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, int top);

/// <summary>
/// Whether a row's candidates with its device-computed <see cref="RowSum"/> decide its token (top-p without top-k).
/// </summary>
internal delegate bool RowSumCheck(ReadOnlySpan<int> ids, ReadOnlySpan<float> values, int top, RowSum sum);

/// <summary>
/// What a row asks to read: its top <see cref="Count"/> logits, and with <see cref="Seen"/> (a repetition penalty) the
/// logits of every id seen so far, gathered on the device; <see cref="Suffice"/> says whether they decide its token.
/// With <see cref="SumSuffice"/> (top-p without top-k, at <see cref="Temperature"/>) the device also computes the row's
/// <see cref="RowSum"/>, read with the values, and that check decides instead.
/// </summary>
internal sealed record CandidateAsk(int Count, CandidateCheck Suffice, DeviceSeenIds? Seen = null, RowSumCheck? SumSuffice = null, double Temperature = 1)
{
    /// <summary>
    /// Whether reading the candidates costs fewer bytes than the row: 12 a candidate (value and id) and 4 a seen id's
    /// logit (its id is known) against 4 a logit, so 3·count + seen below the vocabulary; with the row's sum the values
    /// read as float64 (16 a candidate, 8 a seen id, 16 the sum): 4·count + 2·seen + 4.
    /// </summary>
    public bool Pays(int vocab) => SumSuffice is null ? 3L * Count + (Seen?.Count ?? 0) < vocab : 4L * Count + 2L * (Seen?.Count ?? 0) + 4 < vocab;

    /// <summary>
    /// The ask of <paramref name="sampler"/>'s row: <paramref name="count"/> top logits (<see cref="TopKCandidates.Count"/>),
    /// its seen ids under a penalty, and the row's sum where it samples top-p without top-k.
    /// </summary>
    public static CandidateAsk For(int count, TokenSampler sampler, GenerationOptions options) =>
        new(count, sampler.CandidatesSuffice, sampler.Penalises ? new DeviceSeenIds(sampler) : null,
            sampler.TopPOnly ? sampler.CandidatesSuffice : null, options.Temperature);
}

/// <summary>
/// The candidates read: <c>Tensor.TopK</c> of the logits on their device (one launch), values and ids read back, and
/// for any row whose candidates do not decide its token (ties at the k-th value past the margin, NaN) that row's whole
/// logits in one more read. PARROT_TOPK_CANDIDATES=0 turns the path off (read once).
/// </summary>
internal static class TopKCandidates
{
    /// <summary>Candidates read beyond k: room for ties at the k-th value (a row with more reads its logits).</summary>
    internal const int DefaultMargin = 64;

    /// <summary>Top-k above this reads the whole row (the read saved shrinks, the host's candidate sort grows).</summary>
    internal const int MaxTopK = 1024;

    /// <summary>
    /// Candidates read for top-p without top-k (with the row's sum): the nucleus, and every id ranked above its cut, must be
    /// among them (<see cref="TokenSampler.CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int, RowSum)"/>);
    /// 256 + the default margin covers peaked rows, a flatter row falls back to the whole row.
    /// </summary>
    internal const int TopPCount = 256 + DefaultMargin;

    /// <summary>Whether PARROT_TOPK_CANDIDATES allows the path ("0" turns it off), read once.</summary>
    internal static readonly bool Enabled = EnabledBy(Environment.GetEnvironmentVariable("PARROT_TOPK_CANDIDATES"));

    /// <summary>What a value of PARROT_TOPK_CANDIDATES means: off only for "0".</summary>
    internal static bool EnabledBy(string? value) => value?.Trim() != "0";

    /// <summary>
    /// How many top candidates to read for <paramref name="options"/> over <paramref name="vocab"/>, or 0 where the path
    /// does not apply: off; sampling without top-k and top-p (a plain temperature draw walks every id) or with top-k
    /// above <see cref="MaxTopK"/>; top-p without top-k reads <paramref name="topP"/> (<see cref="TopPCount"/>) and the row's sum; greedy without a repetition penalty (its argmax is taken on the device). Sampling reads
    /// k + margin, greedy with a penalty 1 + margin (the seen ids' logits come on top: <see cref="CandidateAsk"/>). 0 also
    /// where that count reaches a third of the row (a candidate reads 12 bytes, value and id, where the row reads 4 a
    /// logit: nothing to save; only small test vocabularies get there).
    /// </summary>
    internal static int Count(GenerationOptions options, int vocab, int margin = DefaultMargin, int topP = TopPCount)
    {
        if (!Enabled || margin < 0) return 0;
        long count;
        if (TokenSampler.IsTopPOnly(options, vocab)) count = topP;
        else if (options.IsSampling)
        {
            if (options.TopK <= 0 || options.TopK > MaxTopK) return 0;
            count = (long)options.TopK + margin;
        }
        else if (options.RepetitionPenalty == 1) return 0;
        else count = 1L + margin;
        return 3 * count < vocab ? (int)count : 0;
    }

    /// <summary>
    /// Logits [B, vocab] on their device → row r read as <paramref name="asks"/>[r] says (its candidates, or its whole
    /// logits where they do not decide it). Reads: the values and the ids (two), plus one for the rows read whole.
    /// </summary>
    internal static LogitsRow[] Read(Tensor logits, CandidateAsk[] asks)
    {
        if (logits.Rank != 2) throw new ArgumentException($"generate: candidates from logits [B, vocab], got rank {logits.Rank}");
        int b = logits.Dim(0);
        if (asks.Length != b || asks.Any(a => a is null)) throw new ArgumentException($"generate: {asks.Length} candidate asks (none null) for {b} rows");
        return ReadRows(logits, Enumerable.Range(0, b).ToArray(), asks);
    }

    /// <summary>
    /// Rows <paramref name="at"/>[i] of logits [B, vocab] on their device, each read as the host samples from it: where
    /// <paramref name="asks"/>[i] is set (and reading its candidates <see cref="CandidateAsk.Pays"/>) its candidates — the
    /// top values of one TopK over all such rows at their largest count (more than a row asked for only decides it more
    /// often), then the logits of its seen ids not among them, gathered on the device —, or its whole logits where its
    /// check says they do not decide it; where the ask is null its whole logits. Reads: the values (top and seen in one
    /// buffer) and the ids when some row asks for candidates, plus one for every row read whole (the rows gathered on
    /// the device, row views). Host→device: only the seen ids not yet on the device (<see cref="DeviceSeenIds"/>).
    /// </summary>
    internal static LogitsRow[] ReadRows(Tensor logits, int[] at, CandidateAsk?[] asks)
    {
        if (logits.Rank != 2) throw new ArgumentException($"generate: candidates from logits [B, vocab], got rank {logits.Rank}");
        int b = logits.Dim(0), vocab = logits.Dim(1), n = at.Length;
        if (asks.Length != n) throw new ArgumentException($"generate: {n} rows with {asks.Length} candidate asks");
        for (int i = 0; i < n; i++)
        {
            if ((uint)at[i] >= (uint)b) throw new ArgumentException($"generate: row {at[i]} of {b} rows of logits");
            if (asks[i] is not { } a) continue;
            if (a.Count < 1 || a.Count > vocab) throw new ArgumentException($"generate: {a.Count} candidates from a row of {vocab}");
            if (a.Suffice is null) throw new ArgumentException($"generate: row {at[i]} asks for candidates with no check of them");
        }
        using var scope = TensorScope.Begin();
        var rows = new LogitsRow[n];
        var whole = new List<int>();
        var picks = Enumerable.Range(0, n).Where(i => asks[i] is { } a && a.Pays(vocab)).ToArray();
        if (picks.Length > 0)
        {
            int count = picks.Max(i => asks[i]!.Count);
            var (top, found) = Gather(logits, picks.Select(i => at[i]).ToArray()).TopK(count);
            // The seen ids' logits of each penalised row, on the device, after the top values: one read for all.
            var parts = new List<Tensor> { top.Reshape(picks.Length * count) };
            var seenIds = new int[picks.Length][];
            for (int p = 0; p < picks.Length; p++)
            {
                if (asks[picks[p]]!.Seen is not { } seen) continue;
                var (ids, onDevice) = seen.On(logits.Device);
                seenIds[p] = ids;
                if (ids.Length > 0) parts.Add(GatherIds(logits, at[picks[p]], onDevice!));
            }
            // Rows that ask for their sum (top-p without top-k): max and Σ exp on the device in float64, after the values
            // in the same read (the values widened to float64, exactly).
            var sums = picks.Where(i => asks[i]!.SumSuffice is not null).ToArray();
            float[] values;
            double[] rowSums = [];
            var sumAt = new Dictionary<int, int>();
            int sumOffset = 0;
            if (sums.Length == 0) values = (parts.Count == 1 ? parts[0] : Tensor.Concat(0, parts.ToArray())).ToFloatArray();
            else
            {
                int valueCount = parts.Sum(x => x.Dim(0));
                // One computation per temperature over its rows (their (max, sum) pairs in that order).
                foreach (var group in sums.GroupBy(i => asks[i]!.Temperature))
                {
                    var rowsOf = group.ToArray();
                    parts.Add(DeviceRowSums(logits, rowsOf.Select(i => at[i]).ToArray(), group.Key));
                    foreach (int i in rowsOf) { sumAt[i] = sumOffset; sumOffset += 2; }
                }
                var all = Tensor.Concat(0, parts.Select(x => x.DType == DType.F64 ? x : x.To(DType.F64)).ToArray()).ToDoubleArray();
                values = new float[valueCount];
                for (int j = 0; j < valueCount; j++) values[j] = (float)all[j];
                rowSums = all[valueCount..];
            }
            var topIds = found.ToLongArray();
            int offset = picks.Length * count;
            for (int p = 0; p < picks.Length; p++)
            {
                var (id, v) = Union(topIds.AsSpan(p * count, count), values.AsSpan(p * count, count), seenIds[p] ?? [],
                    values.AsSpan(offset, seenIds[p]?.Length ?? 0), vocab);
                offset += seenIds[p]?.Length ?? 0;
                var ask = asks[picks[p]]!;
                if (ask.SumSuffice is { } sumCheck)
                {
                    int si = sumAt[picks[p]];
                    var sum = new RowSum(rowSums[si], rowSums[si + 1]);
                    if (sumCheck(id, v, count, sum)) rows[picks[p]] = LogitsRow.Candidates(id, v, count, sum);
                    else whole.Add(picks[p]);
                }
                else if (ask.Suffice(id, v, count)) rows[picks[p]] = LogitsRow.Candidates(id, v, count);
                else whole.Add(picks[p]);
            }
        }
        whole.AddRange(Enumerable.Range(0, n).Where(i => !picks.Contains(i)));
        if (whole.Count > 0)
        {
            // The rows read whole (asked so, or not decided by their candidates), in row order, in one read.
            whole.Sort();
            var flat = Gather(logits, whole.Select(i => at[i]).ToArray()).ToFloatArray();
            for (int w = 0; w < whole.Count; w++) rows[whole[w]] = LogitsRow.Full(flat.AsSpan(w * vocab, vocab).ToArray());
        }
        return rows;
    }

    /// <summary>
    /// A row's candidates: its top ids and values (in TopK's order), then each seen id not among them with its value.
    /// </summary>
    internal static (int[] Ids, float[] Values) Union(ReadOnlySpan<long> topIds, ReadOnlySpan<float> topValues, int[] seenIds, ReadOnlySpan<float> seenValues, int vocab)
    {
        int count = topIds.Length;
        var inTop = new HashSet<int>(count);
        var ids = new List<int>(count + seenIds.Length);
        var values = new List<float>(count + seenIds.Length);
        for (int j = 0; j < count; j++)
        {
            long x = topIds[j];
            if ((ulong)x >= (ulong)vocab) throw new InvalidOperationException($"generate: TopK returned the id {x}, outside the vocabulary [0, {vocab})");
            if (!inTop.Add((int)x)) throw new InvalidOperationException($"generate: TopK returned the id {x} twice");
            ids.Add((int)x);
            values.Add(topValues[j]);
        }
        for (int j = 0; j < seenIds.Length; j++)
        {
            if (inTop.Contains(seenIds[j])) continue;
            ids.Add(seenIds[j]);
            values.Add(seenValues[j]);
        }
        return (ids.ToArray(), values.ToArray());
    }

    /// <summary>
    /// Row <paramref name="row"/> of logits [B, vocab] at <paramref name="ids"/> (int64 [s] on the device, checked on the
    /// host: the seen ids are the sampler's) → [s] on the device. The backend's copy directly: the front-end's
    /// <c>IndexSelect</c> would queue a device check of the ids that the next read fetches, one more copy.
    /// </summary>
    private static Tensor GatherIds(Tensor logits, int row, Tensor ids)
    {
        int s = ids.Dim(0);
        var y = Tensor.Empty([1, s], logits.DType, logits.Device);
        logits.Backend.IndexSelect(logits.Narrow(0, row, 1), 1, ids, y);
        return y.Reshape(s);
    }

    /// <summary>
    /// Rows <paramref name="rows"/> of logits [B, vocab] → [2·rows] float64 on the device, per row M = max(x ÷ T) and
    /// Σ exp(x ÷ T − M), x the raw logits widened to float64 (no penalty: the host corrects for the seen ids). Existing
    /// ops only (cast, divide, max, subtract, exp, sum; the reduction accumulates in float64 in any order): the host's
    /// bound on its error (docs/cuda.md) assumes no more than that. Temporary: 8·vocab bytes a row.
    /// </summary>
    private static Tensor DeviceRowSums(Tensor logits, int[] rows, double temperature)
    {
        var x = Gather(logits, rows).To(DType.F64) / temperature;
        var max = x.Max(1, keepDim: true);
        var sum = (x - max).Exp().Sum(1, keepDim: true);
        return Tensor.Concat(1, max, sum).Reshape(2 * rows.Length);
    }

    /// <summary>Rows <paramref name="at"/> of <paramref name="logits"/>: the tensor itself when that is all of them in order, else their views concatenated on the device.</summary>
    private static Tensor Gather(Tensor logits, int[] at) =>
        at.Length == logits.Dim(0) && at.Select((r, i) => r == i).All(x => x) ? logits
            : Tensor.Concat(0, at.Select(r => logits.Narrow(0, r, 1)).ToArray());
}
