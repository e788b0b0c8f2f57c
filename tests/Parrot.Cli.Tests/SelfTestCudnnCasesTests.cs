using Parrot.Cli.SelfTest;

namespace Parrot.Cli.Tests;

/// <summary>
/// The selftest's evidence that cuDNN ran its deterministic SDPA backward algorithm and not the atomic one
/// (<see cref="SelfTestCudnnCases.DpWorkspaceShortfall"/>): the "dP workspace" engine keeps dS for every query and key,
/// so its plan asks for a workspace that grows with T·S, while the atomic engine asked for 256 bytes on the H200
/// (cuDNN 9.14, B4 H16 T2048 D128). Two runs giving the same bits at a small shape prove little on their own: the
/// atomic path was found to repeat its bits at small batches (karpathy/llm.c #652).
/// </summary>
public class SelfTestCudnnCasesTests
{
    [Test]
    public void TheAtomicEnginesWorkspaceIsNotTakenForTheDeterministicOne()
    {
        Assert.That(SelfTestCudnnCases.DpWorkspaceShortfall(256, 2, 8, 256, 256), Does.Contain("256 B").And.Contain("1048576 B"));
        Assert.That(SelfTestCudnnCases.DpWorkspaceShortfall(0, 1, 14, 512, 512), Is.Not.Null);
        // An engine adding into a float32 dQ buffer of its own (B·H·T·D·4 bytes) at the selftest's shapes, where S > 4·D.
        foreach (var (b, h, t, d) in new[] { (2, 8, 512, 64), (2, 16, 2048, 128), (1, 14, 512, 64) })
            Assert.That(SelfTestCudnnCases.DpWorkspaceShortfall(4L * b * h * t * d, b, h, t, t), Is.Not.Null, $"B{b} H{h} T{t} D{d}");
    }

    [Test]
    public void TheDpWorkspaceIsAcceptedWithOrWithoutTheBlocksAboveTheDiagonal()
    {
        // Full 16-bit dS (the frontend's estimate: rows and keys padded to 64), and half of it: a causal engine may keep
        // only the blocks on and below the diagonal (more than half of them at any T).
        Assert.That(SelfTestCudnnCases.DpWorkspaceShortfall(2L * 2 * 16 * 2048 * 2048, 2, 16, 2048, 2048), Is.Null);
        Assert.That(SelfTestCudnnCases.DpWorkspaceShortfall(2L * 8 * 256 * 256, 2, 8, 256, 256), Is.Null);
        Assert.That(SelfTestCudnnCases.DpWorkspaceShortfall(2L * 8 * 256 * 256 - 1, 2, 8, 256, 256), Is.Not.Null);
        Assert.That(SelfTestCudnnCases.DpWorkspaceShortfall(8L * 32 * 16384 * 16384, 8, 32, 16384, 16384), Is.Null, "no int overflow");
    }
}
