using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// One row of a decode step as the host samples from it: the whole row of <see cref="Logits"/>, or its candidates
/// (<see cref="Ids"/>, <see cref="Values"/>: <see cref="TopKCandidates"/>), of which the first <see cref="Top"/> are the
/// row's largest logits and the rest those of seen ids not among them (a repetition penalty); with <see cref="Sum"/>
/// the whole row's normalising sum as the device computed it (top-p without top-k); <see cref="Escalated"/>: the row was
/// asked a second time, for more candidates (<see cref="CandidateAsk.Escalation"/>): these candidates, or the whole row
/// where they did not decide it either. With <see cref="Chunk"/> (plain temperature): the row's chunk sums and the raw
/// logits of the one chunk that decides it (<see cref="CandidateAsk.Chunks"/>), no candidates.
/// </summary>
internal readonly record struct LogitsRow(float[]? Logits, int[]? Ids, float[]? Values, int Top, RowSum? Sum = null, bool Escalated = false, ChunkRow? Chunk = null)
{
    public static LogitsRow Chunked(ChunkRow chunk) => new(null, null, null, 0, Chunk: chunk);

    public static LogitsRow Full(float[] logits, bool escalated = false) => new(logits, null, null, 0, null, escalated);

    public static LogitsRow Candidates(int[] ids, float[] values, int top, RowSum? sum = null, bool escalated = false) =>
        new(null, ids, values, top, sum, escalated);
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
/// What a plain-temperature row reads instead of candidates (<see cref="TokenSampler.ChunkToRead(ChunkSums)"/>): its
/// <see cref="ChunkSums"/> at <see cref="Size"/> ids a chunk, then the raw logits of the chunk <see cref="ToRead"/> names
/// (null: the row is read whole), which <see cref="Suffice"/> checks. With <see cref="Penalty"/> (a repetition penalty;
/// the ask's <see cref="CandidateAsk.Seen"/> holds the seen ids) the sums are of the penalised row: the seen ids' raw
/// logits are read first and penalised by it on the host, and the device sums a copy of the row holding those values.
/// </summary>
internal sealed record ChunkAsk(int Size, Func<ChunkSums, int?> ToRead, ChunkCheck Suffice, PenaltyOf? Penalty = null);

/// <summary>A raw logit of id <paramref name="id"/> after the repetition penalty (<see cref="TokenSampler.Penalised"/>: the whole-row sampler's own arithmetic).</summary>
internal delegate double PenaltyOf(float logit, int id);

/// <summary>How a row is read where not whole (<see cref="TopKCandidates.Plan"/>).</summary>
internal enum ReadKind
{
    /// <summary>The whole row of logits (or, greedy without a penalty, the device's argmax: not a candidate read).</summary>
    Whole,
    /// <summary>Its top logits (<see cref="ReadPlan.Count"/> of them), and the seen ids' logits under a penalty; with the row's sum for top-p without top-k.</summary>
    Top,
    /// <summary>Plain temperature sampling: the row's chunk sums and one chunk (<see cref="CandidateAsk.Chunks"/>), no top logits.</summary>
    Chunks,
}

/// <summary>What a row of some options reads (<see cref="TopKCandidates.Plan"/>): <see cref="Count"/> top logits for <see cref="ReadKind.Top"/>, else 0.</summary>
internal readonly record struct ReadPlan(ReadKind Kind, int Count)
{
    /// <summary>Whether the row asks for anything but its whole logits (a <see cref="CandidateAsk"/>).</summary>
    public bool Asks => Kind != ReadKind.Whole;
}

/// <summary>Whether a row's chunk sums with the raw logits of chunk <paramref name="chunk"/> decide its token.</summary>
internal delegate bool ChunkCheck(ChunkSums sums, int chunk, ReadOnlySpan<float> values);

/// <summary>
/// What a row asks to read: its top <see cref="Count"/> logits, and with <see cref="Seen"/> (a repetition penalty) the
/// logits of every id seen so far, gathered on the device; <see cref="Suffice"/> says whether they decide its token.
/// With <see cref="SumSuffice"/> (top-p without top-k, at <see cref="Temperature"/>) the device also computes the row's
/// <see cref="RowSum"/>, read with the values, and that check decides instead. A row its candidates do not decide asks
/// once more for its top <see cref="Escalation"/> (where that is more and still pays) before it is read whole.
/// </summary>
internal sealed record CandidateAsk(int Count, CandidateCheck Suffice, DeviceSeenIds? Seen = null, RowSumCheck? SumSuffice = null, double Temperature = 1, int Escalation = 0)
{
    /// <summary>
    /// After <see cref="SumSuffice"/> refused a row: whether that many top candidates could decide it (null: may). The
    /// escalation skips rows it cannot help (a flat row's nucleus far past <see cref="Escalation"/>): a cost, not a
    /// proof — the escalated candidates are checked as the first ones.
    /// </summary>
    public Func<int, bool>? MayEscalate { get; init; }

    /// <summary>Plain temperature sampling: the row's chunk sums and one chunk instead of candidates (<see cref="Count"/> 0: no top logits read).</summary>
    public ChunkAsk? Chunks { get; init; }

    /// <summary>
    /// Whether reading the candidates costs fewer bytes than the row: 12 a candidate (value and id) and 4 a seen id's
    /// logit (its id is known) against 4 a logit, so 3·count + seen below the vocabulary; with the row's sum the values
    /// read as float64 (16 a candidate, 8 a seen id, 16 the sum): 4·count + 2·seen + 4. Chunk sums: see <see cref="PaysAt"/>.
    /// </summary>
    public bool Pays(int vocab) => PaysAt(Count, vocab);

    /// <summary><see cref="Pays"/> for <paramref name="count"/> top candidates.</summary>
    public bool PaysAt(int count, int vocab) =>
        // Chunk sums: 8 bytes a chunk plus the two maxima (float64), then 4 a logit of one chunk; under a penalty first 4
        // a seen id's raw logit read and 8 its penalised value written back (the one transfer to the device that grows
        // with the seen ids: counted, so a huge seen set does not move more bytes than the row).
        Chunks is { } c ? 8L * (ChunkSums.Count(vocab, c.Size) + 2) + 4L * c.Size + 12L * (Seen?.Count ?? 0) < 4L * vocab
        : SumSuffice is null ? 3L * count + (Seen?.Count ?? 0) < vocab : 4L * count + 2L * (Seen?.Count ?? 0) + 4 < vocab;

    /// <summary>
    /// Whether a row refused at <paramref name="count"/> candidates asks again at <see cref="Escalation"/>: more of them,
    /// and still fewer bytes than the row (the escalation reads 12 a candidate: its seen values and sum are the first
    /// read's; <see cref="PaysAt"/> is the stricter count).
    /// </summary>
    public bool EscalatesFrom(int count, int vocab) => Escalation > count && PaysAt(Escalation, vocab);

    /// <summary>
    /// The ask of <paramref name="sampler"/>'s row: <paramref name="count"/> top logits (<see cref="TopKCandidates.Plan"/>),
    /// its seen ids under a penalty, the row's sum where it samples top-p without top-k, and
    /// <paramref name="escalation"/> top logits asked once more where the first count does not decide the row
    /// (<see cref="TopKCandidates.EscalatedCount"/>; 0: none); a plain-temperature row its chunk sums at
    /// <paramref name="chunkSize"/> ids a chunk instead (<see cref="Chunks"/>; <paramref name="count"/> ignored, the ask's
    /// <see cref="Count"/> 0), of the penalised row under a penalty (its seen ids too).
    /// </summary>
    public static CandidateAsk For(int count, TokenSampler sampler, GenerationOptions options, int escalation = 0, int chunkSize = TopKCandidates.ChunkSize) =>
        sampler.TemperatureOnly
            ? new(0, sampler.CandidatesSuffice, sampler.Penalises ? new DeviceSeenIds(sampler) : null, Temperature: options.Temperature)
            {
                Chunks = new ChunkAsk(chunkSize, sampler.ChunkToRead, sampler.ChunkSuffices, sampler.Penalises ? sampler.Penalised : null),
            }
            : new(count, sampler.CandidatesSuffice, sampler.Penalises ? new DeviceSeenIds(sampler) : null,
                sampler.TopPOnly ? sampler.CandidatesSuffice : null, options.Temperature, escalation)
            { MayEscalate = sampler.TopPOnly ? sampler.TopPEscalationMayDecide : null };
}

/// <summary>
/// The candidates read: <c>Tensor.TopK</c> of the logits on their device (one launch), values and ids read back; for
/// rows whose candidates do not decide their token a second, larger TopK (<see cref="CandidateAsk.Escalation"/>); for any
/// row still not decided (ties past the escalation, NaN, a nucleus wider than it) that row's whole logits in one more
/// read. PARROT_TOPK_CANDIDATES=0 turns the path off (read once).
/// </summary>
internal static class TopKCandidates
{
    /// <summary>Candidates read beyond k: room for ties at the k-th value (a row with more reads its logits).</summary>
    internal const int DefaultMargin = 64;

    /// <summary>
    /// Top-k above this reads the whole row. Up to it the candidates cost less (docs/cuda.md, "Escalated candidates and
    /// top-k up to 4096"): past 2048 the device's TopK sorts in global memory (k·log²k steps), and the host's check and
    /// pick over n candidates (sorts, n log n; measured 1.1 ms at 4096, 1.8–2.9 ms at 8192) reach its O(V) pass over the
    /// whole row (2.5–3 ms at V = 151,936) around k ≈ 8,000; 4096 keeps the host ≥ 2× below it and reads
    /// 12·(k + margin) ≈ 50 KB instead of 600 KB.
    /// </summary>
    internal const int MaxTopK = 4096;

    /// <summary>
    /// The second, larger ask of a row its first candidates did not decide (<see cref="CandidateAsk.Escalation"/>): a
    /// wide nucleus (flat rows, high temperatures, top-p near 1), a greedy row whose penalised top fell to the cut, ties
    /// past the margin. One TopK of this many (global-memory sort) and 12 bytes each read (48 KB) against the whole row's
    /// 600 KB and 2.5–3 ms of host work; the same host bound as <see cref="MaxTopK"/>, and the fuzz's rates at
    /// 1024/2048/4096/8192 (docs/cuda.md) gain little past it.
    /// </summary>
    internal const int EscalatedCount = 4096;

    /// <summary>
    /// Candidates read for top-p without top-k (with the row's sum): the nucleus, and every id ranked above its cut, must be
    /// among them (<see cref="TokenSampler.CandidatesSuffice(ReadOnlySpan{int}, ReadOnlySpan{float}, int, RowSum)"/>);
    /// 256 + the default margin covers peaked rows; a flatter row asks for <see cref="EscalatedCount"/>, then the whole row.
    /// </summary>
    internal const int TopPCount = 256 + DefaultMargin;

    /// <summary>
    /// Ids a chunk for plain temperature sampling (<see cref="ChunkAsk"/>): the row reads 8 bytes a chunk and then one
    /// chunk's 4-byte logits; 8·V/C + 4·C is least near C = √(2V) ≈ 550 for Qwen2 (≈ 4.4 KB a row instead of 600 KB).
    /// </summary>
    internal const int ChunkSize = 512;

    /// <summary>Whether PARROT_TOPK_CANDIDATES allows the path ("0" turns it off), read once.</summary>
    internal static readonly bool Enabled = EnabledBy(Environment.GetEnvironmentVariable("PARROT_TOPK_CANDIDATES"));

    /// <summary>What a value of PARROT_TOPK_CANDIDATES means: off only for "0".</summary>
    internal static bool EnabledBy(string? value) => value?.Trim() != "0";

    /// <summary>
    /// How a row of <paramref name="options"/> over <paramref name="vocab"/> is read: whole where the path does not apply
    /// (off; sampling with top-k above <see cref="MaxTopK"/>; greedy without a repetition penalty, whose argmax is taken
    /// on the device); plain temperature sampling (no top-k, no top-p; with or without a penalty) its chunk sums and one
    /// chunk (<see cref="ReadKind.Chunks"/>, no top logits; <see cref="CandidateAsk.Pays"/> still decides per row);
    /// otherwise its top logits (<see cref="ReadKind.Top"/>): top-p without top-k <paramref name="topP"/>
    /// (<see cref="TopPCount"/>) with the row's sum, sampling with top-k k + margin (with top-p too: the top-k rule then
    /// decides), greedy with a penalty 1 + margin (the seen ids' logits come on top: <see cref="CandidateAsk"/>) — whole
    /// where that count reaches a third of the row (a candidate reads 12 bytes, value and id, where the row reads 4 a
    /// logit: nothing to save; only small test vocabularies get there). A margin below 0 reads every row whole.
    /// </summary>
    internal static ReadPlan Plan(GenerationOptions options, int vocab, int margin = DefaultMargin, int topP = TopPCount)
    {
        if (!Enabled || margin < 0) return default;
        long count;
        if (TokenSampler.IsTopPOnly(options, vocab)) count = topP;
        else if (TokenSampler.IsTemperatureOnly(options, vocab)) return new ReadPlan(ReadKind.Chunks, 0);
        else if (options.IsSampling)
        {
            if (options.TopK <= 0 || options.TopK > MaxTopK) return default;
            count = (long)options.TopK + margin;
        }
        else if (options.RepetitionPenalty == 1) return default;
        else count = 1L + margin;
        return 3 * count < vocab ? new ReadPlan(ReadKind.Top, (int)count) : default;
    }

    /// <summary>How many top logits <see cref="Plan"/> reads for these options: 0 where it reads none (the whole row, or chunk sums).</summary>
    internal static int Count(GenerationOptions options, int vocab, int margin = DefaultMargin, int topP = TopPCount) => Plan(options, vocab, margin, topP).Count;

    /// <summary>
    /// Logits [B, vocab] on their device → row r read as <paramref name="asks"/>[r] says (its candidates, or its whole
    /// logits where neither they nor the escalated ones decide it). Reads: the values and the ids (two), two more where a
    /// row escalates, plus one for the rows read whole.
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
    /// often), then the logits of its seen ids not among them, gathered on the device —; a row they do not decide asks
    /// once more for its top <see cref="CandidateAsk.Escalation"/> (one TopK over all such rows at their largest, its
    /// seen ids' logits and row sum kept from the first read); a row still not decided, or whose ask is null, is read
    /// whole. A plain-temperature row (<see cref="CandidateAsk.Chunks"/>) reads its chunk sums and one chunk instead
    /// (<see cref="ReadChunks"/>). Reads: the values (top and seen in one buffer) and the ids when some row asks for
    /// candidates, two more when some row escalates, two when some row asks for chunk sums (one more before them when a
    /// chunk row is penalised), plus one for every row read whole (the rows gathered on the device, row views).
    /// Host→device: only the seen ids not yet on the device (<see cref="DeviceSeenIds"/>), and the penalised chunk rows'
    /// seen values. Every check only peeks at the sampler's stream: a refused attempt takes no draw.
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
            if (a.Chunks is null && (a.Count < 1 || a.Count > vocab)) throw new ArgumentException($"generate: {a.Count} candidates from a row of {vocab}");
            if (a.Escalation < 0) throw new ArgumentException($"generate: an escalation to {a.Escalation} candidates");
            if (a.Suffice is null) throw new ArgumentException($"generate: row {at[i]} asks for candidates with no check of them");
        }
        using var scope = TensorScope.Begin();
        var rows = new LogitsRow[n];
        var whole = new List<int>();
        var escalated = new HashSet<int>();
        // Plain-temperature rows: chunk sums, then one chunk (two reads for all of them; a third before them, the seen ids'
        // logits, where some row is penalised).
        var chunked = Enumerable.Range(0, n).Where(i => asks[i] is { Chunks: not null } a && a.Pays(vocab)).ToArray();
        if (chunked.Length > 0) ReadChunks(logits, at, asks, chunked, rows, whole);
        var picks = Enumerable.Range(0, n).Where(i => asks[i] is { Chunks: null } a && a.Pays(vocab)).ToArray();
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
            // What the escalation reuses of each row: its seen ids' values (the same logits) and its row sum.
            var seenValues = new float[picks.Length][];
            var rowSum = new RowSum?[picks.Length];
            var escalate = new List<int>();
            int offset = picks.Length * count;
            for (int p = 0; p < picks.Length; p++)
            {
                int s = seenIds[p]?.Length ?? 0;
                seenValues[p] = values.AsSpan(offset, s).ToArray();
                offset += s;
                if (sumAt.TryGetValue(picks[p], out int si)) rowSum[p] = new RowSum(rowSums[si], rowSums[si + 1]);
                var topValues = values.AsSpan(p * count, count);
                if (Decide(asks[picks[p]]!, topIds.AsSpan(p * count, count), topValues, seenIds[p], seenValues[p], rowSum[p], vocab, false) is { } row)
                    rows[picks[p]] = row;
                else if (asks[picks[p]] is var ask && ask!.EscalatesFrom(count, vocab) && MayDecideWithMore(topValues, rowSum[p] is not null)
                    && (ask.MayEscalate?.Invoke(ask.Escalation) ?? true)) escalate.Add(p);
                else whole.Add(picks[p]);
            }
            if (escalate.Count > 0)
            {
                // The second ask: the rows the first did not decide, their top at the largest escalation (two reads).
                int more = escalate.Max(p => asks[picks[p]]!.Escalation);
                var (top2, found2) = Gather(logits, escalate.Select(p => at[picks[p]]).ToArray()).TopK(more);
                var values2 = top2.ToFloatArray();
                var ids2 = found2.ToLongArray();
                for (int e = 0; e < escalate.Count; e++)
                {
                    int p = escalate[e];
                    escalated.Add(picks[p]);
                    if (Decide(asks[picks[p]]!, ids2.AsSpan(e * more, more), values2.AsSpan(e * more, more), seenIds[p], seenValues[p], rowSum[p], vocab, true) is { } row)
                        rows[picks[p]] = row;
                    else whole.Add(picks[p]);
                }
            }
        }
        whole.AddRange(Enumerable.Range(0, n).Where(i => !picks.Contains(i) && !chunked.Contains(i)));
        if (whole.Count > 0)
        {
            // The rows read whole (asked so, or not decided by their candidates), in row order, in one read.
            whole.Sort();
            var flat = Gather(logits, whole.Select(i => at[i]).ToArray()).ToFloatArray();
            for (int w = 0; w < whole.Count; w++) rows[whole[w]] = LogitsRow.Full(flat.AsSpan(w * vocab, vocab).ToArray(), escalated.Contains(whole[w]));
        }
        return rows;
    }

    /// <summary>
    /// The row's candidates (its top ids and values, then its seen ids outside them) where its ask's check says they
    /// decide its token, else null. The checks peek at the sampler's stream and never advance it.
    /// </summary>
    private static LogitsRow? Decide(CandidateAsk ask, ReadOnlySpan<long> topIds, ReadOnlySpan<float> topValues, int[]? seenIds, float[] seenValues,
        RowSum? sum, int vocab, bool escalated)
    {
        int count = topIds.Length;
        var (id, v) = Union(topIds, topValues, seenIds ?? [], seenValues, vocab);
        if (ask.SumSuffice is { } sumCheck)
            return sumCheck(id, v, count, sum!.Value) ? LogitsRow.Candidates(id, v, count, sum, escalated) : null;
        return ask.Suffice(id, v, count) ? LogitsRow.Candidates(id, v, count, escalated: escalated) : null;
    }

    /// <summary>
    /// Whether more of a refused row's top logits could decide it: not where the first ones hold a NaN (TopK ranks NaN
    /// first: the row has one, which every check refuses), nor, for a row-sum check, a +∞ (no finite maximum: refused at
    /// any count).
    /// </summary>
    private static bool MayDecideWithMore(ReadOnlySpan<float> topValues, bool rowSum)
    {
        foreach (float x in topValues)
            if (float.IsNaN(x) || rowSum && float.IsPositiveInfinity(x)) return false;
        return true;
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
    /// Σ exp(x ÷ T − M), x the raw logits as the host reads them (<see cref="AsRead"/>) widened to float64 (no penalty:
    /// the host corrects for the seen ids). Existing
    /// ops only (cast, divide, max, subtract, exp, sum; the reduction accumulates in float64 in any order): the host's
    /// bound on its error (docs/cuda.md) assumes no more than that. Temporary: 8·vocab bytes a row.
    /// </summary>
    private static Tensor DeviceRowSums(Tensor logits, int[] rows, double temperature)
    {
        var x = AsRead(Gather(logits, rows)).To(DType.F64) / temperature;
        var max = x.Max(1, keepDim: true);
        var sum = (x - max).Exp().Sum(1, keepDim: true);
        return Tensor.Concat(1, max, sum).Reshape(2 * rows.Length);
    }

    /// <summary>
    /// The plain-temperature rows <paramref name="chunked"/>: under a repetition penalty first their seen ids' raw logits
    /// (one read for all such rows), penalised on the host (<see cref="ChunkAsk.Penalty"/>) and sent back (one copy to the
    /// device); then their <see cref="ChunkSums"/> (one float64 read for all; a penalised row's of its row with those
    /// values in place, <see cref="DeviceChunkSums"/>), then the chunk each row's sampler names (one read for all, raw
    /// logits: the sampler penalises its own); a row that its sums or its chunk do not decide goes to
    /// <paramref name="whole"/>. The checks peek at the sampler's stream and never advance it.
    /// </summary>
    private static void ReadChunks(Tensor logits, int[] at, CandidateAsk?[] asks, int[] chunked, LogitsRow[] rows, List<int> whole)
    {
        int vocab = logits.Dim(1);
        var penalties = Penalties(logits, at, asks, chunked);
        var parts = new List<Tensor>();
        var offsets = new Dictionary<int, int>();
        int offset = 0;
        // One computation per temperature and chunk size over its rows.
        foreach (var group in chunked.GroupBy(i => (asks[i]!.Temperature, asks[i]!.Chunks!.Size)))
        {
            var rowsOf = group.ToArray();
            var penalised = rowsOf.Select(i => penalties.GetValueOrDefault(i)).ToArray();
            parts.Add(DeviceChunkSums(logits, rowsOf.Select(i => at[i]).ToArray(), group.Key.Temperature, group.Key.Size,
                penalised.Any(x => x is not null) ? penalised : null));
            foreach (int i in rowsOf) { offsets[i] = offset; offset += ChunkSums.Count(vocab, group.Key.Size) + 2; }
        }
        var all = Tensor.Concat(0, parts.ToArray()).ToDoubleArray();
        var reads = new List<(int Row, ChunkSums Sums, int Chunk)>();
        foreach (int i in chunked)
        {
            var chunks = asks[i]!.Chunks!;
            int o = offsets[i];
            var sums = new ChunkSums(all[o], all[o + 1], all[(o + 2)..(o + 2 + ChunkSums.Count(vocab, chunks.Size))], chunks.Size,
                penalties.TryGetValue(i, out var pen) ? pen!.Value.Ids.Dim(0) : 0);
            if (chunks.ToRead(sums) is int c) reads.Add((i, sums, c));
            else whole.Add(i);
        }
        if (reads.Count == 0) return;
        var flat = Tensor.Concat(1, reads.Select(x => logits.Narrow(0, at[x.Row], 1).Narrow(1, x.Chunk * x.Sums.Size, x.Sums.Length(x.Chunk, vocab))).ToArray()).ToFloatArray();
        int at0 = 0;
        foreach (var (row, sums, chunk) in reads)
        {
            int len = sums.Length(chunk, vocab);
            var values = flat.AsSpan(at0, len).ToArray();
            at0 += len;
            if (asks[row]!.Chunks!.Suffice(sums, chunk, values)) rows[row] = LogitsRow.Chunked(new ChunkRow(sums, chunk, values));
            else whole.Add(row);
        }
    }

    /// <summary>
    /// Rows <paramref name="rows"/> of logits [B, vocab] → [B·(2 + chunks)] float64 on the device, per row M = max(x ÷ T),
    /// the maximum max(x) (exact, widened), and Σ exp(x ÷ T − M) over each chunk of <paramref name="size"/> ids (the
    /// last padded with zeros, which add nothing), x the raw logits as the host reads them (<see cref="AsRead"/>) widened
    /// to float64 — where <paramref name="penalties"/>[r] is set, row r's x at those ids replaced by those float64 values
    /// (the host's penalised logits, copied bit for bit: <see cref="Penalise"/>). Existing ops only, as
    /// <see cref="DeviceRowSums"/> (the host's bound assumes no more than float64 sums in any order and exp within 1 ulp),
    /// plus one index copy per penalised row into the float64 copy itself (no temporaries of the vocabulary's size).
    /// Temporary: 16·vocab bytes a row.
    /// </summary>
    internal static Tensor DeviceChunkSums(Tensor logits, int[] rows, double temperature, int size, (Tensor Ids, Tensor Values)?[]? penalties = null)
    {
        var raw = AsRead(Gather(logits, rows));
        int b = rows.Length, vocab = logits.Dim(1), n = ChunkSums.Count(vocab, size), pad = n * size - vocab;
        // To always allocates (raw is never F64 anyway: AsRead narrows it), so p is this method's own tensor and the
        // penalised values may be written into it in place.
        var p = raw.To(DType.F64);
        if (penalties is not null) Penalise(p, penalties);
        var x = p / temperature;
        var max = x.Max(1, keepDim: true);
        var e = (x - max).Exp();
        if (pad > 0) e = Tensor.Concat(1, e, Tensor.Zeros([b, pad], DType.F64, logits.Device));
        var sums = e.Reshape(b, n, size).Sum(2);
        return Tensor.Concat(1, max, p.Max(1, keepDim: true), sums).Reshape(b * (n + 2));
    }

    /// <summary>
    /// Writes <paramref name="penalties"/>[r]'s values (float64 [s]) into row r of the float64 rows <paramref name="x"/>
    /// [B, vocab] at its ids (int64 [s], distinct, in range: the sampler's seen ids), in place: one
    /// <see cref="IBackend.IndexCopy"/> launch per penalised row, the values copied bit for bit (a −0 stays −0), no
    /// temporaries. <paramref name="x"/> must be the caller's own tensor (<see cref="DeviceChunkSums"/>' fresh copy). The
    /// backend's op directly, as <see cref="GatherIds"/>: the ids are the sampler's, distinct and checked on the host, which
    /// is what the CUDA kernel needs (it neither checks nor orders repeated ids; the CPU and the test device refuse them).
    /// </summary>
    private static void Penalise(Tensor x, (Tensor Ids, Tensor Values)?[] penalties)
    {
        for (int r = 0; r < x.Dim(0); r++)
        {
            if (penalties[r] is not var (ids, v) || ids.Dim(0) == 0) continue;
            using var row = x.Narrow(0, r, 1);
            using var values = v.Reshape(1, ids.Dim(0));
            x.Backend.IndexCopy(row, 1, ids, values);
        }
    }

    /// <summary>
    /// The penalised rows among <paramref name="chunked"/> (a <see cref="ChunkAsk.Penalty"/> and at least one seen id):
    /// their seen ids on the device and their penalised values (float64, on the device). The seen ids' raw logits are
    /// gathered on the device and read in one read for all rows (as the host reads logits: float32), penalised on the
    /// host by the row's sampler — the whole-row sampler's own arithmetic, so the device sums the very numbers it would —
    /// and sent in one host→device copy for all rows (8 bytes a seen id).
    /// </summary>
    private static Dictionary<int, (Tensor Ids, Tensor Values)?> Penalties(Tensor logits, int[] at, CandidateAsk?[] asks, int[] chunked)
    {
        var result = new Dictionary<int, (Tensor Ids, Tensor Values)?>();
        var rowsOf = new List<(int Row, int[] Ids, Tensor OnDevice)>();
        foreach (int i in chunked)
        {
            if (asks[i]!.Chunks!.Penalty is null) continue;
            if (asks[i]!.Seen is not { } seen)
                throw new InvalidOperationException($"generate: row {at[i]} asks for penalised chunk sums without its seen ids");
            var (ids, onDevice) = seen.On(logits.Device);
            if (ids.Length > 0) rowsOf.Add((i, ids, onDevice!));
        }
        if (rowsOf.Count == 0) return result;
        var raw = Tensor.Concat(0, rowsOf.Select(x => GatherIds(logits, at[x.Row], x.OnDevice)).ToArray()).ToFloatArray();
        var penalised = new double[raw.Length];
        int o = 0;
        foreach (var (row, ids, _) in rowsOf)
        {
            var penalty = asks[row]!.Chunks!.Penalty!;
            for (int j = 0; j < ids.Length; j++, o++) penalised[o] = penalty(raw[o], ids[j]);
        }
        var up = Tensor.FromArray(penalised, logits.Device, penalised.Length);
        o = 0;
        foreach (var (row, ids, onDevice) in rowsOf)
        {
            result[row] = (onDevice, up.Narrow(0, o, ids.Length));
            o += ids.Length;
        }
        return result;
    }

    /// <summary>
    /// Logits as the host samples from them: the host reads every logit as a float32 (ToFloatArray, the candidates'
    /// values), so float64 logits are rounded to float32 on the device before their sums are taken — else the sums and
    /// the maximum would be those of other numbers than the ones the host walks (up to 2⁻²⁴·|x ÷ T| apart in each
    /// exponent), and a pick proven from them could differ from the whole row's. Other dtypes widen to float32 exactly.
    /// </summary>
    private static Tensor AsRead(Tensor logits) => logits.DType == DType.F64 ? logits.To(DType.F32) : logits;

    /// <summary>Rows <paramref name="at"/> of <paramref name="logits"/>: the tensor itself when that is all of them in order, else their views concatenated on the device.</summary>
    private static Tensor Gather(Tensor logits, int[] at) =>
        at.Length == logits.Dim(0) && at.Select((r, i) => r == i).All(x => x) ? logits
            : Tensor.Concat(0, at.Select(r => logits.Narrow(0, r, 1)).ToArray());
}
