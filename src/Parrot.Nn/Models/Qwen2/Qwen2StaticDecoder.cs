using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Models.Qwen2;

/// <summary>
/// Decoding of a Qwen2 decoder stack (a <see cref="Qwen2ForCausalLM"/>, or any <see cref="Qwen2Model"/> with its head,
/// such as Parrot's) where one token's step is the same work every token: a fixed
/// device buffer of ids [B] (<see cref="Ids"/>), positions on the device (<see cref="StaticKvCache"/>), the model's
/// whole RoPE tables indexed there, and the step's argmax written back into the ids buffer, device to device. So
/// <see cref="Issue"/> makes no host read or write, launches the same kernels with the same arguments each token, and
/// allocates the same sizes in the same order (each layer's temporaries go back to the allocator before the next
/// layer, as in the eager path): what a CUDA graph capture of one step needs. The host reads the tokens only when it
/// wants them (<see cref="ReadTokens"/>). The numbers are the eager KV-cache decode's bit for bit (the same ops on the
/// same values; on a GPU the decode attention takes its key ranges from the keys a row sees, not from the grid sized for
/// the cache's capacity).
/// </summary>
/// <remarks>
/// Use: <see cref="Prefill"/> once (eager: each prompt alone through an ordinary <see cref="KvCache"/>, copied into the
/// static cache; the first greedy token lands in <see cref="Ids"/>), then <see cref="Step"/> per token. A graph
/// wrapper captures <see cref="Issue"/> (the device half) once and, per token, calls <see cref="BeginStep"/> (the host
/// half: the room check) and replays it. Batch rows may hold prompts of different lengths. The embedding of the ids
/// buffer skips the index check (its ids are the prompts' checked last tokens or an argmax over the vocabulary; a
/// deferred check would take a different slot each step and a host read every few dozen). The argmax is
/// <see cref="GreedyToken.PickInto"/>'s: −1 (<see cref="GreedyToken.NoNumber"/>) for a row whose logits hold no number
/// (NaN and −∞ only), which <see cref="ReadTokens"/> and <see cref="ReadGenerated"/> return as it is; a caller reads
/// and checks the tokens before the next step (the generator's sessions do, every step). A step fed −1 reads nothing
/// out of bounds: CUDA's index_select gives a zero row for it, the CPU's throws.
/// <para>Fed by the host (greedy: false; the generator's sessions, which pick tokens on the host, greedy or sampled):
/// rows prefilled elsewhere go in through <see cref="Load"/>, the host writes each step's ids with <see cref="SetIds"/>
/// (one host→device copy, outside the captured part) and reads <see cref="Logits"/>; the step then takes no argmax and
/// keeps no history.</para>
/// <para>Greedy with rows prefilled elsewhere (the generator's greedy sessions, which read back ids only): the rows and
/// their first tokens go in through <see cref="Load"/>; each step takes its argmax on the device as above, the host
/// reads it (<see cref="ReadTokens"/>, one small read) and may overwrite the ids with <see cref="SetIds"/> before a step.</para>
/// <para>Slots (a continuous batch; fed by the host): each row is a slot that a sequence holds while it decodes.
/// <see cref="FreeSlot"/> makes a row idle (its device position outside the cache: the step writes nothing for it and its
/// outputs are NaN, to be ignored; the room check skips it), <see cref="LoadSlot"/> puts a sequence prefilled elsewhere
/// into a row at any time between steps, <see cref="TakeSlots"/> moves every row of a smaller decoder into a new one;
/// <see cref="UploadPositions"/> then tells the device (one copy, between steps).</para>
/// </remarks>
public sealed class Qwen2StaticDecoder : IDisposable
{
    private readonly Qwen2Model _stack;
    private readonly Func<Variable, Variable> _head;
    private readonly int _vocab;
    private readonly bool _greedy;
    private readonly StaticKvCache _cache;
    private readonly Tensor _ids, _cos, _sin;
    private readonly Tensor? _logits, _history, _columns;
    private int[] _promptLengths = [];
    private bool _prefilled, _disposed;

    /// <summary>Rows decoded together.</summary>
    public int Batch { get; }

    /// <summary>Positions each row can hold (prompt + generated tokens).</summary>
    public int MaxLength => _cache.MaxLength;

