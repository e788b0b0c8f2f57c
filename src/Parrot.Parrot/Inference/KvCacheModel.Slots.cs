using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;

// `parrot bench decoder --continuous` times the continuous batch's step (eager rows against these slots) directly.
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("parrot")]

namespace Parrot.Parrot.Inference;

/// <summary>
/// The continuous batch's decode over the graph-ready static step, with slots (see <see cref="StaticSlots"/>).
/// </summary>
internal sealed partial class KvCacheModel
{
    /// <summary>
    /// Whether PARROT_STATIC_SLOTS allows the continuous batch's slots by default ("0": it decodes eagerly, while the
    /// generator keeps its static session; PARROT_STATIC_DECODE=0 turns both off), read once.
    /// </summary>
    internal static readonly bool StaticSlotsAllowed = StaticDecodeDefault(Environment.GetEnvironmentVariable("PARROT_STATIC_SLOTS"));

    /// <summary>Whether a continuous batch in <paramref name="mode"/> decodes through <see cref="StaticSlots"/> (Auto: also PARROT_STATIC_SLOTS).</summary>
    internal bool UsesSlotsIn(DecodeStepMode mode) => UsesStaticStepIn(mode) && (mode != DecodeStepMode.Auto || StaticSlotsAllowed);

    /// <summary>
    /// A <see cref="Qwen2StaticDecoder"/> (fed by the host, logits kept) of S slots × C positions that sequences of a
    /// <see cref="ContinuousBatch"/> take and leave between steps, so that every step is the same work — one graph
    /// replay on a CUDA device — whoever is in the batch.
    /// <list type="bullet">
    /// <item>A joining sequence is prefilled alone as before (its own <see cref="KvCache"/>) and reserves a free slot
    /// (<see cref="Reserve"/>, at the join); its cache is copied in (<see cref="Load"/>) before the first step that feeds
    /// it — until then the slot stays idle, since the step advances every slot it runs. A leaving one frees its slot
    /// (<see cref="Free"/>: idle, its device position outside the cache, so the step writes nothing for it and its NaN
    /// outputs are ignored). Positions go to the device once, at the next step.</item>
    /// <item>No free slot, or C below what the joining sequence needs (prompt + its max new tokens): a bigger decoder
    /// (S doubled when full; C the need rounded up to a multiple of <see cref="CapacityStep"/>, at most the context),
    /// the live slots copied over on the device, and a new <see cref="GraphedStep"/> (eager once, captured at its second
    /// run). C is what the sequences that joined needed, not the model's context. The decoder is kept while the batch is
    /// empty (the next join reuses it and its graph) unless it holds over four times the positions (S × C) that a fresh
    /// one for the joining sequence would: then it starts again from 1 slot (a past peak does not hold its memory).</item>
    /// <item>The step: <see cref="Qwen2StaticDecoder.Issue"/>, then <see cref="global::Parrot.Nn.GreedyToken.PickInto"/>
    /// over the kept logits into the ids buffer (inside the graph), so a greedy row's next id is already on the device.
    /// Host↔device: the S ids go up (one copy) only when a live slot's id differs from what the device holds (a sampled
    /// row, a join; not while greedy rows feed back their picks; on the CPU also when an idle slot's pick left −1 there,
    /// since the CPU's index_select refuses it), the positions (one copy) only after a join or leave;
    /// the S ids come down (one read) only when some row is greedy, the sampling rows' logits (one read) only when some
    /// row samples whole, the candidates of those that ask for them (values, with a penalised row's seen ids' logits, and ids: two reads,
    /// <see cref="TopKCandidates.ReadRows"/>) only when some row does.</item>
    /// </list>
    /// </summary>
    internal sealed class StaticSlots : IDisposable
    {
        /// <summary>C is rounded up to a multiple of this (so a growth of C is rare).</summary>
        internal const int CapacityStep = 256;

        private readonly KvCacheModel _m;
        private readonly int _context;
        private readonly DecodeStepMode _mode;
        private Qwen2StaticDecoder? _dec;
        private GraphedStep? _step;
        /// <summary>Slots a sequence holds (reserved), and those whose cache is in (loaded: the step runs them).</summary>
        private bool[] _used = [], _loaded = [];
        /// <summary>The ids the device's buffer holds per slot when known (after a read of all of them); null when not.</summary>
        private long[]? _known;
        private bool _positionsStale;
        private bool _disposed;

        public StaticSlots(KvCacheModel m, int contextLength, DecodeStepMode mode)
        {
            if (contextLength < 1) throw new ArgumentOutOfRangeException(nameof(contextLength), $"continuous batch: context length {contextLength}");
            _m = m; _context = contextLength; _mode = mode;
        }

