using System.Diagnostics;
using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// Where the time of a Qwen2 forward pass goes: the decoder is run part by part (the calls
/// <see cref="Qwen2DecoderLayer.Forward"/> and <see cref="Attention.Forward"/> make, in the same order, with a
/// stopwatch around each), and the time of each part is summed over the layers. For `parrot bench decoder
/// --profile`; the parts add up to within a few percent of the measured forward time. Each part is also given
/// in process CPU time (all threads, Linux), which on a machine shared with other work says what a part costs
/// when wall time mostly says how long it waited for a core.
/// </summary>
internal static class LayerProfile
{
    private sealed class Parts
    {
        private readonly Dictionary<string, (double Wall, double Cpu)> _ms = new();
        private readonly List<string> _order = new();

        public T Time<T>(string part, Func<T> body)
        {
            var t0 = Stopwatch.GetTimestamp();
            double c0 = DecoderSession.ProcessCpuMs();
            var r = body();
            double ms = Stopwatch.GetElapsedTime(t0).TotalMilliseconds, cpu = DecoderSession.ProcessCpuMs() - c0;
            if (!_ms.ContainsKey(part)) { _ms[part] = (0, 0); _order.Add(part); }
            _ms[part] = (_ms[part].Wall + ms, _ms[part].Cpu + cpu);
            return r;
        }

        public void Print(string title, TextWriter log, int runs)
        {
            double total = _ms.Values.Sum(v => v.Wall) / runs, totalCpu = _ms.Values.Sum(v => v.Cpu) / runs;
            log.WriteLine($"{title}: {total:F2} ms per run ({totalCpu:F2} ms of CPU time)");
            foreach (var p in _order)
            {
                double ms = _ms[p].Wall / runs, cpu = _ms[p].Cpu / runs;
                log.WriteLine($"  {p,-26} {ms,9:F2} ms  {100 * ms / total,5:F1}%   cpu {cpu,9:F2} ms  {100 * cpu / totalCpu,5:F1}%");
            }
        }
    }

    /// <summary>Prints the parts of a prefill of <paramref name="ids"/> (all logits), averaged over 3 runs after a warm-up.</summary>
    public static void Prefill(Qwen2ForCausalLM model, long[] ids, TextWriter log)
    {
        using var noGrad = Graph.NoGrad();
        Parts? parts = null;
        for (int run = 0; run < 4; run++)
        {
            if (run == 1) parts = new Parts();
            using var scope = TensorScope.Begin();
            Forward(model, ids, null, parts ?? new Parts());
        }
        parts!.Print($"prefill {ids.Length} tokens, by part", log, 3);
    }

    /// <summary>Prints the parts of decode steps over <paramref name="tokens"/> after a prefill of <paramref name="prompt"/>.</summary>
    public static void Decode(Qwen2ForCausalLM model, long[] prompt, long[] tokens, TextWriter log)
    {
        using var noGrad = Graph.NoGrad();
        using var cache = new KvCache(model.Config.NumHiddenLayers, prompt.Length + tokens.Length);
        using (var scope = TensorScope.Begin()) Forward(model, prompt, cache, new Parts());
        var parts = new Parts();
        for (int i = 0; i < tokens.Length; i++)
        {
            using var scope = TensorScope.Begin();
            Forward(model, [tokens[i]], cache, i == 0 ? new Parts() : parts);
        }
        parts.Print($"decode after {prompt.Length} tokens, by part", log, tokens.Length - 1);
    }

    private static void Forward(Qwen2ForCausalLM model, long[] ids, KvCache? cache, Parts p)
    {
        var cfg = model.Config;
        int t = ids.Length, heads = cfg.NumAttentionHeads, kvHeads = cfg.NumKeyValueHeads, d = cfg.HeadDim;
        int past = cache?.Length(0) ?? 0;
        var m = model.Model;
        var h = p.Time("embed", () => m.EmbedTokens.Forward(Tensor.FromArray(ids, 1, t)));
        // The model's cached tables, as Qwen2Model.Forward takes them (views of rows built once, not a build per call).
        var ropeType = h.DType.IsHalfStorage() ? DType.F32 : h.DType;
        var (cos, sin) = p.Time("rope tables", () => m.Rotary.Range(past, t, h.Value.Device, ropeType));
        for (int i = 0; i < cfg.NumHiddenLayers; i++)
        {
            var layer = m.Layers[i];
            var attn = layer.SelfAttn;
            var x = p.Time("input_layernorm", () => layer.InputLayerNorm.Forward(h));
            var (q, k, v) = p.Time("q/k/v proj", () => attn.Project(x)); // as the model: one product when packed
            q = p.Time("rope", () => q.Reshape(1, t, heads, d).Transpose(1, 2).ApplyRope(cos, sin));
            k = p.Time("rope", () => k.Reshape(1, t, kvHeads, d).Transpose(1, 2).ApplyRope(cos, sin));
            v = p.Time("rope", () => v.Reshape(1, t, kvHeads, d).Transpose(1, 2));
            if (cache is not null)
            {
                var (kAll, vAll) = p.Time("kv cache append", () => cache.Append(i, k.Value, v.Value));
                k = new Variable(kAll);
                v = new Variable(vAll);
            }
            var o = p.Time("attention", () => Functional.ScaledDotProductAttention(q, k, v, causal: true, queryOffset: past));
            var a = p.Time("o_proj", () => attn.OProj.Forward(o.Transpose(1, 2).Reshape(1, t, heads * d)));
            h = p.Time("residual", () => h + a);
            var x2 = p.Time("post_attention_layernorm", () => layer.PostAttentionLayerNorm.Forward(h));
            var gate = p.Time("gate/up proj", () => layer.Mlp.GateProj.Forward(x2));
            var up = p.Time("gate/up proj", () => layer.Mlp.UpProj.Forward(x2));
            var act = p.Time("silu * up", () => gate.Silu() * up);
            var down = p.Time("down_proj", () => layer.Mlp.DownProj.Forward(act));
            h = p.Time("residual", () => h + down);
        }
        h = p.Time("final norm", () => m.Norm.Forward(h));
        p.Time("lm_head", () => model.LmHead(h));
    }
}
