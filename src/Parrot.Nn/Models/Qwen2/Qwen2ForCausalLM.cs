using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Models.Qwen2;

/// <summary>
/// The Qwen2 decoder with its language-model head, parameter names as Hugging Face's Qwen2ForCausalLM
/// (model.embed_tokens, model.layers.N.…, model.norm, lm_head).
/// </summary>
public sealed class Qwen2ForCausalLM : Module
{
    private readonly Qwen2Model _model;
    private readonly Linear? _lmHead;

    /// <summary>The configuration.</summary>
    public Qwen2Config Config { get; }

    /// <summary>The decoder stack (named "model").</summary>
    public Qwen2Model Model => _model;

    /// <summary>Whether decoder layers recompute their activations in backward (saves memory in training).</summary>
    public bool GradientCheckpointing { get => _model.GradientCheckpointing; set => _model.GradientCheckpointing = value; }

    /// <summary>
    /// Creates a freshly initialised model (N(0, initializer_range²) weights, as HF's _init_weights), or, with
    /// <paramref name="initialize"/> false, one whose weights are placeholders about to be replaced by a checkpoint.
    /// </summary>
    public Qwen2ForCausalLM(Qwen2Config config, ulong seed = 0, DType dtype = DType.F32, bool initialize = true)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;
        _model = AddModule("model", new Qwen2Model(config, Init.SeedFor(seed, "model"), dtype));
        if (!config.TieWordEmbeddings)
            _lmHead = AddModule("lm_head", new Linear(config.HiddenSize, config.VocabSize, bias: false, Init.SeedFor(seed, "lm_head"), dtype));
        if (initialize) ReinitialiseNormal(seed);
    }

    private void ReinitialiseNormal(ulong seed)
    {
        // HF Qwen2 initialises every Linear/Embedding weight N(0, std²) and zeroes biases; norms stay 1.
        foreach (var (name, p) in NamedParameters())
        {
            if (name.EndsWith("layernorm.weight", StringComparison.Ordinal) || name == "model.norm.weight") continue;
            using var fresh = name.EndsWith(".bias", StringComparison.Ordinal)
                ? Tensor.Zeros(p.Shape, p.DType)
                : Init.Normal(p.Shape.ToArray(), Config.InitializerRange, Init.SeedFor(seed, name), p.DType);
            p.Value.CopyFrom(fresh);
        }
    }

    /// <summary>
    /// Logits [B, T, vocab] for token ids [B, T]. <paramref name="attentionMask"/> [B, S] (1 = real token,
    /// 0 = padding; S = past + T) masks padded keys; <paramref name="positions"/> [T] or [B, T] default to
    /// past..past+T−1; <paramref name="cache"/> enables incremental decoding.
    /// </summary>
    /// <remarks>
    /// Runs on the device of the parameters (<see cref="Module.To(Device)"/>): ids made on the host are copied there;
    /// the mask, RoPE tables and KV cache are created there.
    /// </remarks>
    public Variable Forward(Tensor ids, Tensor? attentionMask = null, Tensor? positions = null, IKvCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var device = _model.EmbedTokens.Weight.Value.Device;
        if (ids.Device == device) return LmHead(_model.Forward(_model.EmbedTokens.Forward(ids), attentionMask, positions, cache));
        using var onDevice = ids.To(device);
        return LmHead(_model.Forward(_model.EmbedTokens.Forward(onDevice), attentionMask, positions, cache));
    }

    /// <summary>Logits for hidden states: lm_head, or the embedding table when tied.</summary>
    public Variable LmHead(Variable hidden) => _lmHead is not null ? _lmHead.Forward(hidden) : hidden.MatMul(_model.EmbedTokens.Weight.Transpose());
}

/// <summary>The decoder stack without the head: embed_tokens, layers, norm.</summary>
public class Qwen2Model : Module
{
    private readonly Qwen2DecoderLayer[] _layers;
    private readonly Qwen2Config _config;

