using Parrot.Tensors;

namespace Parrot.Tensors.Tests;

public class BFloat16Tests
{
    /// <summary>
    /// Reference rounding by definition: the 16 dropped bits decide (above half: up, below: down,
    /// exactly half: towards the even kept mantissa). Rounding up may carry into the exponent, which
    /// is what makes values past the largest bf16 become infinity.
    /// </summary>
    private static ushort ReferenceRound(float f)
    {
        uint bits = BitConverter.SingleToUInt32Bits(f);
        uint kept = bits >> 16, dropped = bits & 0xFFFF;
        bool up = dropped > 0x8000 || (dropped == 0x8000 && (kept & 1) == 1);
        return (ushort)(up ? kept + 1 : kept);
    }

    [Test]
    public void RoundsToNearestEvenOnRandomBitPatterns()
    {
        var rng = new Random(1234);
        for (int i = 0; i < 200_000; i++)
        {
            uint bits = (uint)rng.NextInt64(0, 1L << 32);
            float f = BitConverter.UInt32BitsToSingle(bits);
            if (float.IsNaN(f)) continue;
            Assert.That(BFloat16.FromFloat(f), Is.EqualTo(ReferenceRound(f)), $"bits 0x{bits:X8}");
        }
    }

    [Test]
    public void TiesGoToEven()
    {
        // 1 + 2^-8 lies exactly between 1 and 1 + 2^-7: ties to even (1.0).
        Assert.That(BFloat16.ToFloat(BFloat16.FromFloat(1f + 1f / 256)), Is.EqualTo(1f));
        // 1 + 3·2^-8 lies between 1 + 2^-7 (odd) and 1 + 2^-6 (even): goes up.
        Assert.That(BFloat16.ToFloat(BFloat16.FromFloat(1f + 3f / 256)), Is.EqualTo(1f + 1f / 64));
    }

    [Test]
    public void KeepsSpecialValues()
    {
        Assert.That(BFloat16.ToFloat(BFloat16.FromFloat(float.PositiveInfinity)), Is.EqualTo(float.PositiveInfinity));
        Assert.That(BFloat16.ToFloat(BFloat16.FromFloat(float.NegativeInfinity)), Is.EqualTo(float.NegativeInfinity));
        Assert.That(float.IsNaN(BFloat16.ToFloat(BFloat16.FromFloat(float.NaN))), Is.True);
        // A NaN whose payload sits only in the low 16 bits must not become infinity.
        Assert.That(float.IsNaN(BFloat16.ToFloat(BFloat16.FromFloat(BitConverter.UInt32BitsToSingle(0x7F800001)))), Is.True);
        Assert.That(BFloat16.FromFloat(-0f), Is.EqualTo((ushort)0x8000));
        // The largest float rounds up to infinity, as round-to-nearest-even requires.
        Assert.That(BFloat16.ToFloat(BFloat16.FromFloat(float.MaxValue)), Is.EqualTo(float.PositiveInfinity));
        // Subnormals survive.
        float sub = BitConverter.UInt32BitsToSingle(0x00010000);
        Assert.That(BFloat16.ToFloat(BFloat16.FromFloat(sub)), Is.EqualTo(sub));
    }

    [Test]
    public void VectorPathMatchesScalarPath()
    {
        var rng = new Random(7);
        var src = new float[1037];
        for (int i = 0; i < src.Length; i++) src[i] = BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32));
        src[3] = float.NaN; src[100] = float.PositiveInfinity; src[101] = float.MaxValue;
        var dst = new ushort[src.Length];
        BFloat16.FromFloat(src, dst);
        for (int i = 0; i < src.Length; i++)
        {
            var expected = BFloat16.FromFloat(src[i]);
            if (float.IsNaN(src[i])) Assert.That(float.IsNaN(BFloat16.ToFloat(dst[i])), Is.True);
            else Assert.That(dst[i], Is.EqualTo(expected), $"index {i}");
        }
        var back = new float[src.Length];
        BFloat16.ToFloat(dst, back);
        for (int i = 0; i < src.Length; i++)
            if (!float.IsNaN(src[i])) Assert.That(back[i], Is.EqualTo(BFloat16.ToFloat(dst[i])));
    }
}
