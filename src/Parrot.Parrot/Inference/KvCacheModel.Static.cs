using Parrot.Nn.Layers;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;

namespace Parrot.Parrot.Inference;

/// <summary>How a KV-cache model (<see cref="Generator.Wrap(Nn.Models.Qwen2.Qwen2ForCausalLM, DecodeStepMode)"/>) runs its decode steps.</summary>
public enum DecodeStepMode
{
    /// <summary>
    /// The static step on CUDA devices where it can run (f32/bf16 weights of one dtype, head dims ≤ 128, the decode
    /// attention kernel on) unless PARROT_STATIC_DECODE is "0"; eager elsewhere. The default.
    /// </summary>
    Auto,
    /// <summary>Eager: every step issues its kernels from the host, rows attend over caches of their own.</summary>
    Eager,
    /// <summary>
    /// The static step on any device (on the CPU it runs eagerly, with the same numbers; a CUDA graph only where the
    /// device is CUDA): for comparisons. Where its ops cannot run, they throw.
    /// </summary>
    Static,
}

/// <summary>
/// The batch session over the graph-ready decode step (<see cref="Nn.Models.Qwen2.Qwen2StaticDecoder"/> fed by the host,
/// run through a <see cref="GraphedStep"/>): on a GPU one decode step is one graph launch where the eager step issues
/// hundreds of kernels from the host (a 7B step was host-bound), so the generator's steps run at the GPU's speed.
/// </summary>
internal sealed partial class KvCacheModel
{
    /// <summary>1 once a failed capture has been reported (once per process).</summary>
    private static int _warnedFallback;

    /// <summary>Whether PARROT_STATIC_DECODE allows the static step ("0" turns it off), read once.</summary>
    internal static readonly bool StaticDecodeAllowed = StaticDecodeDefault(Environment.GetEnvironmentVariable("PARROT_STATIC_DECODE"));

    /// <summary>What a value of PARROT_STATIC_DECODE means: off only for "0".</summary>
    internal static bool StaticDecodeDefault(string? value) => value?.Trim() != "0";

    /// <summary>How steps run (<see cref="DecodeStepMode"/>).</summary>
    internal DecodeStepMode Mode { get; init; }

    /// <summary>Whether a session of this model takes the static step (see <see cref="DecodeStepMode.Auto"/>).</summary>
    internal bool UsesStaticStep => UsesStaticStepIn(Mode);

    /// <summary>
    /// Refuses a value outside <see cref="DecodeStepMode"/>: one such as (DecodeStepMode)99 used to run as Auto for the
    /// static step yet as a forced mode for the slots (past PARROT_STATIC_SLOTS=0).
    /// </summary>
    internal static void CheckMode(DecodeStepMode mode, string name = "mode")
    {
        if (!Enum.IsDefined(mode)) throw new ArgumentOutOfRangeException(name, mode, $"the decode step mode must be Auto, Eager or Static, got {(int)mode}");
    }

    /// <summary>Whether a decode in <paramref name="mode"/> takes the static step here (the continuous batch asks for its own mode).</summary>
    internal bool UsesStaticStepIn(DecodeStepMode mode) => mode switch
    {
        DecodeStepMode.Eager => false,
        DecodeStepMode.Static => true,
        _ => StaticDecodeAllowed && StaticStepFits(),
    };

    /// <summary>
    /// The static step's requirements on a CUDA device (elsewhere eager: on the CPU there are no launches to save). Its
    /// attention is the decode kernel (CudaBackend.AttentionAt): f32 or bf16, head dims ≤ 128; its query rows per
    /// (row, head) are one token, within the kernel's 8, for any batch. RopeAppendAt needs q, k, v and the cache in one
    /// dtype, so the layers must share the embedding's. PARROT_DECODE_ATTENTION=0 (decode kernel ruled out) rules it out too.
    /// </summary>
    private bool StaticStepFits()
    {
        var weight = _stack.EmbedTokens.Weight.Value;
        if (weight.Device.Kind != DeviceKind.Cuda) return false;
        if (weight.DType is not (DType.F32 or DType.BF16)) return false;
        var c = _stack.Config;
        if (c.HeadDim > 128) return false;
        if (Backends.For(weight.Device) is CudaBackend { DecodeAttention: false }) return false;
        foreach (var layer in _stack.Layers)
            foreach (var p in layer.Parameters())
                if (p.Value.DType != weight.DType) return false;
        return _stack.Norm.Weight.Value.DType == weight.DType;
    }

