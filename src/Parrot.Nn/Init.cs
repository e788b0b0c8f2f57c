using Parrot.Tensors;

namespace Parrot.Nn;

/// <summary>
/// Parameter initialisation, seeded and deterministic. Each parameter draws from its own stream: the
/// model seed mixed with a hash of the parameter's name, so adding a layer never changes the others.
/// </summary>
public static class Init
{
    [ThreadStatic] private static int _deferDepth;

    /// <summary>
    /// Opens a scope in which initialisers return uninitialised memory: for models whose weights are about
    /// to be replaced by a checkpoint (never-touched pages cost no physical memory and no random draws).
    /// </summary>
    public static IDisposable Deferred() => new DeferScope();

    /// <summary>True while a <see cref="Deferred"/> scope is open on this thread.</summary>
    public static bool IsDeferred => _deferDepth > 0;

    private sealed class DeferScope : IDisposable
    {
        private bool _done;
        public DeferScope() => _deferDepth++;
        public void Dispose() { if (!_done) { _done = true; _deferDepth--; } }
    }

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
        if (_deferDepth > 0) return Tensor.Empty(shape, dtype);
        double bound = fanIn > 0 ? 1 / Math.Sqrt(fanIn) : 0;
        return Tensor.Uniform(shape, seed, -bound, bound, dtype);
    }

    /// <summary>N(0, std²), the Hugging Face initialiser (initializer_range, usually 0.02).</summary>
    public static Tensor Normal(int[] shape, double std, ulong seed, DType dtype = DType.F32) =>
        _deferDepth > 0 ? Tensor.Empty(shape, dtype) : Tensor.Normal(shape, seed, 0, std, dtype);
}
