using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Parrot.Parrot.Text;

/// <summary>
/// The BPE merge loop over counted words. Each word is a sequence of token ids, starting from its UTF-8
/// bytes; every step merges the most frequent adjacent pair (counted over words weighted by their
/// frequency) in every word, left to right and without overlap, as the encoder will.
/// <para>
/// Pair counts are kept up to date incrementally: each pair knows the words it occurs in, a merge visits
/// only those words and applies the count changes of the pairs around each merged position, and a
/// max-heap with lazy deletion finds the next pair (an entry whose count went stale is re-queued with the
/// current count when it reaches the top; counts of existing pairs only fall, except when a merge yields
/// a token that already existed, whose grown pairs are re-queued at once).
/// </para>
/// <para>
/// Ties (equal counts) go to the pair with the smaller left id, then the smaller right id. Base ids are in
/// GPT-2 order and merged tokens take ids in creation order, so the outcome depends only on the counts.
/// </para>
/// </summary>
internal sealed class BpeMergeLearner
{
    private readonly List<string> _tokens;
    private readonly Dictionary<string, int> _idOfToken;

    private readonly int[][] _words;
    private readonly int[] _lengths;
    private readonly long[] _wordCounts;
    private readonly int[] _visitedAt;

    private readonly Dictionary<long, int> _slotOfPair = new();
    // Per pair slot, in flat arrays (grown by doubling): the hot loop touches these for every merged position.
    private int _slotCount;
    private long[] _pairOfSlot = new long[1024];
    private long[] _countOfSlot = new long[1024];
    // The words of each pair, as singly linked lists in one pool (millions of small lists as objects
    // would keep the garbage collector busy): the head node per slot, and per node a word and the next node.
    private int[] _headOfSlot = new int[1024];
    private int[] _wordOfNode = new int[1 << 16];
    private int[] _nextOfNode = new int[1 << 16];
    private int _nodeCount;
    private int _freeNode = -1;
    private readonly PriorityQueue<int, (long Count, long Pair)> _queue = new(HighestCountThenSmallestPair.Instance);

    // Slots whose count rose during the current merge, to be queued when it is done.
    private readonly List<int> _grown = new();
    private int[] _grownAt = new int[1024]; // per slot: 1 + the step that last noted it in _grown
    private int _step;

