using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Parrot.Model;

/// <summary>
/// Parrot's language-routing mixture of experts (the released code's form). Per sample, with X the
/// projected visual tokens [N, H] (CLS first) and T the input embeddings of the prompt's text tokens [n, H]:
/// a = softmax(X[0]·Tᵀ/√H); g = a·T; w = softmax(gate(g)) over E experts (gate: Linear(H→E) without bias);
/// MoE(X) = Σᵢ wᵢ·Expertᵢ(X) + α·X (the residual only when enabled), every expert dense:
/// Expertᵢ(x) = down(silu(gate_proj(x)) ⊙ up_proj(x)) without biases. No load-balancing loss.
/// Names: <c>gate.weight</c>, <c>experts.{i}.{gate,up,down}_proj.weight</c>.
/// </summary>
public sealed class LanguageMoe : Module
{
    private readonly GatedSiluMlp[] _experts;

    /// <summary>The router gate [E, H].</summary>
    public Linear Gate { get; }
    /// <summary>The experts.</summary>
    public IReadOnlyList<GatedSiluMlp> Experts => _experts;
    /// <summary>α, the weight of the residual (moe_weight).</summary>
    public double Alpha { get; }
    /// <summary>Whether α·X is added (use_moe_residual).</summary>
    public bool Residual { get; }

    /// <summary>Creates the MoE.</summary>
    public LanguageMoe(int hidden, int experts, int expertWidth, double alpha, bool residual, ulong seed = 0, DType dtype = DType.F32)
    {
        if (experts <= 0) throw new ArgumentOutOfRangeException(nameof(experts), experts, "LanguageMoe: at least one expert");
        Alpha = alpha;
        Residual = residual;
        Gate = AddModule("gate", new Linear(hidden, experts, bias: false, Init.SeedFor(seed, "gate"), dtype));
        var list = AddModule("experts", new ModuleList());
        _experts = new GatedSiluMlp[experts];
        for (int i = 0; i < experts; i++) _experts[i] = list.Add(new GatedSiluMlp(hidden, expertWidth, Init.SeedFor(seed, $"experts.{i}"), dtype));
    }

    /// <summary>The routing weights w [E] of one sample: X [N, H] (row 0 = CLS) steered by T [n, H].</summary>
    public Variable RoutingWeights(Variable x, Variable text)
    {
        if (x.Rank != 2 || text.Rank != 2 || x.Shape[1] != text.Shape[1])
            throw new ArgumentException($"LanguageMoe: visual tokens {x.Value.ShapeString()} and text embeddings {text.Value.ShapeString()} must be [N, H] and [n, H]");
        if (text.Shape[0] == 0) throw new ArgumentException("LanguageMoe: the prompt has no text tokens to steer the routing");
        int h = x.Shape[1];
        var cls = x.Narrow(0, 0, 1);                                          // [1, H]
        var a = (cls.MatMul(text.Transpose()) * (1.0 / Math.Sqrt(h))).Softmax(-1); // [1, n]
        var g = a.MatMul(text);                                               // [1, H]
        return Gate.Forward(g).Softmax(-1).Reshape(-1);                       // [E]
    }

    /// <summary>MoE(X) for one sample; also returns the routing weights (for the routing statistics).</summary>
    public (Variable Output, Variable Weights) Forward(Variable x, Variable text)
    {
        var w = RoutingWeights(x, text);
        Variable? sum = null;
        for (int i = 0; i < _experts.Length; i++)
        {
            var term = _experts[i].Forward(x) * w.Narrow(0, i, 1);
            sum = sum is null ? term : sum + term;
        }
        var y = Residual ? sum! + x * Alpha : sum!;
        return (y, w);
    }
}
