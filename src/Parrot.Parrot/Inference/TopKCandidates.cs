using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// One row of a decode step as the host samples from it: the whole row of <see cref="Logits"/>, or only its largest
/// logits (<see cref="Ids"/>, <see cref="Values"/>: <see cref="TopKCandidates"/>).
/// </summary>
internal readonly record struct LogitsRow(float[]? Logits, int[]? Ids, float[]? Values)
{
    public static LogitsRow Full(float[] logits) => new(logits, null, null);
}

/// <summary>
/// A session that can return each row's top logits instead of the whole row (on a GPU: [B, k + margin] values and ids
/// read back instead of [B, vocab] floats, 151,936 for Qwen2), for top-k sampling with no repetition penalty, where the
/// ids left out cannot change the sampled token (<see cref="TokenSampler.CandidatesSuffice"/>). A row whose candidates do
/// not decide it comes back whole. The same path choice as <see cref="IGreedyDecodingSession"/>: the prefill picks it.
/// </summary>
internal interface ICandidateDecodingSession : IDecodingSession
{
    /// <summary>Whether candidates save anything here (a device whose reads are copies; not the CPU).</summary>
    bool CandidatesPay { get; }

    /// <summary>As <see cref="IDecodingSession.Prefill"/>: each row's top <paramref name="count"/> logits, or the whole row where <paramref name="suffice"/> says no.</summary>
    LogitsRow[] PrefillCandidates(int count, CandidateCheck suffice);

    /// <summary>As <see cref="IDecodingSession.Step"/>, the rows as <see cref="PrefillCandidates"/> gives them.</summary>
    LogitsRow[] StepCandidates(int[] tokens, int count, CandidateCheck suffice);
}

