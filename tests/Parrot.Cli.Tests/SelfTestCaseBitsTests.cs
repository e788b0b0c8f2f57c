using Parrot.Cli.SelfTest;

namespace Parrot.Cli.Tests;

/// <summary>SelfTestCase.FirstBitDifference, the comparison of the selftest's bit-for-bit rows.</summary>
[TestFixture]
public class SelfTestCaseBitsTests
{
    [Test]
    public void SameBitsGiveMinusOneAndTheFirstOtherBitsTheirIndex()
    {
        Assert.That(SelfTestCase.FirstBitDifference([1.0, 2.0, double.NaN], [1.0, 2.0, double.NaN]), Is.EqualTo(-1), "NaN with NaN's bits");
        Assert.That(SelfTestCase.FirstBitDifference([], []), Is.EqualTo(-1));
        Assert.That(SelfTestCase.FirstBitDifference([1.0, -0.0, 3.0], [1.0, 0.0, 4.0]), Is.EqualTo(1), "−0 is other bits than +0");
        Assert.That(SelfTestCase.FirstBitDifference([1.0, 2.0], [1.0, BitConverter.Int64BitsToDouble(BitConverter.DoubleToInt64Bits(2.0) + 1)]), Is.EqualTo(1), "one ulp");
    }

    [Test]
    public void OtherLengthsAreAnError() =>
        Assert.That(() => SelfTestCase.FirstBitDifference([1.0], [1.0, 2.0]), Throws.InvalidOperationException.With.Message.Contains("1 values against 2"));
}
