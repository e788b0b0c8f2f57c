using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Which attention operands the CUDA backend sends to the tensor-core kernels (attention_mma.cu), and that the
/// launcher's grid constants are the kernel file's. No GPU needed: the kernel itself is checked by NVRTC
/// (CudaKernelCompileTests) and by the CPU emulation in tools/cuda-emu (flash_mma_test.cpp).
/// </summary>
public class CudaAttentionDispatchTests
{
    private static readonly long[] Bhsd = [4 * 128 * 64, 128 * 64, 64, 1];  // [B, H, S, 64] contiguous
    private static readonly long[] Bshd = [128 * 4 * 64, 64, 4 * 64, 1];   // [B, S, H, 64] seen as [B, H, S, 64]

    private static bool Uses(DType dt, int d, int dv, long[]? ks = null, long[]? vs = null, nint kp = 4096, nint vp = 8192, DType? odt = null) =>
        CudaBackend.UsesMmaAttention(dt, odt ?? dt, d, dv, ks ?? Bhsd, vs ?? Bhsd, kp, vp);

    [Test]
    public void Bf16WithHeadDims64_80_128AndContiguousAlignedRowsTakesTheTensorCoreKernel()
    {
        Assert.That(Uses(DType.BF16, 64, 64), Is.True);
        Assert.That(Uses(DType.BF16, 80, 80), Is.True);
        Assert.That(Uses(DType.BF16, 128, 128), Is.True);
        Assert.That(Uses(DType.BF16, 64, 64, Bshd, Bshd), Is.True, "the [B, S, H, D] layout of projected keys");
    }

    [Test]
    public void OtherOperandsTakeTheFmaKernels()
    {
        Assert.That(Uses(DType.F32, 64, 64), Is.False, "f32");
        Assert.That(Uses(DType.F16, 64, 64), Is.False, "f16");
        Assert.That(Uses(DType.BF16, 64, 64, odt: DType.F32), Is.False, "f32 output");
        Assert.That(Uses(DType.BF16, 96, 96), Is.False, "head dim without an instantiation");
        Assert.That(Uses(DType.BF16, 64, 128), Is.False, "v head dim differs");
        Assert.That(Uses(DType.BF16, 64, 64, ks: [4 * 128 * 64, 128 * 64, 1, 128]), Is.False, "k transposed (head dim not contiguous)");
        Assert.That(Uses(DType.BF16, 64, 64, vs: [4 * 130 * 64, 130 * 68, 68 + 2, 1]), Is.False, "v rows not a multiple of 8 elements apart");
        Assert.That(Uses(DType.BF16, 64, 64, kp: 4096 + 2), Is.False, "k data not 16-byte aligned");
        Assert.That(Uses(DType.BF16, 64, 64, vp: 8192 + 8), Is.False, "v data not 16-byte aligned");
    }

    [Test]
    public void TensorCoresAreOnUnlessTheEnvironmentSaysZero()
    {
        Assert.That(CudaBackend.TensorCoreAttentionDefault(null), Is.True);
        Assert.That(CudaBackend.TensorCoreAttentionDefault("1"), Is.True);
        Assert.That(CudaBackend.TensorCoreAttentionDefault("0"), Is.False);
        Assert.That(CudaBackend.TensorCoreAttentionDefault(" 0 "), Is.False);
    }

    [Test]
    public void TheBackwardAlsoNeedsQAndDOutRowsOf16Bytes()
    {
        Assert.That(CudaBackend.RowsOf16Bytes(Bshd, 4096), Is.True);
        Assert.That(CudaBackend.RowsOf16Bytes([128 * 64, 64, 1, 128], 4096), Is.False, "head dim not contiguous");
        Assert.That(CudaBackend.RowsOf16Bytes([129 * 64, 64 * 3, 67, 1], 4096), Is.False, "rows 67 elements apart");
        Assert.That(CudaBackend.RowsOf16Bytes(Bhsd, 4096 + 4), Is.False, "data not 16-byte aligned");
    }

