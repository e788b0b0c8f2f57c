using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// <see cref="Tensor.RopeAppendAttend"/> and <see cref="Tensor.RopeAppendAttendAt"/> (a decode step's rotations, cache
/// append and attention as one op) on the CPU and on the test device: the same bits as the ops they stand for
/// (RopeAppend then ScaledDotProductAttention; RopeAppendAt then AttentionAt), in the output and in every cache row;
/// their input checks; and the CUDA launcher's rule of which calls take the one-kernel path (the rest keep the two
/// launches). The kernel's own identity with the two launches: tools/cuda-emu's decode_test and `parrot selftest`.
/// </summary>
public class RopeAppendAttendTests
{
    private const int B = 2, H = 4, Hkv = 2, D = 16, MaxLen = 9, Past = 3;

    private static Device DeviceFor(bool testDevice) => testDevice ? TestDevice.Get() : Device.Cpu;

    private static Tensor Random(int[] shape, DType dtype, ulong seed, Device device)
    {
        using var host = Tensor.Normal(shape, seed, 0, 1, dtype);
        return host.To(device);
    }

    [Test]
    public void EqualsRopeAppendThenAttention([Values] bool testDevice, [Values(DType.F32, DType.BF16)] DType dtype, [Values(1, 3)] int t, [Values] bool masked)
    {
        var device = DeviceFor(testDevice);
        using var scope = TensorScope.Begin();
        // q, k and v as column views of one packed projection [B, T, (H + 2·Hkv)·D], as attention passes them.
        var packed = Random([B, t, (H + 2 * Hkv) * D], dtype, 1, device);
        var q = packed.Narrow(2, 0, H * D).Reshape(B, t, H, D).Transpose(1, 2);
        var k = packed.Narrow(2, H * D, Hkv * D).Reshape(B, t, Hkv, D).Transpose(1, 2);
        var v = packed.Narrow(2, (H + Hkv) * D, Hkv * D).Reshape(B, t, Hkv, D).Transpose(1, 2);
        var (cos, sin) = Tensor.RopeTables(Past, t, D, 10_000.0, device);
        var kc = Random([B, Hkv, MaxLen, D], dtype, 2, device);
        var vc = Random([B, Hkv, MaxLen, D], dtype, 3, device);
        var (kc2, vc2) = (kc.Clone(), vc.Clone());
        var mask = masked ? Random([B, 1, t, Past + t], DType.F32, 4, device) : null;

        var got = Tensor.RopeAppendAttend(q, k, v, cos, sin, kc.Narrow(2, 0, Past + t), vc.Narrow(2, 0, Past + t), causal: true, mask);
        var qRot = Tensor.RopeAppend(q, k, v, cos, sin, kc2.Narrow(2, Past, t), vc2.Narrow(2, Past, t));
        var want = Tensor.ScaledDotProductAttention(qRot, kc2.Narrow(2, 0, Past + t), vc2.Narrow(2, 0, Past + t), mask, causal: true, queryOffset: Past);

        Assert.That(got.Device, Is.EqualTo(device));
        Assert.That(got.Shape.ToArray(), Is.EqualTo(want.Shape.ToArray()));
        Assert.That(got.Strides.ToArray(), Is.EqualTo(want.Strides.ToArray()), "ScaledDotProductAttention's layout ([B, T, H, D] memory)");
        Assert.That(Bits(got), Is.EqualTo(Bits(want)), "attention");
        Assert.That(Bits(kc), Is.EqualTo(Bits(kc2)), "K cache, every row");
        Assert.That(Bits(vc), Is.EqualTo(Bits(vc2)), "V cache, every row");
        Assert.That(Bits(kc.Narrow(2, Past, t)), Is.Not.EqualTo(Bits(Random([B, Hkv, MaxLen, D], dtype, 2, device).Narrow(2, Past, t))), "the new rows were written");
    }

