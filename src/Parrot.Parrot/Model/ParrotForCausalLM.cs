using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Parrot.Model;

/// <summary>What a multimodal forward pass produced.</summary>
/// <param name="Logits">[B, L, vocab] over the spliced sequences.</param>
/// <param name="Labels">[B, L] I64: the sample labels with −100 on visual tokens and padding (all −100 at inference).</param>
/// <param name="AttentionMask">[B, L] I64: 1 on real positions, 0 on right padding.</param>
/// <param name="Routing">Per sample with an image and the MoE on: the routing weights [E] (null otherwise).</param>
public sealed record ParrotOutput(Variable Logits, Tensor Labels, Tensor AttentionMask, Variable?[] Routing);

/// <summary>
/// Parrot: vision features (the selected CLIP layer, CLS kept) → mlp2x_gelu projector → language-routing
/// MoE steered by the prompt's text embeddings → spliced at the image placeholder into the Qwen2 input
/// embeddings → decoder → lm_head. Parameter names are the released checkpoints' (PARROT.md).
/// Vision features enter precomputed (the tower is frozen in both training stages, so they can be cached),
/// or through <see cref="VisionFeatures"/> from pixels.
/// </summary>
public sealed class ParrotForCausalLM : Module
{
    private readonly Linear? _lmHead;

    /// <summary>The configuration.</summary>
    public ParrotConfig Config { get; }
    /// <summary>The decoder stack with projector and MoE (named "model").</summary>
    public ParrotLanguageModel Model { get; }
    /// <summary>Whether the MoE runs (stage 2) or is bypassed (stage 1). Starts as config use_moe.</summary>
    public bool MoeEnabled { get; set; }
    /// <summary>Maps pixel values [B, 3, S, S] to the selected vision features [B, 1+N, C] (set when a tower is attached).</summary>
    public Func<Tensor, Tensor>? VisionFeatures { get; set; }

    /// <summary>Creates a model (fresh weights unless a checkpoint is loaded next).</summary>
    public ParrotForCausalLM(ParrotConfig config, ulong seed = 0, DType dtype = DType.F32, Module? visionTower = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Text.Validate();
        Config = config;
        MoeEnabled = config.UseMoe;
        Model = AddModule("model", new ParrotLanguageModel(config, Init.SeedFor(seed, "model"), dtype, visionTower));
        if (!config.Text.TieWordEmbeddings)
            _lmHead = AddModule("lm_head", new Linear(config.Text.HiddenSize, config.Text.VocabSize, false, Init.SeedFor(seed, "lm_head"), dtype));
    }

    /// <summary>Logits for hidden states.</summary>
    public Variable LmHead(Variable hidden) => _lmHead is not null ? _lmHead.Forward(hidden) : hidden.MatMul(Model.EmbedTokens.Weight.Transpose());

    /// <summary>
    /// The spliced input embeddings of a batch: text embeddings with each sample's image placeholder replaced
    /// by its (MoE-routed) projected visual tokens, truncated to <paramref name="maxLength"/>, right-padded.
    /// <paramref name="imageFeatures"/>: [images, 1+N, C] vision features, indexed by the samples' ImageIndex
    /// (copied to the model's device when elsewhere). Everything returned lives on the device of the parameters.
    /// </summary>
    public (Variable Embeds, Tensor Labels, Tensor Mask, Variable?[] Routing) Assemble(IReadOnlyList<ParrotSample> samples, Tensor? imageFeatures, int maxLength = 2048) =>
        Assemble(samples, imageFeatures, maxLength, out _);