    /// <summary>
    /// Runs a static step through its <see cref="GraphedStep"/> (captured at its second run on a CUDA device): a failed
    /// capture that was asked for (Static) throws saying how to decode without it; one chosen by default (Auto) warns
    /// once per process and decodes on eagerly.
    /// </summary>
    internal static void RunGraphed(GraphedStep step)
    {
        bool capturing = step.CapturesNext;
        try { step.Run(); }
        catch (Exception e) when (capturing)
        {
            // The step ran eagerly once already, so this is the capture: say how to decode without it.
            throw new InvalidOperationException($"generate: capturing the decode step into a CUDA graph failed ({e.Message}); PARROT_STATIC_DECODE=0 decodes eagerly", e);
        }
        if (capturing && step.FallbackReason is { } why && Interlocked.Exchange(ref _warnedFallback, 1) == 0)
            Console.Error.WriteLine($"warning: generate: the decode step could not be captured into a CUDA graph ({why}); decoding on without one (PARROT_STATIC_DECODE=0 takes the eager path)");
    }

    /// <summary>The error for a step past the room the session was started with (the same in both sessions).</summary>
    private static InvalidOperationException NoRoom(int maxNew) =>
        new($"generate: the session was started for {maxNew} new tokens per prompt, so its cache holds {maxNew} steps after the prefill; no step was run");

    /// <summary>Checks ids fed to a step (both sessions: the static step's embedding does not check them).</summary>
    private void CheckIds(int[] tokens)
    {
        foreach (var id in tokens)
            if ((uint)id >= (uint)VocabSize) throw new ArgumentException($"generate: token id {id} is outside the vocabulary [0, {VocabSize})");
    }

    /// <summary>
    /// The static session. Its logits path (<see cref="Prefill"/>, <see cref="Step"/>) reads each step's logits back;
    /// its greedy path (<see cref="PrefillGreedy"/>, <see cref="StepGreedy"/>) runs the decoder in greedy mode (the
    /// argmax written into its ids on the device, no logits kept) and reads back the ids only.
    /// </summary>
    private sealed class StaticSession : IGreedyDecodingSession, ICandidateDecodingSession
    {
        private readonly KvCacheModel _m;
        private readonly IReadOnlyList<GenerationPrompt> _prompts;
        private readonly int _maxNew;
        private global::Parrot.Nn.Models.Qwen2.Qwen2StaticDecoder? _decoder;
        private GraphedStep? _step;
        private int _steps;
        private bool _greedy;
        /// <summary>Greedy path: the ids the decoder's ids buffer holds (the last ones returned), so a step fed them copies nothing.</summary>
        private int[] _onDevice = [];

        public StaticSession(KvCacheModel m, IReadOnlyList<GenerationPrompt> prompts, int maxNew)
        {
            _m = m; _prompts = prompts; _maxNew = Math.Max(maxNew, 1);
        }

        /// <summary>
        /// Each prompt alone, as the eager session (so an image's embeddings go in the same way), into a cache just
        /// long enough; then all rows into one static cache of the longest prompt + the new tokens (each row's own
        /// room is the eager session's: the step count below).
        /// </summary>
        public float[][] Prefill() =>
            Prefill(greedy: false, (GenerationPrompt p, int r, out KvCache c, out int length) => _m.PrefillRow(p, _m.Fits(_maxNew, 0, r, _prompts.Count), out c, out length, $"prompt {r}")).Rows;

        /// <summary>As <see cref="Prefill"/>, the first tokens taken on the device, loaded into the decoder there and read back once.</summary>
        public int[] PrefillGreedy() =>
            _onDevice = Prefill(greedy: true, (GenerationPrompt p, int r, out KvCache c, out int length) => _m.PrefillRowGreedy(p, _m.Fits(_maxNew, 0, r, _prompts.Count), out c, out length, $"prompt {r}")).Ids!;

        public bool CandidatesPay => _m.CandidatesPay;

        /// <summary>The logits path (the decoder keeps its logits), each row's top logits read back in place of the row.</summary>
        public LogitsRow[] PrefillCandidates(CandidateAsk[] asks) =>
            Prefill(greedy: false, (GenerationPrompt p, int r, out KvCache c, out int length) => _m.PrefillRowCandidates(p, _m.Fits(_maxNew, 0, r, _prompts.Count), out c, out length, $"prompt {r}", Ask(asks, r, _prompts.Count))).Rows;

        /// <summary>As <see cref="Step"/>, then TopK of the kept logits on the device (one launch after the step) and its read.</summary>
        public LogitsRow[] StepCandidates(int[] tokens, CandidateAsk[] asks)
        {
            var dec = Begin(tokens, greedy: false);
            dec.SetIds(tokens);
            Run();
            return TopKCandidates.Read(dec.Logits!, asks);
        }

