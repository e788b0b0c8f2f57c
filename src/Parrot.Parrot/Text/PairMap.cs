using System.Numerics;
using System.Runtime.CompilerServices;

namespace Parrot.Parrot.Text;

/// <summary>
/// Read-mostly hash map from a token-id pair to a merge (rank, merged id), with open addressing and
/// linear probing over flat arrays: the BPE inner loop looks up every adjacent pair of every new word,
/// and this is several times faster than a Dictionary there.
/// </summary>
internal sealed class PairMap
{
    private const long Empty = -1; // no pair of non-negative ids packs to -1
    private readonly long[] _keys;
    private readonly long[] _values;
    private readonly int _mask;

    public PairMap(int capacity)
    {
        int size = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, capacity * 2)); // load factor ≤ 1/2
        _keys = new long[size];
        _values = new long[size];
        Array.Fill(_keys, Empty);
        _mask = size - 1;
    }

    public static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Slot(long key) => (int)(((ulong)key * 0x9E3779B97F4A7C15UL) >> 40) & _mask;

    /// <summary>Adds or replaces.</summary>
    public void Set(long key, long value)
    {
        int i = Slot(key);
        while (_keys[i] != Empty && _keys[i] != key) i = (i + 1) & _mask;
        _keys[i] = key;
        _values[i] = value;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGet(long key, out long value)
    {
        int i = Slot(key);
        while (true)
        {
            long k = _keys[i];
            if (k == key) { value = _values[i]; return true; }
            if (k == Empty) { value = 0; return false; }
            i = (i + 1) & _mask;
        }
    }
}