        /// <summary>Slots of the current decoder (S); 0 before the first join.</summary>
        public int Slots => _dec?.Batch ?? 0;

        /// <summary>Positions per slot (C); 0 before the first join.</summary>
        public int Capacity => _dec?.MaxLength ?? 0;

        /// <summary>Slots a sequence holds.</summary>
        public int Live => _used.Count(u => u);

        /// <summary>Slots whose sequence's cache is in (each step feeds every one of them).</summary>
        public int Loaded => _loaded.Count(u => u);

        /// <summary>Decoders built (the first and each growth).</summary>
        public int Builds { get; private set; }

        /// <summary>Operations in the current decoder's captured graph (0 before the capture or without one).</summary>
        public int GraphNodes => _step?.GraphNodes ?? 0;

        /// <summary>Whether the current decoder's step replays a captured CUDA graph.</summary>
        public bool Captured => _step?.Captured ?? false;

        /// <summary>The current decoder (tests: its cache's positions and host lengths).</summary>
        internal Qwen2StaticDecoder? Decoder => _dec;

        /// <summary>
        /// Reserves a free slot for a sequence that needs <paramref name="need"/> positions (prompt + max new tokens, at
        /// most the context), growing the decoder first if there is none or C is below it. Returns the slot (idle until
        /// <see cref="Load"/>).
        /// </summary>
        public int Reserve(int need)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (need < 2 || need > _context) throw new ArgumentException($"continuous batch: a sequence needing {need} positions does not fit the context of {_context} (or has no room to generate)");
            int slot = Array.IndexOf(_used, false);
            int fresh = Math.Min(_context, RoundUp(need));
            if (_dec is not null && Live == 0 && (long)_dec.Batch * _dec.MaxLength > 4L * fresh)
            {
                // The batch is empty and its decoder over four times what this sequence needs (a past peak): start small again.
                _step!.Dispose();
                _dec.Dispose();
                (_step, _dec, _used, _loaded, _known) = (null, null, [], [], null);
                slot = -1;
            }
            if (_dec is null || slot < 0 || need > _dec.MaxLength)
            {
                int s = _dec is null ? 1 : slot < 0 ? 2 * _dec.Batch : _dec.Batch;
                int c = Math.Min(_context, RoundUp(Math.Max(need, _dec?.MaxLength ?? 0)));
                Grow(s, c);
                slot = Array.IndexOf(_used, false);
            }
            _used[slot] = true;
            return slot;
        }

        /// <summary>Copies <paramref name="prefilled"/> (the caller's) into reserved slot <paramref name="slot"/>: the next step runs it.</summary>
        public void Load(int slot, KvCache prefilled)
        {
            ArgumentNullException.ThrowIfNull(prefilled);
            ObjectDisposedException.ThrowIf(_disposed, this);
            if ((uint)slot >= (uint)_used.Length || !_used[slot] || _loaded[slot]) throw new ArgumentException($"continuous batch: slot {slot} is not reserved or already loaded");
            _dec!.LoadSlot(slot, prefilled);
            _loaded[slot] = true;
            _positionsStale = true;
        }

        private static int RoundUp(int n) => (int)Math.Min(int.MaxValue, ((long)n + CapacityStep - 1) / CapacityStep * CapacityStep);

        /// <summary>A decoder of <paramref name="slots"/> × <paramref name="capacity"/> with the live slots of the current one moved over, and its graph step.</summary>
        private void Grow(int slots, int capacity)
        {
            var dec = new Qwen2StaticDecoder(_m._stack, _m._head, slots, capacity, keepLogits: true, greedy: false);
            GraphedStep step;
            try
            {
                for (int r = 0; r < slots; r++) dec.FreeSlot(r);
                if (_dec is not null) dec.TakeSlots(_dec);
                // The greedy pick inside the step: the ids buffer then holds every row's argmax (the greedy rows' next ids).
                step = new GraphedStep(_m._stack.EmbedTokens.Weight.Value.Device, () =>
                {
                    dec.Issue();
                    global::Parrot.Nn.GreedyToken.PickInto(dec.Logits!, dec.Ids);
                }, fallBackToEager: _mode == DecodeStepMode.Auto);
            }
            catch
            {
                dec.Dispose();
                throw;
            }
            _step?.Dispose();
            _dec?.Dispose();
            _dec = dec;
            _step = step;
            Array.Resize(ref _used, slots);
            Array.Resize(ref _loaded, slots);
            if (_known is not null)
            {
                var known = new long[slots];
                _known.CopyTo(known, 0);
                _known = known; // the new rows' ids were never written: zeros, as the buffer was made
            }
            _positionsStale = true;
            Builds++;
        }

