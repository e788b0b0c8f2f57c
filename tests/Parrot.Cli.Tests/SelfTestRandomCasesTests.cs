using Parrot.Tests.Shared;

namespace Parrot.Cli.Tests;

/// <summary>
/// The selftest rows a GPU run uses to check Random on the device (native/random.cu), here on the test device (the CPU
/// kernels behind another device's tensors): they run and pass, and the dropout row keeps every tensor on the device.
/// </summary>
[NonParallelizable]
public class SelfTestRandomCasesTests
{
    [Test]
    public void TheRandomRowsPassOnTheTestDevice()
    {
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "random", TextWriter.Null)
            .Concat(SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "dropout train step", TextWriter.Null)).ToList();
        Assert.That(rows.Select(r => r.Op).Distinct(), Is.EquivalentTo(new[]
        {
            "random uniform on the device = CPU (bits)", "random normal on the device = CPU (ulp)", "cuda graph replay = eager (random)",
            "dropout train step on the device = CPU mask",
        }));
        Assert.That(rows, Has.Count.EqualTo(5), "dropout in f32 and bf16, the others in f32 (they draw every dtype themselves)");
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => $"{r.Op} {r.DType}: {r.Message}")));
    }
}
