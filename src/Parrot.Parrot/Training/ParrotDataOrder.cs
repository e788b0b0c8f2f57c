namespace Parrot.Parrot.Training;

/// <summary>
/// The order samples are visited in: a fresh permutation per epoch, a pure function of (seed, epoch), so
/// the whole state is (epoch, offset) and a resumed run continues exactly where it stopped. The shuffle is
/// our own SplitMix64 Fisher–Yates, not System.Random, whose sequence is not promised across .NET versions.
/// </summary>
internal sealed class ParrotDataOrder(int count, ulong seed)
{
    private int[]? _perm;
    private int _permEpoch = -1;

    /// <summary>Current epoch (0-based).</summary>
    public int Epoch { get; set; }
    /// <summary>Samples of the current epoch already handed out.</summary>
    public int Offset { get; set; }

    /// <summary>The next batch of at most <paramref name="size"/> sample indices; a batch never crosses an epoch's end.</summary>
    public int[] NextBatch(int size)
    {
        if (Offset >= count) { Epoch++; Offset = 0; }
        var perm = Permutation(Epoch);
        int n = Math.Min(size, count - Offset);
        var batch = perm.AsSpan(Offset, n).ToArray();
        Offset += n;
        return batch;
    }

    private int[] Permutation(int epoch)
    {
        if (_permEpoch == epoch) return _perm!;
        var p = new int[count];
        for (int i = 0; i < count; i++) p[i] = i;
        ulong state = seed ^ (0x9E3779B97F4A7C15UL * (ulong)(epoch + 1));
        for (int i = count - 1; i > 0; i--)
        {
            int j = (int)(SplitMix64(ref state) % (ulong)(i + 1));
            (p[i], p[j]) = (p[j], p[i]);
        }
        _perm = p; _permEpoch = epoch;
        return p;
    }

    private static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