    [Test]
    public void LauncherConstantsMatchTheKernelFile()
    {
        // CudaBackend.Attention launches B·H·ceil(T / 64) blocks of 128 threads (B·H·ceil(T / 128) for the 128-row
        // kernels); AttentionBackward the same for _dq and B·Hkv·ceil(S / 64)·splits for dK/dV (attention_mma_dkdv2.cu).
        string shared = KernelSources.Headers["attention_mma.cuh"];
        Assert.That(shared, Does.Match(@"#define MMA_BM 64\b"));
        Assert.That(shared, Does.Match(@"#define MMA_BN 64\b"));
        Assert.That(shared, Does.Match(@"#define MMA_THREADS 128\b"));
        string src = KernelSources.Read("attention_mma.cu"), bwd = KernelSources.Read("attention_mma_backward.cu");
        Assert.That(bwd, Does.Contain("extern \"C\" __global__ void attention_mma_backward_dq("));
        string fma = KernelSources.Read("attention.cu");
        static string Params(string text, string kernel)
        {
            int i = text.IndexOf("void " + kernel + "(", StringComparison.Ordinal);
            Assert.That(i, Is.GreaterThanOrEqualTo(0), kernel);
            int open = text.IndexOf('(', i), close = text.IndexOf(')', open);
            return System.Text.RegularExpressions.Regex.Replace(text[(open + 1)..close], @"\s+", " ");
        }
        Assert.That(Params(bwd, "attention_mma_backward_dq"), Is.EqualTo(Params(fma, "attention_flash_backward_dq")));
        // The dK/dV kernel (CudaBackend.AttentionDkdvLaunch): a kernel per head dim the launcher names by D, its parameters
        // in the launcher's order, and the reduce kernel.
        string dkdv = KernelSources.Read("attention_mma_dkdv2.cu");
        foreach (var d in new[] { 64, 80, 128 })
            Assert.That(Params(dkdv.Replace($"__launch_bounds__(MMA_THREADS, {(d == 64 ? 3 : 2)}) ", ""), $"attention_mma_backward_dkdv2_d{d}"), Is.EqualTo("const void* q, const void* k, const void* v, const void* dout, void* dk, void* dv, " +
                "float* part, const void* mask, int mdt, const float* lse, const float* delta, FaBwdStrides bs, i64 B, i64 H, i64 Hkv, i64 T, i64 S, " +
                "int causal, i64 query_offset, double scale, i64 splits"), $"head dim {d}: the launcher's argument order");
        Assert.That(dkdv, Does.Contain("extern \"C\" __global__ void attention_mma_backward_dkdv2_reduce(const float* part, void* dk, void* dv, FaBwdStrides bs,"));
        // The forward kernels: per head dim (named by D) and the 128-row ones for head dims 64 and 128, all with the FMA
        // forward's parameters (the launcher packs one argument list for either); the launcher's dynamic shared memory is
        // the kernel's MMA_M128_SMEM (K, V tiles of MMA_BN rows, 2·MMA_BM Q rows).
        // They share one parameter list, MMA_FORWARD_PARAMS: expanded here as the preprocessor would.
        const string define = "#define MMA_FORWARD_PARAMS ";
        int at = src.IndexOf(define, StringComparison.Ordinal);
        Assert.That(at, Is.GreaterThanOrEqualTo(0), "MMA_FORWARD_PARAMS");
        int end = at;
        do end = src.IndexOf('\n', end + 1); while (src[end - 1] == '\\');
        string list = src[(at + define.Length)..end].Replace("\\\n", " ");
        src = src.Replace("(MMA_FORWARD_PARAMS)", "(" + list + ")");
        foreach (var (d, blocks) in new[] { (64, 3), (80, 3), (128, 2) })
            Assert.That(Params(src.Replace($"__launch_bounds__(MMA_THREADS, {blocks}) ", ""), $"attention_mma_forward_d{d}"), Is.EqualTo(Params(fma, "attention_flash_forward")));
        foreach (var d in new[] { 64, 128 })
            Assert.That(Params(src.Replace("__launch_bounds__(MMA_THREADS, 2) ", ""), $"attention_mma_forward_m128_d{d}"), Is.EqualTo(Params(fma, "attention_flash_forward")));
        Assert.That(src, Does.Contain("#define MMA_M128_SMEM(D) ((2 * MMA_BN + 2 * MMA_BM) * ((D) + MMA_PAD) * 2)"));
        Assert.That(CudaBackend.MmaM128SharedBytes(128), Is.EqualTo((2 * 64 + 2 * 64) * (128 + 8) * 2));
        Assert.That(CudaBackend.MmaM128SharedBytes(64), Is.EqualTo((2 * 64 + 2 * 64) * (64 + 8) * 2));
        // The deleted first versions (one forward kernel over the head dims, a dK/dV kernel with a block per kv head) stay gone.
        Assert.That(src, Does.Not.Contain("void attention_mma_forward("));
        Assert.That(bwd, Does.Not.Contain("attention_mma_backward_dkdv("));
    }

