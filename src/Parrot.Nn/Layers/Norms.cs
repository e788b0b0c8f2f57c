using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Layers;

/// <summary>Layer normalisation over the last dim with learned scale and shift (PyTorch's nn.LayerNorm).</summary>
public sealed class LayerNorm : Module
{
    /// <summary>Scale [dim] (ones at start).</summary>
    public Variable Weight { get; }
    /// <summary>Shift [dim] (zeros at start).</summary>
    public Variable Bias { get; }
    /// <summary>ε inside the square root.</summary>
    public double Eps { get; }

    /// <summary>Creates the layer.</summary>
    public LayerNorm(int dim, double eps = 1e-5, DType dtype = DType.F32)
    {
        Eps = eps;
        Weight = AddParameter("weight", Tensor.Ones([dim], dtype));
        Bias = AddParameter("bias", Tensor.Zeros([dim], dtype));
    }

    /// <summary>Normalises x [..., dim].</summary>
    public Variable Forward(Variable x) => x.LayerNorm(Weight, Bias, Eps);
}

/// <summary>RMS normalisation with a learned scale (Qwen2RMSNorm).</summary>
public sealed class RmsNorm : Module
{
    /// <summary>Scale [dim] (ones at start).</summary>
    public Variable Weight { get; }
    /// <summary>ε added to the mean square.</summary>
    public double Eps { get; }

    /// <summary>Creates the layer.</summary>
    public RmsNorm(int dim, double eps = 1e-6, DType dtype = DType.F32)
    {
        Eps = eps;
        Weight = AddParameter("weight", Tensor.Ones([dim], dtype));
    }

    /// <summary>Normalises x [..., dim].</summary>
    public Variable Forward(Variable x) => x.RmsNorm(Weight, Eps);
}