    /// <summary>Steps issued since the prefill.</summary>
    public int Steps { get; private set; }

    /// <summary>The cache (its <see cref="StaticKvCache.Positions"/> are the step's device positions).</summary>
    public StaticKvCache Cache => _cache;

    /// <summary>The device ids buffer [B] (int64): the tokens the next step feeds, i.e. the last ones generated.</summary>
    public Tensor Ids => _ids;

    /// <summary>With keepLogits: the last logits [B, vocab] (float32, on the device), written by the prefill and each step.</summary>
    public Tensor? Logits => _logits;

    /// <summary>
    /// A decoder of <paramref name="batch"/> rows of up to <paramref name="maxLength"/> positions on the model's device
    /// and dtype (caches allocated now). <paramref name="keepLogits"/>: also copy each step's logits to <see cref="Logits"/>.
    /// </summary>
    public Qwen2StaticDecoder(Qwen2ForCausalLM model, int batch, int maxLength, bool keepLogits = false)
        : this((model ?? throw new ArgumentNullException(nameof(model))).Model, model.LmHead, batch, maxLength, keepLogits)
    {
    }

    /// <summary>
    /// A decoder of <paramref name="stack"/> (layers and final norm; its embedding embeds the ids) and
    /// <paramref name="head"/> (hidden states → logits [.., vocab]), as the constructor above. <paramref name="greedy"/>
    /// false: the host feeds every step's ids (<see cref="SetIds"/>) and reads the logits (so
    /// <paramref name="keepLogits"/> must be set); the step takes no argmax and keeps no history.
    /// </summary>
    public Qwen2StaticDecoder(Qwen2Model stack, Func<Variable, Variable> head, int batch, int maxLength, bool keepLogits = false, bool greedy = true)
    {
        ArgumentNullException.ThrowIfNull(stack);
        ArgumentNullException.ThrowIfNull(head);
        if (batch <= 0 || maxLength <= 0) throw new ArgumentOutOfRangeException(nameof(batch), $"Qwen2StaticDecoder: batch {batch} and max length {maxLength} must be positive");
        if (!greedy && !keepLogits) throw new ArgumentException("Qwen2StaticDecoder: a decoder fed by the host must keep its logits (they are all it gives)");
        _stack = stack;
        _head = head;
        _greedy = greedy;
        Batch = batch;
        var c = stack.Config;
        _vocab = c.VocabSize;
        var weight = stack.EmbedTokens.Weight.Value;
        var device = weight.Device;
        _cache = new StaticKvCache(c.NumHiddenLayers, batch, c.NumKeyValueHeads, c.HeadDim, maxLength, weight.DType, device);
        try
        {
            _ids = TensorScope.Detach(Tensor.Zeros([batch], DType.I64, device));
            _logits = keepLogits ? TensorScope.Detach(Tensor.Zeros([batch, c.VocabSize], DType.F32, device)) : null;
            if (greedy)
            {
                // One column more than the cache: the step that fills a row still generates a token, at position maxLength.
                _history = TensorScope.Detach(Tensor.Zeros([batch, maxLength + 1], DType.I64, device));
                _columns = TensorScope.Detach(Tensor.Arange(maxLength + 1, DType.I64, device).Reshape(1, maxLength + 1));
            }
            // The whole tables, built (or grown) now, so that no step builds them; as Qwen2Model picks their dtype.
            var ropeType = weight.DType.IsHalfStorage() ? DType.F32 : weight.DType;
            (_cos, _sin) = stack.Rotary.Range(0, maxLength, device, ropeType);
            TensorScope.Detach(_cos);
            TensorScope.Detach(_sin);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs each prompt alone (eager, as <c>KvCacheModel</c> does) and loads its keys and values into its row of the
    /// cache; the greedy token after each prompt goes to <see cref="Ids"/> (and its logits to <see cref="Logits"/>).
    /// Every id is checked against the vocabulary, and each prompt must leave room for at least one more token.
    /// </summary>
    public void Prefill(IReadOnlyList<IReadOnlyList<int>> prompts)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_prefilled) throw new InvalidOperationException("Qwen2StaticDecoder: already prefilled");
        if (!_greedy) throw new InvalidOperationException("Qwen2StaticDecoder: a decoder fed by the host takes rows prefilled elsewhere (Load)");
        if (prompts.Count != Batch) throw new ArgumentException($"Qwen2StaticDecoder: {prompts.Count} prompts for a batch of {Batch}");
        int vocab = _vocab;
        for (int r = 0; r < Batch; r++)
        {
            var p = prompts[r] ?? throw new ArgumentNullException(nameof(prompts), $"Qwen2StaticDecoder: prompt {r} is null");
            if (p.Count == 0) throw new ArgumentException($"Qwen2StaticDecoder: prompt {r} is empty");
            if (p.Count >= MaxLength) throw new ArgumentException($"Qwen2StaticDecoder: prompt {r} has {p.Count} tokens; the cache holds {MaxLength} positions, which leaves no room to generate");
            foreach (int id in p)
                if ((uint)id >= (uint)vocab) throw new ArgumentException($"Qwen2StaticDecoder: token id {id} of prompt {r} is outside the vocabulary [0, {vocab})");
        }
        var m = _stack;
        var device = _ids.Device;
        using var ng = Graph.NoGrad();
        for (int r = 0; r < Batch; r++)
        {
            int length = prompts[r].Count;
            using var scope = TensorScope.Begin();
            using var c = new KvCache(m.Layers.Count, length);
            var ids = Tensor.FromArray(prompts[r].Select(i => (long)i).ToArray(), device, 1, length);
            var hidden = m.Forward(m.EmbedTokens.Forward(ids), cache: c);
            var logits = _head(hidden.Narrow(1, length - 1, 1)).Value.Reshape(1, vocab);
            GreedyToken.PickInto(logits, _ids.Narrow(0, r, 1));
            _logits?.Narrow(0, r, 1).CopyFrom(logits);
            LoadRow(r, c);
        }
        Finish(prompts.Select(x => x.Count).ToArray());
    }