    [Test]
    public void The128RowForwardIsTheDefaultAndPerDimSelectsTheOther()
    {
        Assert.That(CudaBackend.AttentionForwardM128Default(null), Is.True);
        Assert.That(CudaBackend.AttentionForwardM128Default("m128"), Is.True);
        Assert.That(CudaBackend.AttentionForwardM128Default(" Per-Dim "), Is.False);
        Assert.That(CudaBackend.AttentionForwardM128Default("per-dim"), Is.False);
    }

    [Test]
    public void DkdvSplitsAimAtAbout1024BlocksAndAtMostOnePerQueryHead()
    {
        // Qwen2-0.5B (14 heads over 2 kv heads) at batch 8 × 512: 128 key blocks, a block per query head of the group.
        Assert.That(CudaBackend.DkdvSplits(14, 2, 8 * 2 * 8), Is.EqualTo(7));
        Assert.That(CudaBackend.DkdvSplits(14, 2, 512), Is.EqualTo(2), "a large grid keeps fewer partials");
        Assert.That(CudaBackend.DkdvSplits(14, 2, 4096), Is.EqualTo(1));
        Assert.That(CudaBackend.DkdvSplits(16, 16, 1), Is.EqualTo(1), "no grouped heads: the block writes dk and dv itself");
    }

    [Test]
    public void UpToEightQueryRowsOfF32OrBf16WithHeadDimsUpTo128TakeTheDecodeKernel()
    {
        Assert.That(CudaBackend.UsesDecodeAttention(DType.BF16, DType.BF16, 1, 128, 128), Is.True);
        Assert.That(CudaBackend.UsesDecodeAttention(DType.F32, DType.F32, 8, 80, 64), Is.True, "Dv != D");
        Assert.That(CudaBackend.UsesDecodeAttention(DType.BF16, DType.BF16, 9, 128, 128), Is.False, "9 query rows: the tiled kernels");
        Assert.That(CudaBackend.UsesDecodeAttention(DType.BF16, DType.BF16, 1, 256, 256), Is.False, "head dim 256");
        Assert.That(CudaBackend.UsesDecodeAttention(DType.F64, DType.F64, 1, 64, 64), Is.False, "f64: the simple kernel");
        Assert.That(CudaBackend.UsesDecodeAttention(DType.BF16, DType.F32, 1, 64, 64), Is.False, "output in another dtype");
    }

    [Test]
    public void DecodeReadsKAndVRowsAsVectorsOnlyWhenEveryRowStartIsAligned()
    {
        long[] cache = [160 * 4 * 128, 128, 4 * 128, 1]; // [B, S, Hkv, D] seen as [B, Hkv, S, D]
        Assert.That(CudaBackend.DecodeVectorLoads(DType.BF16, 128, 128, cache, cache, 4096, 8192), Is.True);
        Assert.That(CudaBackend.DecodeVectorLoads(DType.BF16, 128, 128, [128 * 160, 1, 128, 160], cache, 4096, 8192), Is.False, "k transposed");
        Assert.That(CudaBackend.DecodeVectorLoads(DType.BF16, 128, 128, cache, [130 * 160, 130 * 160, 130, 1], 4096, 8192), Is.False, "v rows 130 apart");
        Assert.That(CudaBackend.DecodeVectorLoads(DType.BF16, 128, 128, cache, cache, 4096 + 4, 8192), Is.False, "k not 8-byte aligned");
        Assert.That(CudaBackend.DecodeVectorLoads(DType.F32, 128, 128, cache, cache, 4096, 8192 + 8), Is.False, "f32 v not 16-byte aligned");
        Assert.That(CudaBackend.DecodeVectorLoads(DType.BF16, 62, 62, [62 * 40, 62 * 40, 62, 1], [62 * 40, 62 * 40, 62, 1], 4096, 8192), Is.True, "pairs for dims <= 64");
        Assert.That(CudaBackend.DecodeVectorLoads(DType.BF16, 66, 66, [66 * 40, 66 * 40, 66, 1], [66 * 40, 66 * 40, 66, 1], 4096, 8192), Is.False, "66 dims are not whole fours");
    }