    private (Variable Embeds, Tensor Labels, Tensor Mask, Variable?[] Routing) Assemble(IReadOnlyList<ParrotSample> samples, Tensor? imageFeatures, int maxLength, out bool anyPadding)
    {
        ArgumentNullException.ThrowIfNull(samples);
        if (samples.Count == 0) throw new ArgumentException("Parrot: empty batch");
        int h = Config.Text.HiddenSize, vocab = Config.Text.VocabSize;
        var device = Model.EmbedTokens.Weight.Value.Device;
        Variable? projected = null;
        if (imageFeatures is not null)
        {
            if (imageFeatures.Rank != 3 || imageFeatures.Dim(2) != Config.MmHiddenSize)
                throw new ArgumentException($"Parrot: image features {imageFeatures.ShapeString()} must be [images, tokens, {Config.MmHiddenSize}]");
            // Features without a visual token (or with the CLS token alone under "patch") used to fail inside Narrow with
            // "range [0, 1) is outside dimension 0 of size 0", naming neither the features nor the reason.
            bool patch = Config.MmVisionSelectFeature == "patch";
            if (imageFeatures.Dim(1) < (patch ? 2 : 1))
                throw new ArgumentException($"Parrot: image features {imageFeatures.ShapeString()} have no visual token"
                    + (patch ? " once the CLS token is dropped (mm_vision_select_feature \"patch\": at least 2 tokens)" : " (at least 1)"));
            var feats = Config.MmVisionSelectFeature == "patch" ? imageFeatures.Narrow(1, 1, imageFeatures.Dim(1) - 1) : imageFeatures;
            var wdt = Model.EmbedTokens.Weight.DType;
            projected = Model.Projector.Forward(new Variable(feats.DType == wdt && feats.Device == device ? feats : feats.To(wdt, device)));
        }

        // Embed every sample's text at once (placeholders looked up as id 0 and cut out below).
        int lids = samples.Max(s => s.Ids.Length);
        var flat = new long[samples.Count * lids];
        for (int b = 0; b < samples.Count; b++)
        {
            var s = samples[b];
            if (s.Labels is not null && s.Labels.Length != s.Ids.Length) throw new ArgumentException($"Parrot: sample {b} has {s.Ids.Length} ids but {s.Labels.Length} labels");
            for (int t = 0; t < s.Ids.Length; t++)
            {
                int id = s.Ids[t];
                if (id == ParrotSample.ImageToken) continue;
                if (id < 0 || id >= vocab) throw new ArgumentException($"Parrot: sample {b} position {t}: token id {id} is outside the vocabulary [0, {vocab})");
                flat[b * lids + t] = id;
            }
        }
        var text = Variable.Embedding(Model.EmbedTokens.Weight, Tensor.FromArray(flat, device, samples.Count, lids)); // [B, Lids, H]

        var rows = new Variable[samples.Count];
        var rowLabels = new List<int>[samples.Count];
        var routing = new Variable?[samples.Count];
        for (int b = 0; b < samples.Count; b++)
        {
            var s = samples[b];
            var e = text.Select(0, b).Narrow(0, 0, s.Ids.Length);
            int pos = Array.IndexOf(s.Ids, ParrotSample.ImageToken);
            if (pos >= 0 && Array.IndexOf(s.Ids, ParrotSample.ImageToken, pos + 1) >= 0)
                throw new ArgumentException($"Parrot: sample {b} has more than one image placeholder; one image per sample is supported");
            var labels = s.Labels ?? Enumerable.Repeat(ParrotSample.IgnoreIndex, s.Ids.Length).ToArray();
            if (pos < 0)
            {
                rows[b] = e;
                rowLabels[b] = labels.ToList();
                continue;
            }
            if (projected is null || s.ImageIndex < 0 || s.ImageIndex >= projected.Shape[0])
                throw new ArgumentException($"Parrot: sample {b} has an image placeholder but no image features (image index {s.ImageIndex})");
            var x = projected.Select(0, s.ImageIndex); // [1+N, H]
            if (MoeEnabled)
            {
                // The MoE is steered by the prompt: every text token without a loss, placeholder excluded.
                var steer = Enumerable.Range(0, s.Ids.Length).Where(t => t != pos && labels[t] == ParrotSample.IgnoreIndex).Select(t => (long)t).ToArray();
                var tEmb = e.IndexSelect(0, Tensor.FromArray(steer, device));
                (x, var w) = Model.Moe.Forward(x, tEmb);
                routing[b] = w;
            }
            var pieces = new List<Variable>();
            if (pos > 0) pieces.Add(e.Narrow(0, 0, pos));
            pieces.Add(x);
            if (pos + 1 < s.Ids.Length) pieces.Add(e.Narrow(0, pos + 1, s.Ids.Length - pos - 1));
            rows[b] = Variable.Concat(0, pieces.ToArray());
            var l = labels.Take(pos).ToList();
            l.AddRange(Enumerable.Repeat(ParrotSample.IgnoreIndex, x.Shape[0]));
            l.AddRange(labels.Skip(pos + 1));
            rowLabels[b] = l;
        }

        int len = Math.Min(maxLength, rows.Max(r => r.Shape[0]));
        var labelArr = new long[samples.Count * len];
        var maskArr = new long[samples.Count * len];
        var padded = new Variable[samples.Count];
        anyPadding = false;
        for (int b = 0; b < samples.Count; b++)
        {
            var r = rows[b];
            int n = Math.Min(r.Shape[0], len);
            if (n < r.Shape[0]) r = r.Narrow(0, 0, n);
            anyPadding |= n < len;
            if (n < len) r = Variable.Concat(0, r, new Variable(Tensor.Zeros([len - n, h], r.DType, device)));
            padded[b] = r;
            for (int t = 0; t < len; t++)
            {
                labelArr[b * len + t] = t < n ? rowLabels[b][t] : ParrotSample.IgnoreIndex;
                maskArr[b * len + t] = t < n ? 1 : 0;
            }
        }
        return (Variable.Stack(0, padded), Tensor.FromArray(labelArr, device, samples.Count, len), Tensor.FromArray(maskArr, device, samples.Count, len), routing);
    }

    /// <summary>The full forward pass over a batch (training or scoring).</summary>
    public ParrotOutput Forward(IReadOnlyList<ParrotSample> samples, Tensor? imageFeatures, int maxLength = 2048)
    {
        var (embeds, labels, mask, routing) = Assemble(samples, imageFeatures, maxLength, out bool padded);
        var hidden = Model.Forward(embeds, padded ? mask : null);
        return new ParrotOutput(LmHead(hidden), labels, mask, routing);
    }

    /// <summary>Runs the prompt of one sample into <paramref name="cache"/> and returns the logits of its last position [vocab].</summary>
    public Tensor Prefill(ParrotSample sample, Tensor? imageFeatures, KvCache cache)
    {
        using var ng = Graph.NoGrad();
        var (embeds, _, _, _) = Assemble([sample], imageFeatures, int.MaxValue);
        var hidden = Model.Forward(embeds, cache: cache);
        var last = hidden.Narrow(1, hidden.Shape[1] - 1, 1);
        return LmHead(last).Value.Reshape(-1);
    }

    /// <summary>Feeds one token after a prefill and returns the next logits [vocab].</summary>
    public Tensor DecodeStep(int token, KvCache cache)
    {
        using var ng = Graph.NoGrad();
        var e = Model.EmbedTokens.Forward(Tensor.FromArray(new long[] { token }, Model.EmbedTokens.Weight.Value.Device, 1, 1));
        return LmHead(Model.Forward(e, cache: cache)).Value.Reshape(-1);
    }
}