        /// <summary>Frees <paramref name="slot"/> (host only: its device position leaves the cache at the next step).</summary>
        public void Free(int slot)
        {
            if (_disposed || _dec is null || (uint)slot >= (uint)_used.Length || !_used[slot]) return;
            _dec.FreeSlot(slot);
            _used[slot] = false;
            _loaded[slot] = false;
            _positionsStale = true;
        }

        /// <summary>
        /// One step of every live slot: <paramref name="slots"/>[i] is fed <paramref name="tokens"/>[i]; a row where
        /// <paramref name="greedy"/> is set gets its device argmax (Ids[i]; Logits[i] null), any other its logits
        /// (Logits[i]; Ids[i] = −1): <see cref="StepRows(IReadOnlyList{KvCache}, int[], bool[])"/>'s contract. Every loaded
        /// slot must be fed (the step advances them all), each once.
        /// </summary>
        public (int[] Ids, float[]?[] Logits) Step(int[] slots, int[] tokens, bool[] greedy)
        {
            var (ids, rows) = Step(slots, tokens, greedy, new CandidateAsk?[greedy.Length]);
            return (ids, rows.Select(r => r.Logits).ToArray());
        }

        /// <summary>
        /// As <see cref="Step(int[], int[], bool[])"/>, a sampling row read as the eager step reads it
        /// (<see cref="StepRows(IReadOnlyList{KvCache}, int[], bool[], CandidateAsk[])"/>): the candidates
        /// <paramref name="asks"/>[i] asks for where it is set and they decide it, else its whole row. Rows[i] of a greedy
        /// row is empty (default).
        /// </summary>
        public (int[] Ids, LogitsRow[] Rows) Step(int[] slots, int[] tokens, bool[] greedy, CandidateAsk?[] asks)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var dec = _dec ?? throw new InvalidOperationException("continuous batch: no sequence joined");
            int b = slots.Length;
            if (tokens.Length != b || greedy.Length != b || b == 0) throw new ArgumentException($"continuous batch: {slots.Length} slots, {tokens.Length} tokens, {greedy.Length} greedy flags");
            CheckPicks(b, greedy, asks);
            if (b != Loaded || slots.Distinct().Count() != b) throw new ArgumentException($"continuous batch: {b} slots fed ({string.Join(", ", slots)}), {Loaded} loaded");
            _m.CheckIds(tokens);
            var ids = _known is { } k ? (long[])k.Clone() : new long[dec.Batch];
            bool changed = _known is null;
            for (int i = 0; i < b; i++)
            {
                int slot = slots[i];
                if ((uint)slot >= (uint)_loaded.Length || !_loaded[slot]) throw new ArgumentException($"continuous batch: slot {slot} is not loaded");
                changed |= ids[slot] != tokens[i];
                ids[slot] = tokens[i];
            }
            // The rows fed nothing (idle slots: their outputs are NaN, so the pick left GreedyToken.NoNumber, −1, there)
            // embed whatever the buffer holds, and their outputs are dropped. An upload writes 0 there (SetIds takes
            // vocabulary ids only). Without one, CUDA's index_select reads nothing for −1 (a zero row), as the test
            // device's backend; the CPU's throws, so there (a memory copy, nothing to save) an idle −1 makes one.
            bool idleMustBeValid = dec.Ids.Device.Kind == DeviceKind.Cpu;
            for (int slot = 0; slot < ids.Length; slot++)
                if ((ulong)ids[slot] >= (ulong)_m.VocabSize)
                {
                    ids[slot] = 0; // a fed slot holds its checked token by now: this is an idle one
                    changed |= idleMustBeValid;
                }
            if (changed) dec.SetIds(ids.Select(x => (int)x).ToArray());
            if (_positionsStale) { dec.UploadPositions(); _positionsStale = false; }
            dec.BeginStep();
            _known = null; // until the read below: a failed step leaves the buffer unknown
            RunGraphed(_step!);
            var picked = new int[b];
            Array.Fill(picked, -1);
            if (greedy.Contains(true))
            {
                var all = dec.Ids.ToLongArray();
                _known = all;
                for (int i = 0; i < b; i++) if (greedy[i]) picked[i] = (int)all[slots[i]];
            }
            var rows = new LogitsRow[b];
            var sampling = Enumerable.Range(0, b).Where(i => !greedy[i]).ToArray();
            if (sampling.Length > 0)
            {
                // The sampling rows' slots of the kept logits [S, vocab], read as the eager step reads them.
                var read = TopKCandidates.ReadRows(dec.Logits!, sampling.Select(i => slots[i]).ToArray(), sampling.Select(i => asks[i]).ToArray());
                for (int j = 0; j < sampling.Length; j++) rows[sampling[j]] = read[j];
            }
            return (picked, rows);
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            _step?.Dispose();
            _dec?.Dispose();
            _step = null;
            _dec = null;
        }
    }
}
