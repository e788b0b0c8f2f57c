using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Layers;

/// <summary>The gated SiLU MLP of Qwen2/LLaMA: down(silu(gate(x)) ⊙ up(x)), no biases.</summary>
public sealed class GatedSiluMlp : Module
{
    /// <summary>gate_proj [inter, hidden].</summary>
    public Linear GateProj { get; }
    /// <summary>up_proj [inter, hidden].</summary>
    public Linear UpProj { get; }
    /// <summary>down_proj [hidden, inter].</summary>
    public Linear DownProj { get; }

    /// <summary>Creates the MLP.</summary>
    public GatedSiluMlp(int hidden, int intermediate, ulong seed = 0, DType dtype = DType.F32)
    {
        GateProj = AddModule("gate_proj", new Linear(hidden, intermediate, bias: false, Init.SeedFor(seed, "gate_proj"), dtype));
        UpProj = AddModule("up_proj", new Linear(hidden, intermediate, bias: false, Init.SeedFor(seed, "up_proj"), dtype));
        DownProj = AddModule("down_proj", new Linear(intermediate, hidden, bias: false, Init.SeedFor(seed, "down_proj"), dtype));
    }

    /// <summary>Applies the MLP to x [..., hidden].</summary>
    public Variable Forward(Variable x)
    {
        // Inference on a few rows (decode): gate, up and SwiGLU as one op (one GPU launch instead of three; the same
        // numbers, and on the CPU the same ops).
        if (Graph.IsGradDisabled && x.Rank > 0 && x.Value.Count / Math.Max(x.Shape[^1], 1) <= DecodeRows)
            return DownProj.Forward(new Variable(Tensor.SwiGluLinear(x.Value, GateProj.Weight.Value, UpProj.Weight.Value)));
        return DownProj.Forward(Variable.SwiGlu(GateProj.Forward(x), UpProj.Forward(x)));
    }

    /// <summary>Rows of x up to which inference takes <see cref="Tensor.SwiGluLinear"/> (the GPU kernel's limit).</summary>
    private const int DecodeRows = 4;
}

/// <summary>Activation of a <see cref="GeluMlp"/>.</summary>
public enum MlpActivation
{
    /// <summary>Exact GELU (erf).</summary>
    Gelu,
    /// <summary>GELU, tanh approximation.</summary>
    GeluTanh,
    /// <summary>CLIP's x·sigmoid(1.702x).</summary>
    QuickGelu,
}

/// <summary>fc2(act(fc1(x))) with biases: the ViT/CLIP MLP (names fc1, fc2).</summary>
public sealed class GeluMlp : Module
{
    private readonly MlpActivation _act;

    /// <summary>fc1 [inter, hidden].</summary>
    public Linear Fc1 { get; }
    /// <summary>fc2 [hidden, inter].</summary>
    public Linear Fc2 { get; }

    /// <summary>Creates the MLP.</summary>
    public GeluMlp(int hidden, int intermediate, MlpActivation activation = MlpActivation.Gelu, ulong seed = 0, DType dtype = DType.F32)
    {
        _act = activation;
        Fc1 = AddModule("fc1", new Linear(hidden, intermediate, true, Init.SeedFor(seed, "fc1"), dtype));
        Fc2 = AddModule("fc2", new Linear(intermediate, hidden, true, Init.SeedFor(seed, "fc2"), dtype));
    }

    /// <summary>Applies the MLP.</summary>
    public Variable Forward(Variable x)
    {
        var h = Fc1.Forward(x);
        h = _act switch
        {
            MlpActivation.Gelu => h.Gelu(),
            MlpActivation.GeluTanh => h.Gelu(tanhApproximation: true),
            _ => h.QuickGelu(),
        };
        return Fc2.Forward(h);
    }
}
