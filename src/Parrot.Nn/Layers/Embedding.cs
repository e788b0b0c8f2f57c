using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Layers;

/// <summary>A lookup table [vocab, dim]: ids of any shape map to rows.</summary>
public sealed class Embedding : Module
{
    /// <summary>The table [vocab, dim].</summary>
    public Variable Weight { get; }

    /// <summary>Creates a table initialised N(0, 1) as PyTorch's nn.Embedding (or with std as given).</summary>
    public Embedding(int vocab, int dim, ulong seed = 0, double std = 1.0, DType dtype = DType.F32)
    {
        if (vocab <= 0 || dim <= 0) throw new ArgumentOutOfRangeException(nameof(vocab), $"Embedding({vocab}, {dim}): sizes must be positive");
        Weight = AddParameter("weight", Init.Normal([vocab, dim], std, Init.SeedFor(seed, "weight"), dtype));
    }

    /// <summary>Rows for <paramref name="ids"/> (I64/I32, any shape) → [..., dim]; out-of-range ids throw.</summary>
    public Variable Forward(Tensor ids) => Variable.Embedding(Weight, ids);
}
