using Parrot.Nn;
using Parrot.Nn.Layers;
using Parrot.Tensors;

namespace Parrot.Nn.Tests;

/// <summary>Module.To(device): parameters move (or stay), values survive, an unusable device moves nothing.</summary>
public class ModuleDeviceTests
{
    [Test]
    public void ToTheCpuKeepsEveryParameter()
    {
        using var m = new GatedSiluMlp(8, 12, seed: 3);
        var before = m.Parameters().Select(p => p.Value).ToArray();
        Assert.That(m.To(Device.Cpu), Is.SameAs(m));
        Assert.That(m.Parameters().Select(p => p.Value), Is.EqualTo(before), "nothing is copied when the parameters are already there");
        Assert.That(m.Device, Is.EqualTo(Device.Cpu));
    }

    [Test]
    public void ToCudaMovesTheParametersOrSaysWhyNotAndMovesNothing()
    {
        using var m = new GatedSiluMlp(8, 12, seed: 4);
        var values = m.Parameters().Select(p => p.Value.ToFloatArray()).ToArray();
        var cuda = Device.Parse("cuda");
        NotSupportedException? unavailable = null;
        try { _ = Backends.For(cuda); }
        catch (NotSupportedException e) { unavailable = e; }
        if (unavailable is not null)
        {
            var ex = Assert.Throws<Parrot.Tensors.Cuda.CudaUnavailableException>(() => m.To(cuda));
            Assert.That(ex!.Message, Does.StartWith("no CUDA device: "));
            Assert.That(m.Parameters().All(p => p.Value.Device == Device.Cpu && !p.Value.IsDisposed), Is.True);
        }
        else
        {
            m.To(cuda);
            Assert.That(m.Parameters().All(p => p.Value.Device == cuda), Is.True);
            m.To(Device.Cpu);
        }
        Assert.That(m.Parameters().Select(p => p.Value.ToFloatArray()), Is.EqualTo(values));
    }
}
