using Parrot.Tensors;

namespace Parrot.Tensors.Tests;

[NonParallelizable]
public class MemoryTests
{
    // Tensors leaked by earlier tests (a GradCheck's inputs, say) are freed by their finalizers at an
    // arbitrary moment; let that happen before taking the baseline.
    private static void SettleFinalizers()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    [Test]
    public void ScopesReturnMemoryToItsStartingValueOverAThousandIterations()
    {
        using var x = Tensor.Normal([64, 64], seed: 1);
        SettleFinalizers();
        long before = MemoryStats.CpuBytesInUse;
        for (int i = 0; i < 1000; i++)
        {
            using var scope = TensorScope.Begin();
            var y = (x * 2 + 1).Exp().Transpose().Reshape(-1); // copies and views of copies
            var z = Tensor.Where(y.Gt(Tensor.Scalar(1)), y, y.Neg()).To(DType.BF16);
            Assert.That(z.Count, Is.EqualTo(4096));
        }
        Assert.That(MemoryStats.CpuBytesInUse, Is.EqualTo(before));
    }

    [Test]
    public void StorageLivesUntilTheLastViewIsDisposed()
    {
        SettleFinalizers();
        long before = MemoryStats.CpuBytesInUse;
        var a = Tensor.Zeros([1000]);
        var v = a.Narrow(0, 10, 5);
        a.Dispose();
        Assert.That(MemoryStats.CpuBytesInUse, Is.EqualTo(before + 4000));
        v.Fill(3); // still usable
        Assert.That(v.ToArray<float>(), Is.EqualTo(new float[] { 3, 3, 3, 3, 3 }));
        v.Dispose();
        Assert.That(MemoryStats.CpuBytesInUse, Is.EqualTo(before));
    }

    [Test]
    public void KeptTensorsMoveToTheOuterScope()
    {
        SettleFinalizers();
        long before = MemoryStats.CpuBytesInUse;
        using (var outer = TensorScope.Begin())
        {
            Tensor kept;
            using (var inner = TensorScope.Begin())
            {
                var t = Tensor.Ones([10]);
                kept = inner.Keep(t * 3);
            }
            Assert.That(kept.IsDisposed, Is.False);
            Assert.That(kept.ToArray<float>()[0], Is.EqualTo(3));
        }
        Assert.That(MemoryStats.CpuBytesInUse, Is.EqualTo(before));
    }
}
