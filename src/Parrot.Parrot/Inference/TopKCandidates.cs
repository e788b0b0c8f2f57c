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
        using var scope = TensorScope.Begin();
        var (top, at) = logits.TopK(count);
        var values = top.ToFloatArray();
        var ids = at.ToLongArray();
        var rows = new LogitsRow[b];
        var whole = new List<int>();
        for (int r = 0; r < b; r++)
        {
            var v = values.AsSpan(r * count, count).ToArray();
            var i = new int[count];
            for (int j = 0; j < count; j++)
            {
                long id = ids[r * count + j];
                if ((ulong)id >= (ulong)vocab) throw new InvalidOperationException($"generate: TopK returned the id {id}, outside the vocabulary [0, {vocab})");
                i[j] = (int)id;
            }
            if (suffice(i, v)) rows[r] = new LogitsRow(null, i, v);
            else whole.Add(r);
        }
        if (whole.Count > 0)
        {
            // The rows the candidates do not decide, gathered on the device (row views) and read together.
            var flat = (whole.Count == b ? logits : Tensor.Concat(0, whole.Select(r => logits.Narrow(0, r, 1)).ToArray())).ToFloatArray();
            for (int w = 0; w < whole.Count; w++) rows[whole[w]] = LogitsRow.Full(flat.AsSpan(w * vocab, vocab).ToArray());
        }
        return rows;
    }
}
