using NUnit.Framework;
using Parrot.Cli.SelfTest;
using Parrot.Tests.Shared;

namespace Parrot.Cli.Tests;

/// <summary>
/// The selftest rows a GPU run uses to prove the deterministic scatter-add and Gather's backward bit for bit against the
/// CPU: here their device branch (the copy to the host, the CPU's op, the comparison of element bits) runs on the test
/// device, in every dtype a row names.
/// </summary>
[NonParallelizable]
public class SelfTestScatterCasesTests
{
    [Test]
    public void TheBitExactScatterRowsPassOnTheDevice()
    {
        var rows = SelfTestRunner.Run(TestDevice.Get(), 1, "(bit-exact vs CPU)", TextWriter.Null)
            .Where(r => r.Op.Contains("scatter add") || r.Op.Contains("gather")).ToList();
        Assert.That(rows, Has.Count.EqualTo(17), "four float rows in four dtypes, the integer row once");
        Assert.That(rows.Select(r => r.DType).Distinct(), Is.EquivalentTo(new[] { "float32", "bfloat16", "float16", "float64" }));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
        Assert.That(rows.Where(r => r.Op.Contains("int32")).Select(r => r.ErrorVsCpu), Is.All.EqualTo(0.0));
    }

    [Test]
    public void TheIndexCopyRowPassesOnTheDeviceAndOnTheCpu()
    {
        // On the test device the row's op runs through HostDeviceBackend.IndexCopy (device checks, the CPU kernel), then
        // on CPU copies for the bit comparison; exact against float64 too (a copy of values already in the dtype).
        foreach (var device in new[] { TestDevice.Get(), global::Parrot.Tensors.Device.Cpu })
        {
            var rows = SelfTestRunner.Run(device, 1, "index copy", TextWriter.Null);
            Assert.That(rows.Select(r => r.DType), Is.EquivalentTo(new[] { "float32", "bfloat16", "float16", "float64" }));
            Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
            Assert.That(rows.Select(r => (r.ErrorVsF64, r.ErrorVsCpu)), Is.All.EqualTo((0.0, 0.0)));
        }
    }
}
