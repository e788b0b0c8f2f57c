using Parrot.Tensors;

namespace Parrot.Nn;

/// <summary>
/// Parameter initialisation, seeded and deterministic. Each parameter draws from its own stream: the
/// model seed mixed with a hash of the parameter's name, so adding a layer never changes the others.
/// </summary>
public static class Init
{
    /// <summary>A stable 64-bit seed for a parameter name under a model seed (FNV-1a of the name, mixed).</summary>
    public static ulong SeedFor(ulong modelSeed, string name)
    {
        ulong h = 0xcbf29ce484222325UL;
        foreach (char c in name) { h ^= c; h *= 0x100000001b3UL; }
        return h ^ (modelSeed * 0x9E3779B97F4A7C15UL);
    }

    /// <summary>PyTorch's nn.Linear default: U(−1/√fan_in, 1/√fan_in) for weights and biases.</summary>
    public static Tensor LinearUniform(int[] shape, int fanIn, ulong seed, DType dtype = DType.F32)
    {
        double bound = fanIn > 0 ? 1 / Math.Sqrt(fanIn) : 0;
        return Tensor.Uniform(shape, seed, -bound, bound, dtype);
    }

    /// <summary>N(0, std²), the Hugging Face initialiser (initializer_range, usually 0.02).</summary>
    public static Tensor Normal(int[] shape, double std, ulong seed, DType dtype = DType.F32) => Tensor.Normal(shape, seed, 0, std, dtype);
}