    [Test]
    public void AtPositionsEqualsRopeAppendAtThenAttentionAt([Values] bool testDevice, [Values(DType.F32, DType.BF16)] DType dtype, [Values(1, 2)] int t)
    {
        var device = DeviceFor(testDevice);
        using var scope = TensorScope.Begin();
        var q = Random([B, t, H, D], dtype, 5, device).Transpose(1, 2);
        var k = Random([B, t, Hkv, D], dtype, 6, device).Transpose(1, 2);
        var v = Random([B, t, Hkv, D], dtype, 7, device).Transpose(1, 2);
        var (cos, sin) = Tensor.RopeTables(0, MaxLen + 2, D, 10_000.0, device);
        using var host = Tensor.FromArray(new long[] { 2, MaxLen - t }, B); // the second row fills the cache
        var positions = host.To(device);
        var kc = Random([B, Hkv, MaxLen, D], dtype, 8, device);
        var vc = Random([B, Hkv, MaxLen, D], dtype, 9, device);
        var (kc2, vc2) = (kc.Clone(), vc.Clone());

        var got = Tensor.RopeAppendAttendAt(q, k, v, cos, sin, positions, kc, vc);
        var qRot = Tensor.RopeAppendAt(q, k, v, cos, sin, positions, kc2, vc2);
        var want = Tensor.AttentionAt(qRot, kc2, vc2, positions);

        Assert.That(got.Device, Is.EqualTo(device));
        Assert.That(got.Strides.ToArray(), Is.EqualTo(want.Strides.ToArray()));
        Assert.That(Bits(got), Is.EqualTo(Bits(want)), "attention");
        Assert.That(Bits(kc), Is.EqualTo(Bits(kc2)), "K cache, every row");
        Assert.That(Bits(vc), Is.EqualTo(Bits(vc2)), "V cache, every row");
    }

    [Test]
    public void RejectsBadInput()
    {
        using var scope = TensorScope.Begin();
        var (cos, sin) = Tensor.RopeTables(3, 1, 8, 10_000.0);
        var q = Tensor.Zeros([1, 4, 1, 8]);
        var k = Tensor.Zeros([1, 2, 1, 8]);
        var kc = Tensor.Zeros([1, 2, 4, 8]);
        var vc = Tensor.Zeros([1, 2, 4, 8]);
        Assert.That(() => Tensor.RopeAppendAttend(q, k, k, cos, sin, kc.Narrow(2, 0, 0), vc.Narrow(2, 0, 0), true),
            Throws.ArgumentException.With.Message.Contains("RopeAppendAttend: the caches [1, 2, 0, 8], [1, 2, 0, 8] must be [B, kv_heads, past + T, head_dim]"));
        Assert.That(() => Tensor.RopeAppendAttend(q, k, k, cos, sin, kc, vc.Narrow(2, 0, 3), true), Throws.ArgumentException.With.Message.Contains("RopeAppendAttend: the caches"));
        Assert.That(() => Tensor.RopeAppendAttend(q, k, k, cos, sin, kc, Tensor.Zeros([1, 2, 4, 8], DType.BF16), true),
            Throws.ArgumentException.With.Message.Contains("RopeAppendAttend: q, k, v, kSlot and vSlot must share one dtype"));
        Assert.That(() => Tensor.RopeAppendAttend(Tensor.Zeros([1, 3, 1, 8]), k, k, cos, sin, kc, vc, true),
            Throws.ArgumentException.With.Message.Contains("query heads must be a multiple"));
        Assert.That(kc.ToFloatArray(), Is.All.EqualTo(0f), "a refused call writes nothing");
        var (whole, wsin) = Tensor.RopeTables(0, 4, 8, 10_000.0);
        using var pos = Tensor.FromArray(new long[] { 1 }, 1);
        Assert.That(() => Tensor.RopeAppendAttendAt(q, k, k, whole.Narrow(0, 0, 3), wsin, pos, kc, vc),
            Throws.ArgumentException.With.Message.Contains("RopeAppendAttendAt: cos [3, 8] must be a whole table"));
        Assert.That(() => Tensor.RopeAppendAttendAt(q, k, k, whole, wsin, Tensor.FromArray(new long[] { 1, 2 }, 2), kc, vc),
            Throws.ArgumentException.With.Message.Contains("RopeAppendAttendAt: positions must be a contiguous [1]"));
    }

