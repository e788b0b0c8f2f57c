using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text;

namespace Parrot.Parrot.Text;

/// <summary>
/// The BPE model over the byte-level alphabet: a pre-tokenized word's UTF-8 bytes start as one symbol
/// each, then the adjacent pair with the lowest merge rank (leftmost first among equals) is merged
/// until no pair has a merge. Runs in O(n log n) per word with a min-heap of candidate merges over a
/// linked list of symbols, as Hugging Face's implementation does. Results are cached per word.
/// </summary>
internal sealed class BytePairEncoder
{
    private const int CacheCapacity = 50_000;
    private const int MaxCachedWordLength = 256;

    private readonly int[] _idOfByte = new int[256];
    // (left id, right id) → (rank << 32) | merged id.
    private readonly PairMap _merges;
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabBySpan;
    private readonly bool _ignoreMerges;
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private int _cacheCount; // ConcurrentDictionary.Count takes every lock, too slow to ask per word
    private readonly ConcurrentDictionary<string, int[]>.AlternateLookup<ReadOnlySpan<char>> _cacheBySpan;

    public BytePairEncoder(Dictionary<string, int> vocab, List<(int Left, int Right, int Merged)> merges, bool ignoreMerges)
    {
        _vocab = vocab;
        _vocabBySpan = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _ignoreMerges = ignoreMerges;
        _cacheBySpan = _cache.GetAlternateLookup<ReadOnlySpan<char>>();
        for (int b = 0; b < 256; b++) _idOfByte[b] = vocab[ByteLevelAlphabet.CharOfByte[b].ToString()];
        _merges = new PairMap(merges.Count);
        for (int rank = 0; rank < merges.Count; rank++)
        {
            var (left, right, merged) = merges[rank];
            // A repeated pair takes the later rank, as in Hugging Face's map building.
            _merges.Set(PairKey(left, right), ((long)rank << 32) | (uint)merged);
        }
    }

    private static long PairKey(int left, int right) => PairMap.Key(left, right);

    /// <summary>Appends the ids of one pre-tokenized word (text before the byte-level mapping).</summary>
    public void EncodeWord(ReadOnlySpan<char> word, List<int> ids)
    {
        if (word.IsEmpty) return;
        if (_cacheBySpan.TryGetValue(word, out var cached))
        {
            ids.AddRange(cached);
            return;
        }
        int maxBytes = Encoding.UTF8.GetMaxByteCount(word.Length);
        byte[]? rented = null;
        Span<byte> bytes = maxBytes <= 1024 ? stackalloc byte[maxBytes] : (rented = ArrayPool<byte>.Shared.Rent(maxBytes));
        try
        {
            // Lone surrogates become U+FFFD's bytes, as in every UTF-8 encoder of JavaScript strings.
            int n = Encoding.UTF8.GetBytes(word, bytes);
            if (n == 1)
            {
                ids.Add(_idOfByte[bytes[0]]);
                return;
            }
            int[] result = (_ignoreMerges ? WholeWordId(bytes[..n]) : null) ?? Merge(bytes[..n]);
            ids.AddRange(result);
            if (word.Length <= MaxCachedWordLength)
            {
                // A full cache is emptied rather than grown: bounded memory, and it refills with what is frequent now.
                if (Volatile.Read(ref _cacheCount) >= CacheCapacity)
                {
                    _cache.Clear();
                    Volatile.Write(ref _cacheCount, 0);
                }
                if (_cacheBySpan.TryAdd(word, result)) Interlocked.Increment(ref _cacheCount);
            }
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>With ignore_merges, a word that is itself in the vocabulary is that one token.</summary>
    private int[]? WholeWordId(ReadOnlySpan<byte> bytes)
    {
        Span<char> mapped = bytes.Length <= 512 ? stackalloc char[bytes.Length] : new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) mapped[i] = ByteLevelAlphabet.CharOfByte[bytes[i]];
        return _vocabBySpan.TryGetValue(mapped, out int id) ? [id] : null;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int[] Merge(ReadOnlySpan<byte> bytes)
    {
        int n = bytes.Length;
        int[] rented = ArrayPool<int>.Shared.Rent(3 * n);
        long[] heap = ArrayPool<long>.Shared.Rent(2 * n + 4);
        try
        {
            // Symbols form a linked list; position i keeps the symbol that began at byte i.
            var symbol = rented.AsSpan(0, n);
            var next = rented.AsSpan(n, n);
            var prev = rented.AsSpan(2 * n, n);
            for (int i = 0; i < n; i++)
            {
                symbol[i] = _idOfByte[bytes[i]];
                next[i] = i + 1 < n ? i + 1 : -1;
                prev[i] = i - 1;
            }
            // Heap entries are (rank << 32) | position: the lowest rank pops first, then the leftmost.
            int heapSize = 0;
            long m;
            for (int i = 0; i + 1 < n; i++)
                if (_merges.TryGet(PairKey(symbol[i], symbol[i + 1]), out m))
                    Push(heap, ref heapSize, (m & ~0xFFFFFFFFL) | (uint)i);
            int count = n;
            while (heapSize > 0)
            {
                long top = Pop(heap, ref heapSize);
                int pos = (int)(uint)top;
                int right = next[pos];
                // Stale entries: the symbol was merged away, or its pair changed since the entry was pushed
                // (ranks are unique per pair, so an equal rank means the same pair).
                if (symbol[pos] < 0 || right < 0) continue;
                if (!_merges.TryGet(PairKey(symbol[pos], symbol[right]), out long merge)
                    || (merge & ~0xFFFFFFFFL) != (top & ~0xFFFFFFFFL)) continue;
                symbol[pos] = (int)(uint)merge;
                symbol[right] = -1;
                int after = next[right];
                next[pos] = after;
                if (after >= 0) prev[after] = pos;
                count--;
                int before = prev[pos];
                if (before >= 0 && _merges.TryGet(PairKey(symbol[before], symbol[pos]), out m))
                    Push(heap, ref heapSize, (m & ~0xFFFFFFFFL) | (uint)before);
                if (after >= 0 && _merges.TryGet(PairKey(symbol[pos], symbol[after]), out m))
                    Push(heap, ref heapSize, (m & ~0xFFFFFFFFL) | (uint)pos);
            }
            var result = new int[count];
            for (int i = 0, k = 0; i >= 0; i = next[i]) result[k++] = symbol[i];
            return result;
        }
        finally
        {
            ArrayPool<int>.Shared.Return(rented);
            ArrayPool<long>.Shared.Return(heap);
        }
    }

    private static void Push(long[] heap, ref int size, long value)
    {
        if (size == heap.Length) throw new InvalidOperationException("BPE heap overflow");
        int i = size++;
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (heap[parent] <= value) break;
            heap[i] = heap[parent];
            i = parent;
        }
        heap[i] = value;
    }

    private static long Pop(long[] heap, ref int size)
    {
        long top = heap[0];
        long last = heap[--size];
        int i = 0;
        while (true)
        {
            int child = 2 * i + 1;
            if (child >= size) break;
            if (child + 1 < size && heap[child + 1] < heap[child]) child++;
            if (heap[child] >= last) break;
            heap[i] = heap[child];
            i = child;
        }
        if (size > 0) heap[i] = last;
        return top;
    }
}