        private delegate T RowPrefill<T>(GenerationPrompt prompt, int row, out KvCache cache, out int length);

        /// <summary>
        /// The prefill both paths share: per row what <paramref name="row"/> gives (logits, or the greedy token on the
        /// device); greedy, those tokens go into the decoder's ids on the device and come back to the host in one read.
        /// </summary>
        private (TRow[] Rows, int[]? Ids) Prefill<TRow>(bool greedy, RowPrefill<TRow> row)
        {
            if (_decoder is not null) throw new InvalidOperationException("generate: the session was already prefilled");
            var caches = new KvCache[_prompts.Count];
            var rows = new TRow[caches.Length];
            var lengths = new int[caches.Length];
            global::Parrot.Nn.Models.Qwen2.Qwen2StaticDecoder? decoder = null;
            Tensor? first = null;
            int[]? ids = null;
            try
            {
                for (int r = 0; r < caches.Length; r++)
                    rows[r] = row(_prompts[r], r, out caches[r], out lengths[r]);
                if (rows is Tensor[] picks) first = TensorScope.Detach(Tensor.Concat(0, picks));
                decoder = new(_m._stack, _m._head, caches.Length, lengths.Max() + _maxNew, keepLogits: !greedy, greedy: greedy);
                decoder.Load(caches, first);
                if (first is not null) ids = ReadIds(first);
                // Chosen by default (Auto): a failed capture (unproven on this GPU) decodes on, eagerly, with a warning;
                // asked for (Static): it throws.
                _step = new GraphedStep(_m._stack.EmbedTokens.Weight.Value.Device, decoder.Issue, fallBackToEager: _m.Mode == DecodeStepMode.Auto);
            }
            catch
            {
                decoder?.Dispose();
                throw;
            }
            finally
            {
                foreach (var c in caches) c?.Dispose();
                foreach (var x in rows) (x as IDisposable)?.Dispose();
                first?.Dispose();
            }
            _decoder = decoder;
            _greedy = greedy;
            return (rows, ids);
        }

        /// <summary>
        /// The ids to the device (one copy), the step (the captured graph from the second on, on a CUDA device), the
        /// logits back (one read).
        /// </summary>
        public float[][] Step(int[] tokens)
        {
            var dec = Begin(tokens, greedy: false);
            dec.SetIds(tokens);
            Run();
            var flat = dec.Logits!.ToFloatArray();
            int vocab = flat.Length / dec.Batch;
            var logits = new float[dec.Batch][];
            for (int r = 0; r < logits.Length; r++) logits[r] = flat.AsSpan(r * vocab, vocab).ToArray();
            return logits;
        }

        /// <summary>
        /// The step with its argmax on the device: the ids to the device only where they differ from what the last pick
        /// left there (none while the caller feeds back what it got), the step, the ids back (one read of B int64):
        /// <see cref="Generator.NoNumber"/> (−1) for a row with no number, which the generator refuses before any step
        /// feeds it (a caller's next tokens are checked, and differ from it, so they are copied over it).
        /// </summary>
        public int[] StepGreedy(int[] tokens)
        {
            var dec = Begin(tokens, greedy: true);
            if (!tokens.AsSpan().SequenceEqual(_onDevice)) dec.SetIds(tokens);
            _onDevice = [];  // until the read below: a failed step leaves the buffer unknown
            Run();
            return _onDevice = dec.ReadTokens();
        }

        /// <summary>The checks both steps share, then the static cache's own room check (a backstop) before anything is written.</summary>
        private global::Parrot.Nn.Models.Qwen2.Qwen2StaticDecoder Begin(int[] tokens, bool greedy)
        {
            var dec = _decoder ?? throw new InvalidOperationException("generate: Prefill first");
            CheckPath(_greedy, greedy);
            if (tokens.Length != dec.Batch) throw new ArgumentException($"generate: {tokens.Length} tokens for a batch of {dec.Batch}");
            _m.CheckIds(tokens);
            if (_steps >= _maxNew) throw NoRoom(_maxNew);
            dec.BeginStep();
            return dec;
        }

        /// <summary>Runs the step (captured into a graph at its second run on a CUDA device) and counts it.</summary>
        private void Run()
        {
            RunGraphed(_step!);
            _steps++;
        }

        public void Dispose()
        {
            _step?.Dispose();
            _decoder?.Dispose();
            _step = null;
            _decoder = null;
        }
    }
}