    /// <summary>
    /// Loads rows prefilled elsewhere (e.g. from embeddings with an image spliced in), <paramref name="prefilled"/>[r]
    /// holding row r's keys and values. Each row must leave room for one more token. <paramref name="firstIds"/> [B]
    /// (int64, any device): the tokens the first step feeds, required by a greedy decoder (its history starts with
    /// them); a decoder fed by the host may set them with <see cref="SetIds"/> instead. The caches stay the caller's.
    /// </summary>
    public void Load(IReadOnlyList<KvCache> prefilled, Tensor? firstIds = null)
    {
        ArgumentNullException.ThrowIfNull(prefilled);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_greedy && firstIds is null) throw new ArgumentException("Qwen2StaticDecoder: a greedy decoder needs the first ids of rows prefilled elsewhere");
        if (firstIds is not null && (firstIds.Rank != 1 || firstIds.Dim(0) != Batch || firstIds.DType != DType.I64))
            throw new ArgumentException($"Qwen2StaticDecoder: first ids {firstIds.ShapeString()} {firstIds.DType.Name()} must be int64 [{Batch}]");
        if (_prefilled) throw new InvalidOperationException("Qwen2StaticDecoder: already prefilled");
        if (prefilled.Count != Batch) throw new ArgumentException($"Qwen2StaticDecoder: {prefilled.Count} caches for a batch of {Batch}");
        var lengths = new int[Batch];
        for (int r = 0; r < Batch; r++)
        {
            var c = prefilled[r] ?? throw new ArgumentNullException(nameof(prefilled), $"Qwen2StaticDecoder: cache {r} is null");
            lengths[r] = c.Length(0);
            if (lengths[r] == 0) throw new ArgumentException($"Qwen2StaticDecoder: cache {r} is empty");
            if (lengths[r] >= MaxLength) throw new ArgumentException($"Qwen2StaticDecoder: cache {r} holds {lengths[r]} positions; the decoder holds {MaxLength}, which leaves no room to generate");
        }
        for (int r = 0; r < Batch; r++) LoadRow(r, prefilled[r]);
        if (firstIds is not null) _ids.CopyFrom(firstIds);
        Finish(lengths);
    }

    /// <summary>
    /// Slots: loads <paramref name="prefilled"/> (a sequence prefilled elsewhere; it stays the caller's) into row
    /// <paramref name="row"/>, whatever the row held (device copies; the step's positions change at
    /// <see cref="UploadPositions"/>). Its length must leave room for one more token. A decoder fed by the host only.
    /// </summary>
    public void LoadSlot(int row, KvCache prefilled)
    {
        ArgumentNullException.ThrowIfNull(prefilled);
        CheckSlot(row);
        int length = prefilled.Length(0);
        if (length == 0) throw new ArgumentException($"Qwen2StaticDecoder: the cache for slot {row} is empty");
        if (length >= MaxLength) throw new ArgumentException($"Qwen2StaticDecoder: the cache for slot {row} holds {length} positions; the decoder holds {MaxLength}, which leaves no room to generate");
        LoadRow(row, prefilled);
        _prefilled = true;
    }

    /// <summary>Slots: makes row <paramref name="row"/> idle (see the remarks; on the device at <see cref="UploadPositions"/>). No device work.</summary>
    public void FreeSlot(int row)
    {
        CheckSlot(row);
        _cache.Release(row);
    }

    /// <summary>
    /// Slots: takes every row of <paramref name="source"/> (keys, values, lengths, idle marks, ids), device to device,
    /// into its rows 0 .. source.Batch − 1; the rows past them are idle. This decoder must have at least as many rows and
    /// positions; the source stays usable (its owner disposes it). Then <see cref="UploadPositions"/>.
    /// </summary>
    public void TakeSlots(Qwen2StaticDecoder source)
    {
        ArgumentNullException.ThrowIfNull(source);
        ObjectDisposedException.ThrowIf(source._disposed, source);
        CheckSlot(0);
        if (source._greedy) throw new ArgumentException("Qwen2StaticDecoder: slots are taken from a decoder fed by the host");
        _cache.CopyRowsFrom(source._cache);
        using (var ids = _ids.Narrow(0, 0, source.Batch)) ids.CopyFrom(source._ids);
        _prefilled |= source._prefilled;
    }

    /// <summary>Writes the rows' lengths (an idle row's: outside the cache) to the device positions: one host→device copy, between steps.</summary>
    public void UploadPositions()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _cache.UploadPositions();
    }

    private void CheckSlot(int row)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_greedy) throw new InvalidOperationException("Qwen2StaticDecoder: slots are for a decoder fed by the host (greedy: false)");
        if ((uint)row >= (uint)Batch) throw new ArgumentOutOfRangeException(nameof(row), $"Qwen2StaticDecoder: slot {row} of {Batch}");
    }

    /// <summary>Copies every layer of <paramref name="c"/> into row <paramref name="row"/> of the static cache.</summary>
    private void LoadRow(int row, KvCache c)
    {
        for (int layer = 0; layer < _stack.Layers.Count; layer++)
        {
            var (k, v) = c.Stored(layer) ?? throw new InvalidOperationException($"Qwen2StaticDecoder: the prefill of row {row} stored nothing in layer {layer}");
            using (k) using (v) _cache.Load(layer, row, k, v);
        }
    }

    private void Finish(int[] promptLengths)
    {
        _cache.UploadPositions();
        if (_greedy) Record();
        _promptLengths = promptLengths;
        _prefilled = true;
    }

    /// <summary>
    /// Writes the ids the next step embeds, one host→device copy (outside a captured step: a graph replays the device
    /// work only). The ids are checked here, since the step's embedding does not. A greedy decoder records them in its
    /// history in place of the argmax they replace.
    /// </summary>
    public void SetIds(IReadOnlyList<int> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (tokens.Count != Batch) throw new ArgumentException($"Qwen2StaticDecoder: {tokens.Count} ids for a batch of {Batch}");
        var ids = new long[Batch];
        for (int r = 0; r < Batch; r++)
        {
            if ((uint)tokens[r] >= (uint)_vocab) throw new ArgumentException($"Qwen2StaticDecoder: token id {tokens[r]} of row {r} is outside the vocabulary [0, {_vocab})");
            ids[r] = tokens[r];
        }
        using var host = Tensor.FromArray(ids, Batch);
        _ids.CopyFrom(host);
        if (_greedy && _prefilled) Record();
    }

    /// <summary>One greedy token for every row: <see cref="BeginStep"/> then <see cref="Issue"/>.</summary>
    public void Step()
    {
        BeginStep();
        Issue();
    }

    /// <summary>
    /// The host half of a step: checks that it was prefilled and that every row has room for one more token (else
    /// throws before anything is issued: a full cache is an error, never a silent wrap), and counts the step.
    /// </summary>
    public void BeginStep()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_prefilled) throw new InvalidOperationException("Qwen2StaticDecoder: Prefill first");
        _cache.Reserve(1);
        Steps++;
    }

    /// <summary>
    /// The device half of a step, the part a CUDA graph captures: embeds <see cref="Ids"/>, runs every layer at the
    /// device positions, (greedy) takes the last logits' argmax into <see cref="Ids"/>, copies the logits into
    /// <see cref="Logits"/> (keepLogits), advances the positions by one and (greedy) records the token in the device
    /// history (<see cref="ReadGenerated"/>), all on the device. No host read or write; the same launches, arguments and allocation sizes every token. Call
    /// <see cref="BeginStep"/> first (outside a capture, per token).
    /// </summary>
    public void Issue()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var m = _stack;
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        var weight = m.EmbedTokens.Weight.Value;
        int hiddenSize = weight.Dim(1), vocab = _vocab;
        // Embedding's rows without its index check (see the remarks): the same copy Tensor.Embedding makes.
        var rows = Tensor.Empty([Batch, hiddenSize], weight.DType, weight.Device);
        weight.Backend.IndexSelect(weight, 0, _ids, rows);
        // The eager decode's layers and final norm (Qwen2Model.Forward with a cache runs the same method).
        // The layers and the head multiply by weights only (programmatic launches may overlap them: ForwardWithCache).
        using var weights = Parrot.Tensors.Cuda.CudaBackend.ConstantWeightScope();
        var hidden = m.ForwardWithCache(rows.ViewAs(Batch, 1, hiddenSize), (_cos, _sin), null, _cache);
        var logits = _head(new Variable(hidden)).Value.Reshape(Batch, vocab);
        if (_greedy) GreedyToken.PickInto(logits, _ids); // the host pick's argmax (NaN loses), on the device, in place
        _logits?.CopyFrom(logits);
        _cache.AdvanceOnDevice();
        if (_greedy) Record();
    }

    /// <summary>
    /// history[b, Positions[b]] = Ids[b] on the device: where the token just generated will be fed, so the tokens of many
    /// steps can be read at once (<see cref="ReadGenerated"/>). Two elementwise ops over [B, MaxLength + 1] (a comparison,
    /// then a where written over the history in place, as StaticKvCache advances its positions), no index op (a deferred
    /// index check would differ from step to step).
    /// </summary>
    private void Record()
    {
        using var scope = TensorScope.Begin();
        var at = _columns!.Eq(_cache.Positions.Reshape(Batch, 1));
        var history = _history!;
        var ids = _ids.Reshape(Batch, 1).Expand(history.Shape.ToArray()); // the backend takes inputs broadcast to y's shape
        history.Backend.Where(at, ids, history, history);
    }

    /// <summary>The tokens in <see cref="Ids"/> (the last generated per row): one device→host read.</summary>
    public int[] ReadTokens() => _ids.ToLongArray().Select(x => (int)x).ToArray();

    /// <summary>
    /// Every token generated so far, per row: the prefill's greedy token, then one per step (<see cref="Steps"/> + 1
    /// each), kept on the device as the steps ran; one device→host read, so a caller may replay many steps and read once.
    /// </summary>
    public int[][] ReadGenerated()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_prefilled) throw new InvalidOperationException("Qwen2StaticDecoder: Prefill first");
        if (!_greedy) throw new InvalidOperationException("Qwen2StaticDecoder: a decoder fed by the host keeps no history (its caller picked the tokens)");
        var all = _history!.ToLongArray();
        int n = Steps + 1;
        return Enumerable.Range(0, Batch).Select(r => all.Skip(r * (MaxLength + 1) + _promptLengths[r]).Take(n).Select(x => (int)x).ToArray()).ToArray();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _cache?.Dispose();
        _ids?.Dispose();
        _logits?.Dispose();
        _history?.Dispose();
        _columns?.Dispose();
        _cos?.Dispose();
        _sin?.Dispose();
    }
}
