using Parrot.Autograd;
using Parrot.Nn;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Parrot.Model;

/// <summary>
/// The <c>mlp2x_gelu</c> projector from vision features to the LLM width: Linear(C→H) · GELU(erf) ·
/// Linear(H→H), applied to every visual token (CLS included). Named like the reference's nn.Sequential:
/// <c>0.{weight,bias}</c> and <c>2.{weight,bias}</c>.
/// </summary>
public sealed class MmProjector : Module
{
    /// <summary>The first linear layer (index 0 of the reference Sequential).</summary>
    public Linear First { get; }
    /// <summary>The second linear layer (index 2; index 1 is the GELU).</summary>
    public Linear Second { get; }

    /// <summary>Creates the projector from vision width <paramref name="visionHidden"/> to <paramref name="hidden"/>.</summary>
    public MmProjector(int visionHidden, int hidden, ulong seed = 0, DType dtype = DType.F32)
    {
        First = AddModule("0", new Linear(visionHidden, hidden, true, Init.SeedFor(seed, "0"), dtype));
        Second = AddModule("2", new Linear(hidden, hidden, true, Init.SeedFor(seed, "2"), dtype));
    }

    /// <summary>Projects features [..., C] to [..., H].</summary>
    public Variable Forward(Variable features) => Second.Forward(First.Forward(features).Gelu());
}