    /// <param name="tokens">The base vocabulary in id order; learned tokens are appended.</param>
    /// <param name="idOfByte">Base id of each byte value.</param>
    /// <param name="words">Each distinct word and its count, in a fixed order.</param>
    public BpeMergeLearner(List<string> tokens, int[] idOfByte, IReadOnlyList<KeyValuePair<string, long>> words)
    {
        _tokens = tokens;
        _idOfToken = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < tokens.Count; id++) _idOfToken[tokens[id]] = id;
        _words = new int[words.Count][];
        _lengths = new int[words.Count];
        _wordCounts = new long[words.Count];
        _visitedAt = new int[words.Count];
        for (int w = 0; w < words.Count; w++)
        {
            // Lone surrogates become U+FFFD's bytes, as in the encoder.
            byte[] bytes = Encoding.UTF8.GetBytes(words[w].Key);
            var ids = new int[bytes.Length];
            for (int i = 0; i < bytes.Length; i++) ids[i] = idOfByte[bytes[i]];
            _words[w] = ids;
            _lengths[w] = ids.Length;
            _wordCounts[w] = words[w].Value;
        }
        CountInitialPairs();
    }

    /// <summary>Merges learned so far, in rank order, as the ids of their two parts.</summary>
    public List<(int Left, int Right)> Merges { get; } = new();

    private void CountInitialPairs()
    {
        for (int w = 0; w < _words.Length; w++)
        {
            int[] s = _words[w];
            for (int i = 0; i + 1 < s.Length; i++) AddToPair(s[i], s[i + 1], _wordCounts[w], w);
        }
        for (int slot = 0; slot < _slotCount; slot++)
            _queue.Enqueue(slot, (_countOfSlot[slot], _pairOfSlot[slot]));
        _grown.Clear();
    }

    /// <summary>
    /// Merges until the vocabulary has <paramref name="vocabularySize"/> tokens or no pair occurs at least
    /// <paramref name="minPairFrequency"/> times.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Run(int vocabularySize, int minPairFrequency)
    {
        while (_tokens.Count < vocabularySize && _queue.TryDequeue(out int slot, out var queued))
        {
            long count = _countOfSlot[slot];
            if (count != queued.Count)
            {
                if (count > 0) _queue.Enqueue(slot, (count, queued.Pair));
                continue;
            }
            if (count < minPairFrequency) break;
            int left = (int)(queued.Pair >> 32), right = (int)(uint)queued.Pair;
            string merged = _tokens[left] + _tokens[right];
            // The same string can be reached by two merge paths ("ab"+"c", "a"+"bc"): it keeps one id.
            ref int id = ref CollectionsMarshal.GetValueRefOrAddDefault(_idOfToken, merged, out bool exists);
            if (!exists)
            {
                id = _tokens.Count;
                _tokens.Add(merged);
            }
            Merges.Add((left, right));
            ApplyMerge(slot, left, right, id);
        }
    }

    private void ApplyMerge(int slot, int left, int right, int merged)
    {
        _step++;
        // The list may name a word twice or name words that lost the pair since: both are harmless.
        // Its nodes go back to the pool as they are read (merging never adds to this pair's own list).
        int node = _headOfSlot[slot];
        _headOfSlot[slot] = -1;
        while (node >= 0)
        {
            int w = _wordOfNode[node], next = _nextOfNode[node];
            _nextOfNode[node] = _freeNode;
            _freeNode = node;
            node = next;
            if (_visitedAt[w] == _step) continue;
            _visitedAt[w] = _step;
            MergeInWord(w, left, right, merged);
        }
        foreach (int grown in _grown)
            if (_countOfSlot[grown] > 0) _queue.Enqueue(grown, (_countOfSlot[grown], _pairOfSlot[grown]));
        _grown.Clear();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void MergeInWord(int w, int left, int right, int merged)
    {
        int[] s = _words[w];
        int n = _lengths[w];
        long c = _wordCounts[w];
        int j = 0;
        for (int i = 0; i < n;)
        {
            if (i + 1 < n && s[i] == left && s[i + 1] == right)
            {
                // The output so far ends in merged tokens already, so the left neighbour is s[j - 1].
                if (j > 0)
                {
                    AddToPair(s[j - 1], left, -c, w);
                    AddToPair(s[j - 1], merged, c, w);
                }
                AddToPair(left, right, -c, w);
                if (i + 2 < n)
                {
                    AddToPair(right, s[i + 2], -c, w);
                    AddToPair(merged, s[i + 2], c, w);
                }
                s[j++] = merged;
                i += 2;
            }
            else s[j++] = s[i++];
        }
        _lengths[w] = j;
    }

    private void AddToPair(int left, int right, long delta, int word)
    {
        long pair = PairMap.Key(left, right);
        ref int slot = ref CollectionsMarshal.GetValueRefOrAddDefault(_slotOfPair, pair, out bool exists);
        if (!exists)
        {
            slot = NewSlot(pair);
        }
        int s = slot;
        _countOfSlot[s] += delta;
        if (delta <= 0) return;
        int head = _headOfSlot[s];
        if (head < 0 || _wordOfNode[head] != word) _headOfSlot[s] = NewNode(word, head);
        if (_grownAt[s] != _step + 1)
        {
            _grownAt[s] = _step + 1; // + 1: step 0 (the initial count) must not look like "already noted"
            _grown.Add(s);
        }
    }

    private int NewSlot(long pair)
    {
        if (_slotCount == _pairOfSlot.Length)
        {
            int size = 2 * _slotCount;
            Array.Resize(ref _pairOfSlot, size);
            Array.Resize(ref _countOfSlot, size);
            Array.Resize(ref _headOfSlot, size);
            Array.Resize(ref _grownAt, size);
        }
        int slot = _slotCount++;
        _pairOfSlot[slot] = pair;
        _countOfSlot[slot] = 0;
        _headOfSlot[slot] = -1;
        return slot;
    }

    private int NewNode(int word, int next)
    {
        int node = _freeNode;
        if (node >= 0) _freeNode = _nextOfNode[node];
        else
        {
            if (_nodeCount == _wordOfNode.Length)
            {
                Array.Resize(ref _wordOfNode, 2 * _nodeCount);
                Array.Resize(ref _nextOfNode, 2 * _nodeCount);
            }
            node = _nodeCount++;
        }
        _wordOfNode[node] = word;
        _nextOfNode[node] = next;
        return node;
    }

    private sealed class HighestCountThenSmallestPair : IComparer<(long Count, long Pair)>
    {
        public static readonly HighestCountThenSmallestPair Instance = new();

        // PriorityQueue dequeues the smallest element, so "smaller" means "merge first".
        public int Compare((long Count, long Pair) a, (long Count, long Pair) b) =>
            a.Count != b.Count ? b.Count.CompareTo(a.Count) : a.Pair.CompareTo(b.Pair);
    }
}
