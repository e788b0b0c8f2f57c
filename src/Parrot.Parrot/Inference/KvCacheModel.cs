using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;

namespace Parrot.Parrot.Inference;

/// <summary>
/// A Qwen2 decoder stack (plain Qwen2 or Parrot's) driven with the KV cache. Each prompt is prefilled on its
/// own, exactly as if it were alone; a batch of several then decodes together, one token per prompt per
/// step, in one cache whose rows are left-padded to the longest prompt: padded keys are masked out and each
/// row's rotary positions continue from its own length, so every row computes what it would alone.
/// </summary>
internal sealed partial class KvCacheModel : IAutoregressiveModel
{
    private readonly Qwen2Model _stack;
    private readonly Func<Variable, Variable> _head;
    private readonly Func<GenerationPrompt, Variable> _embed;

    /// <param name="stack">The decoder layers and final norm.</param>
    /// <param name="head">Hidden states → logits.</param>
    /// <param name="embed">A prompt → its input embeddings [1, T, hidden] (validates the prompt).</param>
    /// <param name="vocabSize">Logits per position.</param>
    public KvCacheModel(Qwen2Model stack, Func<Variable, Variable> head, Func<GenerationPrompt, Variable> embed, int vocabSize)
    {
        _stack = stack; _head = head; _embed = embed; VocabSize = vocabSize;
    }

    public int VocabSize { get; }

    public IDecodingSession Start(IReadOnlyList<GenerationPrompt> prompts, int maxNewTokens)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (prompts.Count == 0) throw new ArgumentException("generate: no prompts");
        return new Session(this, prompts, maxNewTokens);
    }

    private sealed class Session : IDecodingSession
    {
        private readonly KvCacheModel _m;
        private readonly IReadOnlyList<GenerationPrompt> _prompts;
        private readonly int _maxNew;
        private KvCache? _cache;
        private int[] _pad = [];
        private bool _padded;

        public Session(KvCacheModel m, IReadOnlyList<GenerationPrompt> prompts, int maxNew)
        {
            _m = m; _prompts = prompts; _maxNew = Math.Max(maxNew, 1);
        }

        private int Layers => _m._stack.Layers.Count;

        public float[][] Prefill()
        {
            if (_cache is not null) throw new InvalidOperationException("generate: the session was already prefilled");
            using var ng = Graph.NoGrad();
            int b = _prompts.Count;
            var logits = new float[b][];
            if (b == 1)
            {
                // Alone: straight into the decoding cache.
                var embeds = Embed(0, out int t);
                _cache = new KvCache(Layers, t + _maxNew);
                logits[0] = RunPrompt(embeds, _cache);
                _pad = [0];
                return logits;
            }

            var caches = new KvCache[b];
            var lengths = new int[b];
            try
            {
                for (int r = 0; r < b; r++)
                {
                    var embeds = Embed(r, out lengths[r]);
                    caches[r] = new KvCache(Layers, lengths[r]);
                    logits[r] = RunPrompt(embeds, caches[r]);
                }
                int longest = lengths.Max();
                _pad = lengths.Select(l => longest - l).ToArray();
                _padded = _pad.Any(p => p > 0);
                _cache = new KvCache(Layers, longest + _maxNew);
                for (int layer = 0; layer < Layers; layer++)
                {
                    using var scope = TensorScope.Begin();
                    var first = caches[0].Stored(layer)!.Value;
                    int[] shape = [b, first.K.Dim(1), longest, first.K.Dim(3)];
                    var k = Tensor.Zeros(shape, first.K.DType, first.K.Device);
                    var v = Tensor.Zeros(shape, first.V.DType, first.V.Device);
                    for (int r = 0; r < b; r++)
                    {
                        var (kr, vr) = caches[r].Stored(layer)!.Value;
                        k.Narrow(0, r, 1).Narrow(2, _pad[r], lengths[r]).CopyFrom(kr);
                        v.Narrow(0, r, 1).Narrow(2, _pad[r], lengths[r]).CopyFrom(vr);
                    }
                    var (ka, va) = _cache.Append(layer, k, v);
                    ka.Dispose(); va.Dispose();
                }
            }
            finally
            {
                foreach (var c in caches) c?.Dispose();
            }
            return logits;
        }

        private Variable Embed(int row, out int length)
        {
            var embeds = _m._embed(_prompts[row]);
            length = embeds.Shape[1];
            if (length == 0) throw new ArgumentException($"generate: prompt {row} is empty");
            return embeds;
        }

        private float[] RunPrompt(Variable embeds, KvCache cache)
        {
            using var scope = TensorScope.Begin();
            var hidden = _m._stack.Forward(embeds, cache: cache);
            // Only the last position's logits choose the next token: the lm_head skips the others.
            return _m._head(hidden.Narrow(1, hidden.Shape[1] - 1, 1)).Value.ToFloatArray();
        }

        public float[][] Step(int[] tokens)
        {
            var cache = _cache ?? throw new InvalidOperationException("generate: Prefill first");
            int b = _prompts.Count;
            if (tokens.Length != b) throw new ArgumentException($"generate: {tokens.Length} tokens for a batch of {b}");
            foreach (var id in tokens)
                if ((uint)id >= (uint)_m.VocabSize) throw new ArgumentException($"generate: token id {id} is outside the vocabulary [0, {_m.VocabSize})");
            using var ng = Graph.NoGrad();
            using var scope = TensorScope.Begin();
            var device = _m._stack.EmbedTokens.Weight.Value.Device;
            Tensor ids;
            Tensor? mask = null, positions = null;
            int past = cache.Length(0);
            if (_padded)
            {
                int s = past + 1;
                var m = new long[b * s];
                var packed = new long[2 * b]; // the ids, then each row's position: one copy to the device for both
                for (int r = 0; r < b; r++)
                {
                    for (int j = _pad[r]; j < s; j++) m[r * s + j] = 1;
                    packed[r] = tokens[r];
                    packed[b + r] = past - _pad[r];
                }
                mask = Tensor.FromArray(m, device, b, s);
                var both = Tensor.FromArray(packed, device, 2, b);
                ids = both.Narrow(0, 0, 1).Reshape(b, 1);
                positions = both.Narrow(0, 1, 1).Reshape(b, 1); // below past + 1: picked on the device, never read back
            }
            else ids = Tensor.FromArray(tokens.Select(t => (long)t).ToArray(), device, b, 1);
            var hidden = _m._stack.Forward(_m._stack.EmbedTokens.Forward(ids), mask, positions, cache, positionLimit: past + 1);
            var flat = _m._head(hidden).Value.ToFloatArray();
            int vocab = flat.Length / b;
            var logits = new float[b][];
            for (int r = 0; r < b; r++) logits[r] = flat.AsSpan(r * vocab, vocab).ToArray();
            return logits;
        }

        public void Dispose()
        {
            _cache?.Dispose();
            _cache = null;
        }
    }
}