    /// <summary>The one-kernel path's operands (the rest runs the two launches): one token a row, f32/bf16 alike, an
    /// even head dim ≤ 128, tables of one float dtype (one row for the host-position op), no mask.</summary>
    [TestCase(DType.BF16, 1, 128, DType.BF16, false, false, false, true)]  // the 7B decode step
    [TestCase(DType.F32, 1, 64, DType.F32, false, false, true, true)]      // device positions, whole tables
    [TestCase(DType.BF16, 2, 128, DType.BF16, false, false, false, false)] // two tokens a row
    [TestCase(DType.BF16, 1, 256, DType.BF16, false, false, false, false)] // head dim past the kernel's 128
    [TestCase(DType.BF16, 1, 126, DType.BF16, false, false, false, true)]
    [TestCase(DType.F16, 1, 128, DType.F16, false, false, false, false)]   // the decode kernel is f32/bf16
    [TestCase(DType.BF16, 1, 128, DType.F32, false, false, false, false)]  // a cache of another dtype
    [TestCase(DType.BF16, 1, 128, DType.BF16, true, false, false, false)]  // a mask
    [TestCase(DType.BF16, 1, 128, DType.BF16, false, true, false, false)]  // tables of several rows, host position
    [TestCase(DType.BF16, 1, 128, DType.BF16, false, true, true, true)]    // ... whole tables at device positions
    public void FusedPathOperands(DType dtype, int queries, int headDim, DType cacheDType, bool masked, bool severalRows, bool atPositions, bool expected)
    {
        using var scope = TensorScope.Begin();
        var (cos, sin) = Tensor.RopeTables(0, severalRows || atPositions ? 5 : 1, headDim, 10_000.0);
        Assert.That(CudaBackend.RopeAttendFits(dtype, queries, headDim, cacheDType, cos, sin, masked, atPositions), Is.EqualTo(expected));
    }

    [Test]
    public void FusedPathTablesOfOneDtype()
    {
        using var scope = TensorScope.Begin();
        var (cos, sin) = Tensor.RopeTables(0, 1, 64, 10_000.0);
        using var sinBf = sin.To(DType.BF16);
        using var cosI = Tensor.Zeros([1, 64], DType.I32);
        Assert.That(CudaBackend.RopeAttendFits(DType.BF16, 1, 64, DType.BF16, cos, sinBf, false, false), Is.False, "cos f32, sin bf16");
        Assert.That(CudaBackend.RopeAttendFits(DType.BF16, 1, 64, DType.BF16, cosI, cosI, false, false), Is.False, "integer tables");
        Assert.That(CudaBackend.RopeAttendFits(DType.BF16, 1, 64, DType.BF16, cos.Unsqueeze(0).Unsqueeze(0), sin.Unsqueeze(0).Unsqueeze(0), false, false), Is.True, "one row [1, 1, 1, D]");
    }

    [TestCase(true, true, false, true)]
    [TestCase(false, true, false, false)] // PARROT_DECODE_ROPE_FUSED=0
    [TestCase(true, false, false, false)] // PARROT_DECODE_ATTENTION=0: the tiled kernels attend
    [TestCase(true, true, true, false)]   // cuDNN forced
    public void FusedOnlyWhereTheDecodeKernelAttends(bool ropeFused, bool decode, bool cudnnRequired, bool expected) =>
        Assert.That(CudaBackend.RopeAttendEnabled(ropeFused, decode, cudnnRequired), Is.EqualTo(expected));

