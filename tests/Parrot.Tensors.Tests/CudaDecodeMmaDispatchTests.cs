using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// When decode attention takes the tensor-core kernel (native/attention_decode_mma.cu, CudaBackend.DecodeMma.cs): the
/// switch and its threshold, the operands it covers, its range rule (static and eager launches agree) and that the
/// launcher's constants are the kernel file's. No GPU needed: the kernel is checked by NVRTC (CudaKernelCompileTests)
/// and by the CPU emulation (tools/cuda-emu/decode_mma_test.cpp).
/// </summary>
public class CudaDecodeMmaDispatchTests
{
    private static readonly long[] Cache = [4 * 2048 * 128, 2048 * 128, 128, 1];         // [B, Hkv, S, 128] contiguous
    private static readonly long[] Projected = [2048 * 4 * 136, 136, 4 * 136, 1];        // [B, S, Hkv, 128 + 8 spare] as [B, Hkv, S, 128]

    private static bool Uses(long keys = 2048, DType dt = DType.BF16, DType? kv = null, DType? odt = null, int d = 128, int dv = 128, bool masked = false,
                             long[]? ks = null, long[]? vs = null, nint kp = 4096, nint vp = 8192, bool on = true, int minKeys = 1024,
                             int shared = H100Shared) =>
        CudaBackend.UsesDecodeMma(on, minKeys, keys, dt, kv ?? dt, odt ?? dt, d, dv, masked, ks ?? Cache, vs ?? Cache, kp, vp, shared);

    // CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: sm_90, sm_80, sm_86/sm_89.
    private const int H100Shared = 232448, A100Shared = 166912, Rtx4090Shared = 101376;

    [Test]
    public void TheSwitchIsOffUnlessOneAndTheThresholdDefaultsTo1024Keys()
    {
        Assert.That(CudaBackend.DecodeMmaDefault(null), Is.False, "unmeasured: off by default");
        Assert.That(CudaBackend.DecodeMmaDefault(""), Is.False);
        Assert.That(CudaBackend.DecodeMmaDefault("0"), Is.False);
        Assert.That(CudaBackend.DecodeMmaDefault("true"), Is.False, "only 1");
        Assert.That(CudaBackend.DecodeMmaDefault(" 1 "), Is.True);
        Assert.That(CudaBackend.DecodeMmaMinKeysDefault(null), Is.EqualTo(1024));
        Assert.That(CudaBackend.DecodeMmaMinKeysDefault("4096"), Is.EqualTo(4096));
        Assert.That(CudaBackend.DecodeMmaMinKeysDefault("0"), Is.EqualTo(1024), "not a positive count");
        Assert.That(CudaBackend.DecodeMmaMinKeysDefault("many"), Is.EqualTo(1024));
    }

    [Test]
    public void Bf16CachesOfAtLeastTheThresholdWithHeadDims64Or128TakeIt()
    {
        Assert.That(Uses(), Is.True);
        Assert.That(Uses(keys: 1024), Is.True, "at the threshold");
        Assert.That(Uses(keys: 1023), Is.False, "below it");
        Assert.That(Uses(keys: 100, minKeys: 64), Is.True, "a lower threshold");
        Assert.That(Uses(d: 64, dv: 64), Is.True);
        Assert.That(Uses(ks: Projected, vs: Projected), Is.True, "K/V as [B, S, Hkv, D] with spare dims");
    }

    [Test]
    public void EverythingElseStaysOnTheFmaKernel()
    {
        Assert.That(Uses(on: false), Is.False, "switch off");
        Assert.That(Uses(masked: true), Is.False, "a mask");
        Assert.That(Uses(dt: DType.F32), Is.False, "f32");
        Assert.That(Uses(kv: DType.F32), Is.False, "f32 caches");
        Assert.That(Uses(odt: DType.F32), Is.False, "f32 output");
        Assert.That(Uses(d: 80, dv: 80), Is.False, "head dim 80");
        Assert.That(Uses(d: 128, dv: 64), Is.False, "v head dim differs");
        Assert.That(Uses(ks: [4 * 2048 * 128, 2048 * 128, 1, 2048]), Is.False, "k head dim not contiguous");
        Assert.That(Uses(vs: [4 * 2048 * 132, 2048 * 132, 132, 1]), Is.False, "v rows not a multiple of 8 elements apart");
        Assert.That(Uses(kp: 4096 + 8), Is.False, "k data not 16-byte aligned");
        Assert.That(Uses(vp: 8192 + 2), Is.False, "v data not 16-byte aligned");
    }

