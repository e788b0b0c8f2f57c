using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Parrot.Vision;
using Parrot.Tensors;

namespace Parrot.Parrot.Evaluation;

/// <summary>What a model answered to one multiple-choice question.</summary>
/// <param name="Item">The question.</param>
/// <param name="Response">The decoded answer (special tokens skipped, trimmed).</param>
/// <param name="Predicted">The extracted option letter ('Z' when none could be extracted).</param>
/// <param name="Routing">The MoE routing weights of the question (null when the MoE is off).</param>
public sealed record McqResponse(McqItem Item, string Response, char Predicted, double[]? Routing)
{
    /// <summary>Whether the extracted letter is the correct one.</summary>
    public bool Hit => Predicted == Item.Answer;
}

/// <summary>
/// A simple multiple-choice scorer for Parrot models: the PARROT.md prompt in ChatML with the image, greedy
/// decoding of a few tokens with the KV cache until <c>&lt;|im_end|&gt;</c>, rule-based answer extraction. The
/// vision features of each distinct image are computed once and kept.
/// </summary>
public sealed class SimpleMcqEvaluator : IDisposable
{
    private readonly BpeTokenizer _tokenizer;
    private readonly ChatMl _chat;
    private readonly Func<Tensor, Tensor> _tower;
    private readonly ImagePreprocessor _preprocessor;
    private readonly bool _padToSquare;
    private readonly int _maxNewTokens;
    private readonly Dictionary<string, Tensor> _features = new(StringComparer.Ordinal);
    private readonly HashSet<int> _stop;

    /// <summary>
    /// <paramref name="tower"/> maps pixels [1, 3, S, S] to vision features [1, 1+N, C] (e.g. <c>ParrotVision.Features</c>);
    /// at most <paramref name="maxNewTokens"/> tokens are generated per answer.
    /// </summary>
    public SimpleMcqEvaluator(BpeTokenizer tokenizer, Func<Tensor, Tensor> tower, ImagePreprocessor preprocessor, bool padToSquare = true, int maxNewTokens = 8)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(tower);
        ArgumentNullException.ThrowIfNull(preprocessor);
        if (maxNewTokens <= 0) throw new ArgumentOutOfRangeException(nameof(maxNewTokens), maxNewTokens, "at least one new token");
        _tokenizer = tokenizer; _chat = new ChatMl(tokenizer); _tower = tower; _preprocessor = preprocessor;
        _padToSquare = padToSquare; _maxNewTokens = maxNewTokens;
        _stop = [_chat.ImEndId];
        if (tokenizer.TokenToId("<|endoftext|>") is int eot) _stop.Add(eot);
    }

    /// <summary>Asks <paramref name="model"/> one question.</summary>
    public McqResponse Answer(ParrotForCausalLM model, McqItem item)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(item);
        var features = Features(item);
        var ids = _chat.BuildQuery(item.Question.Prompt(), withImage: true);
        var generated = new List<int>(_maxNewTokens);
        double[]? routing;
        using (Graph.NoGrad())
        using (var scope = TensorScope.Begin())
        {
            var (embeds, _, _, weights) = model.Assemble([new ParrotSample(ids, null, 0)], features, int.MaxValue);
            routing = weights[0]?.Value.ToDoubleArray();
            int len = embeds.Shape[1];
            using var cache = new KvCache(model.Config.Text.NumHiddenLayers, len + _maxNewTokens);
            var hidden = model.Model.Forward(embeds, cache: cache);
            var logits = model.LmHead(hidden.Narrow(1, len - 1, 1)).Value.Reshape(-1);
            while (true)
            {
                int next = (int)logits.ArgMax(-1).ToLongArray()[0];
                generated.Add(next);
                if (_stop.Contains(next) || generated.Count >= _maxNewTokens) break;
                logits = model.DecodeStep(next, cache);
            }
        }
        var response = _tokenizer.Decode(generated.ToArray(), skipSpecialTokens: true).Trim();
        return new McqResponse(item, response, item.Question.Extract(response), routing);
    }

    /// <summary>The features [1, 1+N, C] of the item's image, computed on first use.</summary>
    private Tensor Features(McqItem item)
    {
        if (_features.TryGetValue(item.ImageBase64, out var cached)) return cached;
        Tensor f;
        using (var scope = TensorScope.Begin())
        {
            RgbImage image;
            try { image = ImageLoader.Load(item.ImageBytes(), name: $"benchmark item {item.Index}"); }
            catch (FormatException e) { throw new InvalidDataException($"benchmark item {item.Index}: the image is not valid base64: {e.Message}", e); }
            var pixels = _preprocessor.Process(image, _padToSquare).Unsqueeze(0);
            f = scope.Keep(_tower(pixels).Contiguous().Clone());
        }
        f = TensorScope.Detach(f);
        _features[item.ImageBase64] = f;
        return f;
    }

    /// <summary>Frees the cached features.</summary>
    public void Dispose()
    {
        foreach (var t in _features.Values) t.Dispose();
        _features.Clear();
    }
}
