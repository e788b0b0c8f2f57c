using System.Diagnostics;
using Parrot.Autograd;
using Parrot.Nn.Models.Qwen2;
using Parrot.Parrot.Inference;
using Parrot.Parrot.Model;
using Parrot.Parrot.Text;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// A model directory (a Qwen2 LM, or a Parrot model with its CLIP tower) and greedy generation through the
/// engine's <see cref="Generator"/> (KV cache), timed as a user sees it: time to first token (for an image
/// prompt: the tower from pixels, projector, MoE, splice, prefill and the first argmax) and the time of each
/// further token. Prompts and pixels are deterministic formulas that bench/peers/torch_generate.py repeats, so
/// both engines run the same weights on the same inputs and their greedy tokens can be compared.
/// </summary>
internal sealed class GenerateSession : IDisposable
{
    private readonly IDisposable _owner;
    private readonly IAutoregressiveModel _lm;
    private readonly Func<Tensor, Tensor>? _tower;
    private readonly int _imageSize;
    private readonly IDisposable _noGrad = Graph.NoGrad();

    private GenerateSession(IDisposable owner, IAutoregressiveModel lm, Func<Tensor, Tensor>? tower, int imageSize, long parameters, string kind)
    {
        _owner = owner; _lm = lm; _tower = tower; _imageSize = imageSize; Parameters = parameters; Kind = kind;
    }

    /// <summary>Parameters of the language model (Parrot: with projector and MoE; the tower not counted).</summary>
    public long Parameters { get; }

    /// <summary>"qwen2" or "parrot".</summary>
    public string Kind { get; }

    /// <summary>Whether image prompts can be run.</summary>
    public bool HasImages => _tower is not null;

    /// <summary>Loads <paramref name="directory"/> in float32 (model_type qwen2 or parrot_qwen2; the tower from mm_vision_tower or <paramref name="vision"/>).</summary>
    public static GenerateSession Load(string directory, string? vision)
    {
        if (ParrotModelDirectory.IsParrotDirectory(directory))
        {
            var loaded = ParrotModelDirectory.Load(directory, DType.F32, vision, loadVision: true);
            var tower = loaded.VisionTower;
            return new GenerateSession(loaded, Generator.Wrap(loaded.Model), tower is null ? null : ParrotVision.Features(tower, loaded.Model.Config.MmVisionSelectLayer),
                tower?.Config.ImageSize ?? 0, loaded.Model.ParameterCount(), "parrot");
        }
        var lm = Qwen2Loader.Load(directory, DType.F32);
        return new GenerateSession(lm, Generator.Wrap(lm), null, 0, lm.ParameterCount(), "qwen2");
    }

    /// <summary>
    /// The prompt: <paramref name="length"/> text ids (37·i + 11) mod vocab; with an image the marker goes after
    /// the first id (as in ChatML, where the system turn comes first).
    /// </summary>
    public int[] PromptIds(int length, bool image)
    {
        var ids = Enumerable.Range(0, length).Select(i => (int)((37L * i + 11) % _lm.VocabSize)).ToList();
        if (image) ids.Insert(1, ChatMl.ImageTokenIndex);
        return ids.ToArray();
    }

    /// <summary>Pixels [1, 3, S, S]: 1.5·sin(0.1·i) over the flat index i.</summary>
    public Tensor Pixels()
    {
        int s = _imageSize;
        var v = new float[3 * s * s];
        for (int i = 0; i < v.Length; i++) v[i] = (float)(1.5 * Math.Sin(0.1 * i));
        return Tensor.FromArray(v, 1, 3, s, s);
    }

    /// <summary>
    /// Greedy generation of 1 + <paramref name="steps"/> tokens (end-of-sequence ignored) after a prompt of
    /// <paramref name="length"/> text tokens (and the image): ms to the first token, ms of each further token,
    /// process CPU ms of the first token and of the decode steps, and the tokens.
    /// </summary>
    public (double Ttft, double TtftCpu, double[] Steps, double DecodeCpu, int[] Tokens) Generate(int length, int steps, bool image)
    {
        if (image && _tower is null) throw new FormatException("this model takes no images (a Qwen2 LM, or no vision tower)");
        var ids = PromptIds(length, image);
        using var pixels = image ? Pixels() : null;
        var generator = new Generator(_lm, null, []);
        var options = new GenerationOptions { MaxNewTokens = steps + 1, IgnoreEos = true };
        var tokens = new List<int>(steps + 1);
        var times = new double[steps];
        double ttft = 0, ttftCpu = 0, cpu = 0;
        double c0 = DecoderSession.ProcessCpuMs();
        var t0 = Stopwatch.GetTimestamp();
        Tensor? features = null;
        try
        {
            if (pixels is not null) features = TensorScope.Detach(Features(pixels));
            long last = 0;
            foreach (var e in generator.Stream([new GenerationPrompt(ids, features)], options))
            {
                long now = Stopwatch.GetTimestamp();
                if (e.Token is int t) tokens.Add(t);
                if (tokens.Count == 1)
                {
                    ttft = Stopwatch.GetElapsedTime(t0, now).TotalMilliseconds;
                    cpu = DecoderSession.ProcessCpuMs();
                    ttftCpu = cpu - c0;
                }
                else times[tokens.Count - 2] = Stopwatch.GetElapsedTime(last, now).TotalMilliseconds;
                last = now;
            }
            cpu = DecoderSession.ProcessCpuMs() - cpu;
        }
        finally { features?.Dispose(); }
        return (ttft, ttftCpu, times, cpu, tokens.ToArray());
    }

    /// <summary>The image's features [1+N, C] (the selected tower layer).</summary>
    private Tensor Features(Tensor pixels)
    {
        using var scope = TensorScope.Begin();
        return scope.Keep(_tower!(pixels).Select(0, 0).Contiguous());
    }

    public void Dispose()
    {
        _noGrad.Dispose();
        _owner.Dispose();
    }
}
