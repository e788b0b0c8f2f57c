namespace Parrot.Parrot.Data.World;

/// <summary>
/// A small counter-based random stream (SplitMix64). Every scene, sample and text document gets its own
/// stream keyed by (seed, stream kind, index), so one part of the world never shifts when the size of
/// another changes, items can be made in parallel, and the output does not depend on .NET's
/// <see cref="Random"/> implementation.
/// </summary>
internal sealed class WorldRandom
{
    private ulong _state;

    private WorldRandom(ulong state) => _state = state;

    /// <summary>The stream for item <paramref name="index"/> of kind <paramref name="stream"/> under <paramref name="seed"/>.</summary>
    public static WorldRandom For(ulong seed, WorldStream stream, long index, long sub = 0)
    {
        ulong h = Mix(seed ^ 0x243F6A8885A308D3UL);
        h = Mix(h ^ ((ulong)stream * 0x9E3779B97F4A7C15UL));
        h = Mix(h ^ ((ulong)index * 0xD1B54A32D192ED03UL));
        h = Mix(h ^ ((ulong)sub * 0x8CB92BA72F3D8DD7UL));
        return new WorldRandom(h);
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        _state += 0x9E3779B97F4A7C15UL;
        return Mix(_state);
    }

    /// <summary>A uniform integer in [0, <paramref name="n"/>).</summary>
    public int Next(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "the range must be positive");
        // 64-bit multiply-high: unbiased enough for n ≤ 2^31 and exactly reproducible everywhere.
        return (int)(((UInt128)NextUInt64() * (ulong)n) >> 64);
    }

    /// <summary>A uniform double in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>True with probability <paramref name="p"/>.</summary>
    public bool Chance(double p) => NextDouble() < p;

    /// <summary>A uniformly chosen element.</summary>
    public T Pick<T>(IReadOnlyList<T> items) => items[Next(items.Count)];

    /// <summary>Shuffles <paramref name="items"/> in place (Fisher–Yates).</summary>
    public void Shuffle<T>(IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

/// <summary>The independent random streams of a world.</summary>
internal enum WorldStream
{
    Stage1Scene = 1,
    Stage2Scene = 2,
    BenchmarkScene = 3,
    TextScene = 4,
    Stage2Languages = 5,
    Stage1Prompt = 6,
    Stage2Dialogue = 7,
    BenchmarkQuestion = 8,
    TextDialogue = 9,
}