    [Test]
    public void HeadDim128StaysOnTheFmaKernelWhereABlockCannotHaveItsSharedMemory()
    {
        // 104,448 dynamic + 912 static bytes at head dim 128: an sm_86/sm_89 block may have 99 KiB, and asking for more
        // fails the launch (cuFuncSetAttribute: invalid value), where the FMA kernel would have run.
        Assert.That(Uses(shared: H100Shared), Is.True);
        Assert.That(Uses(shared: A100Shared), Is.True);
        Assert.That(Uses(shared: Rtx4090Shared), Is.False, "head dim 128 on a 99 KiB device");
        Assert.That(Uses(d: 64, dv: 64, shared: Rtx4090Shared), Is.True, "head dim 64 (55,296 bytes) fits");
        Assert.That(Uses(shared: CudaBackend.DecodeMmaSharedBytes(128) + CudaBackend.DecodeMmaStaticShared), Is.True, "exactly enough");
        Assert.That(Uses(shared: CudaBackend.DecodeMmaSharedBytes(128) + CudaBackend.DecodeMmaStaticShared - 1), Is.False);
    }

    [Test]
    public void RangesFillTwoBlocksPerSmWithAtLeastOneTileEach()
    {
        // Qwen2-7B batch 1: 4 kv heads × one 16-row tile of the 7 query heads.
        Assert.That(CudaBackend.DecodeMmaSplits(4, 32768, 132), Is.EqualTo(66), "two blocks per SM: 264 blocks");
        Assert.That(CudaBackend.DecodeMmaSplits(4, 4096, 132), Is.EqualTo(64), "64 keys a range at least");
        Assert.That(CudaBackend.DecodeMmaSplits(4, 63, 132), Is.EqualTo(1), "under one tile: one range, the block writes o");
        Assert.That(CudaBackend.DecodeMmaSplits(4, 0, 132), Is.EqualTo(1), "no key");
        Assert.That(CudaBackend.DecodeMmaSplits(1, 1 << 20, 1000), Is.EqualTo(CudaBackend.DecodeMmaMaxSplits), "at most DMMA_MAX_SPLITS");
        Assert.That(CudaBackend.DecodeMmaSplits(1024, 1 << 20, 132), Is.EqualTo(1), "enough blocks already");
    }

    [Test]
    public void StaticAndEagerLaunchesGiveARowTheSameRanges()
    {
        // The kernel takes clamp(keys seen / 64, 1, splits) ranges (its source says so, below): the eager launch (splits
        // of the keys seen) and the static one (splits of the capacity) agree, so their bits do.
        foreach (int sms in new[] { 8, 132 })
            foreach (int groups in new[] { 1, 4, 8, 28 })
                for (int keys = 0; keys <= 20000; keys += 37)
                {
                    int eager = CudaBackend.DecodeMmaSplits(groups, keys, sms);
                    Assert.That(Ranges(eager, keys), Is.EqualTo(eager), $"eager: {keys} keys, {groups} groups, {sms} SMs");
                    foreach (int extra in new[] { 1, 1000, 1 << 17 })
                        Assert.That(Ranges(CudaBackend.DecodeMmaSplits(groups, keys + extra, sms), keys), Is.EqualTo(eager), $"static: {keys} keys of {keys + extra}");
                }
        string src = KernelSources.Read("attention_decode_mma.cu");
        Assert.That(src, Does.Contain("const int want = kend / min_keys, nsplit = want < 1 ? 1 : want < splits ? want : splits;"), "the kernel's rule as Ranges");
    }

    private static int Ranges(int splits, long kend) => (int)Math.Clamp(kend / CudaBackend.DecodeMmaRangeKeys, 1, splits);

    [Test]
    public void LauncherConstantsMatchTheKernelFile()
    {
        string src = KernelSources.Read("attention_decode_mma.cu");
        Assert.That(src, Does.Match($@"#define DMMA_MAX_SPLITS {CudaBackend.DecodeMmaMaxSplits}\b"));
        Assert.That(src, Does.Match($@"#define DMMA_ROWS {CudaBackend.DecodeMmaRows}\b"));
        Assert.That(src, Does.Match($@"#define DMMA_BN {CudaBackend.DecodeMmaRangeKeys}\b"));
        Assert.That(src, Does.Match(@"#define DMMA_STAGES 3\b"));
        Assert.That(src, Does.Contain("#define DMMA_SMEM(D) (DMMA_STAGES * 2 * DMMA_BN * ((D) + MMA_PAD) * 2)"));
        Assert.That(KernelSources.Read("attention_mma.cuh"), Does.Match($@"#define MMA_THREADS {CudaBackend.DecodeMmaThreads}\b"));
        Assert.That(CudaBackend.DecodeMmaSharedBytes(128), Is.EqualTo(104448));
        Assert.That(CudaBackend.DecodeMmaSharedBytes(64), Is.EqualTo(55296));
        foreach (var k in new[] { "attention_decode_mma_d64(", "attention_decode_mma_d128(", "attention_decode_mma_at_d64(", "attention_decode_mma_at_d128(" })
            Assert.That(src, Does.Contain(k));
    }
}