    /// <summary>The configuration the stack was built from.</summary>
    public Qwen2Config Config => _config;
    /// <summary>embed_tokens.</summary>
    public Embedding EmbedTokens { get; }
    /// <summary>The final norm.</summary>
    public RmsNorm Norm { get; }
    /// <summary>The layers.</summary>
    public IReadOnlyList<Qwen2DecoderLayer> Layers => _layers;
    /// <summary>Recompute layer activations in backward.</summary>
    public bool GradientCheckpointing { get; set; }
    /// <summary>The RoPE cos/sin tables, cached per device and dtype (see <see cref="RotaryTables"/>).</summary>
    public RotaryTables Rotary { get; }

    /// <summary>Creates the stack.</summary>
    public Qwen2Model(Qwen2Config c, ulong seed, DType dtype)
    {
        _config = c;
        EmbedTokens = AddModule("embed_tokens", new Embedding(c.VocabSize, c.HiddenSize, Init.SeedFor(seed, "embed_tokens"), c.InitializerRange, dtype));
        var list = AddModule("layers", new ModuleList());
        _layers = new Qwen2DecoderLayer[c.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++) _layers[i] = list.Add(new Qwen2DecoderLayer(c, Init.SeedFor(seed, $"layers.{i}"), dtype));
        Norm = AddModule("norm", new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype));
        Rotary = new RotaryTables(c.HeadDim, c.RopeTheta);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        Rotary.Dispose();
        base.Dispose();
    }

    /// <summary>
    /// Runs the layers over input embeddings [B, T, hidden] and applies the final norm. <paramref name="cache"/>: one
    /// shared by the batch (<see cref="KvCache"/>) or one per row (<see cref="KvCacheRows"/>, whose rows of different
    /// lengths need <paramref name="positions"/> [B, T]). <paramref name="positionLimit"/> (optional): every position
    /// is below it, so positions given on the device pick their RoPE rows there without being read back (see
    /// <see cref="RotaryTables.At"/>).
    /// </summary>
    public Variable Forward(Variable inputsEmbeds, Tensor? attentionMask = null, Tensor? positions = null, IKvCache? cache = null, int? positionLimit = null)
    {
        if (inputsEmbeds.Rank != 3) throw new ArgumentException($"Qwen2Model: inputs {inputsEmbeds.Value.ShapeString()} must be [batch, seq, hidden]");
        int b = inputsEmbeds.Shape[0], t = inputsEmbeds.Shape[1];
        // Asked only when needed: per-row caches (KvCacheRows) of different lengths have no common past, and then
        // the caller gives each row's positions.
        int Past() => cache?.Length(0) ?? 0;
        // No scope here: the graph saves views of these tables and activations, so they belong to the
        // caller's scope (a training step's), which ends after backward.
        // The tables come from the model's cache on this device: views of rows copied there once, not a
        // host build and copy per call (the graph's saved views keep their storage alive).
        var device = inputsEmbeds.Value.Device;
        var ropeType = inputsEmbeds.DType.IsHalfStorage() ? DType.F32 : inputsEmbeds.DType;
        var (cos, sin) = positions is null
            ? Rotary.Range(Past(), t, device, ropeType)
            : RopeFor(positions, b, t, device, ropeType, positionLimit);
        Tensor? mask = attentionMask is null ? null : PaddingMask(attentionMask, b, Past() + t, inputsEmbeds.DType, inputsEmbeds.Value.Device);
        if (Graph.IsGradDisabled && cache is not null) return new Variable(ForwardWithCache(inputsEmbeds.Value, (cos, sin), mask, cache));
        var h = inputsEmbeds;
        for (int i = 0; i < _layers.Length; i++)
        {
            var layer = _layers[i];
            int index = i;
            if (Graph.IsGradDisabled)
            {
                // Inference saves nothing for backward, so a layer's temporaries go when it is done: kept to the
                // end of the caller's scope, a 512-token prefill of Qwen2-0.5B held ~1.5 GB of them, overflowed the
                // allocator's cache and faulted fresh pages in on every call.
                using var layerScope = TensorScope.Begin();
                h = new Variable(layerScope.Keep(layer.Forward(h, (cos, sin), mask, cache, i).Value));
                continue;
            }
            h = GradientCheckpointing && cache is null && !Graph.IsGradDisabled
                ? Checkpoint.Run(v => layer.Forward(v[0], (cos, sin), mask, null, index), h)
                : layer.Forward(h, (cos, sin), mask, cache, i);
        }
        return Norm.Forward(h);
    }

    /// <summary>
    /// Inference with a cache (prefill and decode; no gradients): the layers over input embeddings [B, T, hidden] at
    /// the RoPE rows <paramref name="rope"/>, then the final norm. Each layer hands the next its MLP output with the
    /// residual add still pending (<see cref="ResidualStream"/>), so every add runs in one kernel with the norm after it
    /// (<see cref="Tensor.AddRmsNorm"/>, the same bits as the two apart), and the q/k/v and gate/up products that read
    /// the layers' norms join those ops (<see cref="Tensor.AddRmsNormLinear"/>, <see cref="Tensor.AddRmsNormSwiGlu"/>: one
    /// GPU kernel each in decode, the same bits). The eager path (<see cref="Forward"/>) and the
    /// static decode step (<see cref="Qwen2StaticDecoder"/>) both run this, so they launch the same kernels.
    /// </summary>
    public Tensor ForwardWithCache(Tensor inputsEmbeds, (Tensor Cos, Tensor Sin) rope, Tensor? mask, IKvCache cache)
    {
        ArgumentNullException.ThrowIfNull(inputsEmbeds);
        ArgumentNullException.ThrowIfNull(cache);
        if (!Graph.IsGradDisabled) throw new InvalidOperationException("Qwen2Model: ForwardWithCache is for inference (Graph.NoGrad)");
        // Every product here multiplies by a layer's weight, which nothing here writes: on a GPU with programmatic launches
        // on (the default; PARROT_PDL=0 turns them off), the decode kernels may start before their predecessors end (CudaBackend.ProgrammaticLaunches).
        using var weights = Parrot.Tensors.Cuda.CudaBackend.ConstantWeightScope();
        var x = new ResidualStream(inputsEmbeds);
        for (int i = 0; i < _layers.Length; i++)
        {
            ResidualStream next;
            // Inference saves nothing for backward, so a layer's temporaries go when it is done: kept to the end of the
            // caller's scope, a 512-token prefill of Qwen2-0.5B held ~1.5 GB of them, overflowed the allocator's cache
            // and faulted fresh pages in on every call. The stream it hands on is kept, and the one it took (unless the
            // caller's embeddings) is freed now that nothing reads it.
            using (var layerScope = TensorScope.Begin())
            {
                next = _layers[i].Forward(x, rope, mask, cache, i);
                layerScope.Keep(next.Hidden);
                layerScope.Keep(next.Pending!);
            }
            if (i > 0)
            {
                x.Hidden.Dispose();
                x.Pending?.Dispose();
            }
            x = next;
        }
        using var scope = TensorScope.Begin();
        var normed = x.Normalize(Norm).Normalized;
        return scope.Keep(normed);
    }

    private (Tensor Cos, Tensor Sin) RopeFor(Tensor positions, int b, int t, Device device, DType dtype, int? limit)
    {
        if (positions.Rank == 1 && positions.Dim(0) == t) return Rotary.At(positions, device, dtype, limit);
        if (positions.Rank == 2 && positions.Dim(0) == b && positions.Dim(1) == t)
        {
            var (c, s) = Rotary.At(positions, device, dtype, limit); // [B, T, D]
            return (c.Unsqueeze(1), s.Unsqueeze(1));
        }
        throw new ArgumentException($"Qwen2Model: positions {positions.ShapeString()} must be [{t}] or [{b}, {t}]");
    }

    /// <summary>Additive [B, 1, 1, S] mask on <paramref name="device"/> (the activations'): 0 on real keys, −∞ on padding.</summary>
    private static Tensor PaddingMask(Tensor attentionMask, int b, int s, DType dtype, Device device)
    {
        if (attentionMask.Rank != 2 || attentionMask.Dim(0) != b || attentionMask.Dim(1) != s)
            throw new ArgumentException($"Qwen2Model: attention mask {attentionMask.ShapeString()} must be [{b}, {s}] (batch, past + new tokens)");
        var m = attentionMask.Device == device ? attentionMask : attentionMask.To(device);
        var keep = m.Ne(Tensor.Scalar(0, m.DType, device));
        var zero = Tensor.Scalar(0, dtype, device);
        var ninf = Tensor.Scalar(double.NegativeInfinity, dtype, device);
        return Tensor.Where(keep, zero, ninf).Reshape(b, 1, 1, s);
    }
}