    [Test]
    public void DecodeSplitsAShortCacheIntoRangesOfAChunkAWarpAndALongOneOverTheGpu()
    {
        // Qwen2-7B decode: 4 kv heads, 28 query heads (2 row groups of 4 rows per kv head): 8 row groups a batch row.
        Assert.That(CudaBackend.DecodeSplits(8, 160, 132), Is.EqualTo(5), "160 keys: 5 ranges of 32 (40 blocks, one chunk a warp)");
        Assert.That(CudaBackend.DecodeSplits(8, 4096, 132), Is.EqualTo(33), "two blocks per SM");
        Assert.That(CudaBackend.DecodeSplits(8, 32768, 132), Is.EqualTo(33), "two blocks per SM");
        Assert.That(CudaBackend.DecodeSplits(1024, 32768, 132), Is.EqualTo(1), "enough blocks already");
        Assert.That(CudaBackend.DecodeSplits(8, 0, 132), Is.EqualTo(1), "no visible key");
        Assert.That(CudaBackend.DecodeSplits(8, 31, 132), Is.EqualTo(1), "under 32 keys: one range, the block writes o");
        Assert.That(CudaBackend.DecodeSplits(8, 160, 132, minKeys: 128), Is.EqualTo(1), "at least min keys a range");
        Assert.That(CudaBackend.DecodeSplits(1, 1 << 20, 132), Is.EqualTo(CudaBackend.DecodeMaxSplits), "at most the kernel's DEC_MAX_SPLITS");
    }

    /// <summary>The ranges attention_decode.cu takes of a row group's kend keys when launched with `splits`.</summary>
    private static int KernelRanges(int splits, long kend, int minKeys) => (int)Math.Clamp(kend / minKeys, 1, splits);

    [Test]
    public void StaticAndEagerDecodeLaunchesGiveARowTheSameRangesWhateverTheCapacityAndBatch()
    {
        // The eager launch sizes its grid by the keys seen, the static one by the capacity; the kernel then takes
        // clamp(keys / min keys, 1, splits) ranges (its source says so, below): the same count, hence the same bits.
        // The rule counts one batch row's row groups, so a batch of rows matches each row decoded alone.
        foreach (int sms in new[] { 8, 108, 132 })
            foreach (int minKeys in new[] { 1, 16, 32, 128 })
                foreach (int groups in new[] { 1, 2, 8, 56 })
                    for (int keys = 0; keys <= 5000; keys += 7)
                    {
                        int eager = CudaBackend.DecodeSplits(groups, keys, sms, minKeys);
                        Assert.That(KernelRanges(eager, keys, minKeys), Is.EqualTo(eager), $"eager: {keys} keys, {groups} groups, {sms} SMs, min {minKeys}");
                        foreach (int extra in new[] { 0, 1, 100, 4096, 1 << 17 })
                        {
                            int capacity = CudaBackend.DecodeSplits(groups, keys + extra, sms, minKeys);
                            Assert.That(KernelRanges(capacity, keys, minKeys), Is.EqualTo(eager), $"static: {keys} keys of {keys + extra}, {groups} groups, {sms} SMs, min {minKeys}");
                        }
                    }
        string src = KernelSources.Read("attention_decode.cu");
        Assert.That(src, Does.Contain("const int want = kend / min_keys, nsplit = want < 1 ? 1 : want < splits ? want : splits;"), "the kernel's rule as KernelRanges");
    }

    [Test]
    public void DecodeLauncherConstantsMatchTheKernelFile()
    {
        string src = KernelSources.Read("attention_decode.cu");
        Assert.That(src, Does.Match(@"#define DEC_ROWS 4\b"));
        Assert.That(src, Does.Match(@"#define DEC_WARPS 8\b"));
        Assert.That(src, Does.Match(@"#define DEC_THREADS \(32 \* DEC_WARPS\)"));
        Assert.That(src, Does.Match($@"#define DEC_MAX_SPLITS {CudaBackend.DecodeMaxSplits}\b"));
        foreach (var k in new[] { "attention_decode_forward_bf16(", "attention_decode_forward_f32(", "attention_decode_at_bf16(", "attention_decode_at_f32(" })
            Assert.That(src, Does.Contain(k));
        Assert.That(CudaBackend.DecodeMaxRows, Is.EqualTo(8));
    }
}