    /// <summary>Where the tensor-core decode kernel takes the attention, its fused form or the two launches, never the
    /// FMA fused kernel (whose attention is not the tensor-core kernel's bits); elsewhere the FMA fused kernel.</summary>
    [TestCase(true, false, false, true, "Fma")]
    [TestCase(true, false, false, false, "None")]
    [TestCase(true, true, true, false, "TensorCores")]
    [TestCase(true, true, true, true, "TensorCores")]
    [TestCase(true, true, false, true, "None")] // e.g. 9 rows: not the FMA kernel either
    [TestCase(false, true, true, true, "None")] // PARROT_DECODE_ROPE_FUSED=0 and the like
    [TestCase(false, false, false, true, "None")]
    public void TensorCoreAttentionTakesItsOwnFusedKernel(bool enabled, bool mmaTakes, bool mmaFits, bool fmaFits, string expected) =>
        Assert.That(CudaBackend.RopeAttendChoice(enabled, mmaTakes, mmaFits, fmaFits).ToString(), Is.EqualTo(expected));

    /// <summary>The tensor-core fused kernel's operands beyond the attention's: 1 to 8 tokens a row (the decode path's
    /// rows), tables of one float dtype, the host-position op's holding the new rows alone (one row, or one a token).</summary>
    [TestCase(1, 1, false, true)]   // the decode step
    [TestCase(2, 2, false, true)]   // two tokens, a table row each
    [TestCase(8, 8, false, true)]
    [TestCase(3, 1, false, true)]   // one row for every token (broadcast)
    [TestCase(9, 9, false, false)]  // past the decode path's 8 rows: the two launches' attention is not this kernel
    [TestCase(2, 5, false, false)]  // a table of other rows than the new ones, host position
    [TestCase(2, 5, true, true)]    // ... whole tables at device positions
    public void TensorCoreFusedOperands(int queries, int tableRows, bool atPositions, bool expected)
    {
        using var scope = TensorScope.Begin();
        var (cos, sin) = Tensor.RopeTables(0, tableRows, 128, 10_000.0);
        Assert.That(CudaBackend.RopeAttendMmaFits(queries, cos, sin, atPositions), Is.EqualTo(expected));
    }

    [Test]
    public void TensorCoreFusedTables()
    {
        using var scope = TensorScope.Begin();
        var (cos, sin) = Tensor.RopeTables(0, 2, 64, 10_000.0);
        using var sinBf = sin.To(DType.BF16);
        Assert.That(CudaBackend.RopeAttendMmaFits(2, cos, sinBf, false), Is.False, "cos f32, sin bf16");
        Assert.That(CudaBackend.RopeAttendMmaFits(2, cos.Unsqueeze(0).Unsqueeze(0), sin.Unsqueeze(0).Unsqueeze(0), false), Is.True, "[1, 1, 2, D]");
        Assert.That(CudaBackend.RopeAttendMmaFits(2, cos.Unsqueeze(0).Expand(3, 2, 64), sin.Unsqueeze(0).Expand(3, 2, 64), false), Is.False, "a table per batch row");
        Assert.That(CudaBackend.NewRowStride(cos), Is.EqualTo(64), "row t at t · 64");
        Assert.That(CudaBackend.NewRowStride(cos.Narrow(0, 1, 1)), Is.EqualTo(0), "one row: every token's");
        Assert.That(CudaBackend.NewRowStride(cos.Narrow(0, 1, 1).Reshape(64)), Is.EqualTo(0), "a [D] table");
    }

    [TestCase(null, false)]
    [TestCase("1", true)]
    [TestCase(" 1 ", true)]
    [TestCase("0", false)]
    public void ApartByDefaultFusedFor1(string? env, bool expected) => Assert.That(CudaBackend.DecodeRopeFusedDefault(env), Is.EqualTo(expected));

    private static long[] Bits(Tensor t) => t.DType switch
    {
        DType.F32 => t.ToArray<float>().Select(x => (long)BitConverter.SingleToInt32Bits(x)).ToArray(),
        DType.BF16 => t.ToBFloat16Bits().Select(x => (long)x).ToArray(),
        _ => throw new ArgumentException(t.DType.ToString()),
    };
}