/// <summary>Whether a row's candidates (ids, values) decide its token.</summary>
internal delegate bool CandidateCheck(ReadOnlySpan<int> ids, ReadOnlySpan<float> values);

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

    /// <summary>Whether PARROT_TOPK_CANDIDATES allows the path ("0" turns it off), read once.</summary>
    internal static readonly bool Enabled = EnabledBy(Environment.GetEnvironmentVariable("PARROT_TOPK_CANDIDATES"));

    /// <summary>What a value of PARROT_TOPK_CANDIDATES means: off only for "0".</summary>
    internal static bool EnabledBy(string? value) => value?.Trim() != "0";

    /// <summary>
    /// How many candidates to read for <paramref name="options"/> over <paramref name="vocab"/>, or 0 where the path does
    /// not apply: off, greedy, a repetition penalty (it rescales by history, not by rank), top-k off or above
    /// <see cref="MaxTopK"/>, or k + margin reaching a third of the row (a candidate reads 12 bytes, value and id, where
    /// the row reads 4 a logit: nothing to save; only small test vocabularies get there).
    /// </summary>
    internal static int Count(GenerationOptions options, int vocab, int margin = DefaultMargin)
    {
        if (!Enabled || !options.IsSampling || options.RepetitionPenalty != 1) return 0;
        if (options.TopK <= 0 || options.TopK > MaxTopK || margin < 0) return 0;
        long count = (long)options.TopK + margin;
        return 3 * count < vocab ? (int)count : 0;
    }

    /// <summary>
    /// Logits [B, vocab] on their device → per row its top <paramref name="count"/> (values, ids), or its whole logits
    /// where <paramref name="suffice"/> says the candidates do not decide it. Reads: the values and the ids (two), plus
    /// one for the rows that need their logits.
    /// </summary>
    internal static LogitsRow[] Read(Tensor logits, int count, CandidateCheck suffice)
    {
        if (logits.Rank != 2) throw new ArgumentException($"generate: candidates from logits [B, vocab], got rank {logits.Rank}");
        int b = logits.Dim(0), vocab = logits.Dim(1);
        if (count <= 0 || count > vocab) throw new ArgumentException($"generate: {count} candidates from a row of {vocab}");
        return ReadRows(logits, Enumerable.Range(0, b).ToArray(), Enumerable.Repeat(count, b).ToArray(), Enumerable.Repeat<CandidateCheck?>(suffice, b).ToArray());
    }

    /// <summary>
    /// Rows <paramref name="at"/>[i] of logits [B, vocab] on their device, each read as the host samples from it: where
    /// <paramref name="counts"/>[i] &gt; 0 its top candidates (one TopK over all such rows, of their largest count: more
    /// candidates than a row asked for only decide it more often), or its whole logits where <paramref name="suffice"/>[i]
    /// says they do not decide it; where the count is 0 its whole logits. Reads: the values and the ids when some row
    /// asks for candidates, plus one for every row read whole (the rows gathered on the device, row views).
    /// </summary>
    internal static LogitsRow[] ReadRows(Tensor logits, int[] at, int[] counts, CandidateCheck?[] suffice)
    {
        if (logits.Rank != 2) throw new ArgumentException($"generate: candidates from logits [B, vocab], got rank {logits.Rank}");
        int b = logits.Dim(0), vocab = logits.Dim(1), n = at.Length;
        if (counts.Length != n || suffice.Length != n) throw new ArgumentException($"generate: {n} rows with {counts.Length} candidate counts and {suffice.Length} checks");
        for (int i = 0; i < n; i++)
        {
            if ((uint)at[i] >= (uint)b) throw new ArgumentException($"generate: row {at[i]} of {b} rows of logits");
            if (counts[i] < 0 || counts[i] > vocab) throw new ArgumentException($"generate: {counts[i]} candidates from a row of {vocab}");
            if (counts[i] > 0 && suffice[i] is null) throw new ArgumentException($"generate: row {at[i]} asks for candidates with no check of them");
        }
        using var scope = TensorScope.Begin();
        var rows = new LogitsRow[n];
        var whole = new List<int>();
        var picks = Enumerable.Range(0, n).Where(i => counts[i] > 0).ToArray();
        if (picks.Length > 0)
        {
            int count = picks.Max(i => counts[i]);
            var (top, found) = Gather(logits, picks.Select(i => at[i]).ToArray()).TopK(count);
            var values = top.ToFloatArray();
            var ids = found.ToLongArray();
            for (int p = 0; p < picks.Length; p++)
            {
                var v = values.AsSpan(p * count, count).ToArray();
                var id = new int[count];
                for (int j = 0; j < count; j++)
                {
                    long x = ids[p * count + j];
                    if ((ulong)x >= (ulong)vocab) throw new InvalidOperationException($"generate: TopK returned the id {x}, outside the vocabulary [0, {vocab})");
                    id[j] = (int)x;
                }
                if (suffice[picks[p]]!(id, v)) rows[picks[p]] = new LogitsRow(null, id, v);
                else whole.Add(picks[p]);
            }
        }
        whole.AddRange(Enumerable.Range(0, n).Where(i => counts[i] == 0));
        if (whole.Count > 0)
        {
            // The rows read whole (asked so, or not decided by their candidates), in row order, in one read.
            whole.Sort();
            var flat = Gather(logits, whole.Select(i => at[i]).ToArray()).ToFloatArray();
            for (int w = 0; w < whole.Count; w++) rows[whole[w]] = LogitsRow.Full(flat.AsSpan(w * vocab, vocab).ToArray());
        }
        return rows;
    }

    /// <summary>Rows <paramref name="at"/> of <paramref name="logits"/>: the tensor itself when that is all of them in order, else their views concatenated on the device.</summary>
    private static Tensor Gather(Tensor logits, int[] at) =>
        at.Length == logits.Dim(0) && at.Select((r, i) => r == i).All(x => x) ? logits
            : Tensor.Concat(0, at.Select(r => logits.Narrow(0, r, 1)).ToArray());
}
