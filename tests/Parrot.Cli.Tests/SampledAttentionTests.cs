using Parrot.Cli.SelfTest;
using Parrot.Tensors;

namespace Parrot.Cli.Tests;

/// <summary>
/// The float64 sampled reference of the selftest rows "cuDNN SDPA = ours …" (<see cref="SampledAttention"/>) against the
/// CPU backend's attention and its backward in float64 at a small causal GQA shape, and the rows themselves on a device
/// without cuDNN.
/// </summary>
public class SampledAttentionTests
{
    private static float[] Values(int n, int seed)
    {
        var r = new Random(seed);
        var v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float)(r.NextDouble() * 2 - 1);
        return v;
    }

    [TestCase(2, 4, 2, 40, 16)]
    [TestCase(1, 3, 3, 25, 8)]
    public void SamplesEqualTheCpuAttentionInFloat64(int B, int H, int Hkv, int T, int D)
    {
        float[] q = Values(B * H * T * D, 1), k = Values(B * Hkv * T * D, 2), v = Values(B * Hkv * T * D, 3), dO = Values(B * H * T * D, 4);
        double scale = 1 / Math.Sqrt(D);
        using var scope = TensorScope.Begin();
        Tensor F64(float[] a, int h) => Tensor.FromArray(a, Device.Cpu, B, h, T, D).To(DType.F64);
        var (qt, kt, vt, dt) = (F64(q, H), F64(k, Hkv), F64(v, Hkv), F64(dO, H));
        var o = Tensor.ScaledDotProductAttention(qt, kt, vt, out var lse, causal: true);
        var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(qt, kt, vt, o, lse, dt, null, true, 0, scale);
        var reference = new SampledAttention(q, k, v, dO, B, H, Hkv, T, D, scale);
        float[] of = o.Contiguous().ToFloatArray(), lf = lse.ToFloatArray(), qf = dq!.Contiguous().ToFloatArray(),
            kf = dk!.Contiguous().ToFloatArray(), vf = dv!.Contiguous().ToFloatArray();
        foreach (var (what, error) in reference.Errors(of, lf, qf, kf, vf))
            Assert.That(error, Is.LessThan(1e-6), what); // the CPU's float64 results rounded to float32
        // A wrong value at a sampled key (the last kv head's key T/3, batch row B − 1) must show.
        kf[(((B - 1) * Hkv + Hkv - 1) * T + T / 3) * D] += 0.05f;
        Assert.That(reference.Errors(of, lf, qf, kf, vf).Single(e => e.What == "dk").Error, Is.GreaterThan(1e-3));
    }

    [Test]
    public void TheCudnnComparisonRowsRunInBf16AndPassWhereThereIsNoCudnn()
    {
        // On a GPU these rows compare cuDNN with our kernels; on another device (here the test device) and on the CPU
        // references they return 0, so they pass and cost nothing.
        var rows = SelfTestRunner.Run(Device.Cpu, 1, "cuDNN SDPA = ours", TextWriter.Null);
        Assert.That(rows.Select(r => (r.Op, r.DType)), Is.EqualTo(new[]
        {
            ("cuDNN SDPA = ours B2 H16 T2048 D128", "bfloat16"), ("cuDNN SDPA = ours B1 H14 Hkv2 T512 D64", "bfloat16"),
        }));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"));
    }
}
