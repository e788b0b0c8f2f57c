using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Parrot.Tensors.Cuda;

namespace Parrot.Tensors.Tests;

/// <summary>
/// The launchers of attention_decode_rope_* and attention_decode_mma_rope_* (CudaBackend.RopeAppendAttend,
/// RopeAppendAttendMma) against the kernel files, without a GPU: the kernels' parameter lists are the ones the
/// launchers pack, and the C# DecRope has the layout of the kernel's struct (passed by value: a field out of place
/// would hand the kernel wrong pointers or strides).
/// </summary>
public class DecodeRopeLaunchTests
{
    [Test]
    public void KernelParametersAreTheLaunchersOrder()
    {
        string src = Regex.Replace(KernelSources.Read("attention_decode.cu"), @"\s+", " ");
        foreach (string dt in new[] { "bf16", "f32" })
            Assert.That(src, Does.Contain($"attention_decode_rope_{dt}( const void* q, void* k, void* v, void* o, AttnStrides st, int H, int Hkv, int S, int D, int query_offset, double scale, " +
                                          "int vec, int splits, int min_keys, float* part, unsigned* tickets, const void* pos, int pdt, DecRope rope)"));
    }

    [Test]
    public void TensorCoreKernelParametersAreTheLaunchersOrder()
    {
        // CudaBackend.RopeAppendAttendMma packs: q, k, v, o, st, H, Hkv, T, S, causal, query_offset, scale, splits,
        // min_keys, part, tickets, pos, pdt, rope.
        string src = Regex.Replace(KernelSources.Read("attention_decode_mma.cu"), @"\s+", " ");
        Assert.That(src, Does.Contain("#define DMMA_ROPE_PARAMS const void* q, void* k, void* v, void* o, AttnStrides st, int H, int Hkv, int T, int S, int causal, " +
                                      "\\ int query_offset, double scale, int splits, int min_keys, float* part, unsigned* tickets, const void* pos, int pdt, DecRope rope"));
        foreach (int d in new[] { 64, 128 })
            Assert.That(src, Does.Contain($"attention_decode_mma_rope_d{d}(DMMA_ROPE_PARAMS)"));
        Assert.That(src, Does.Contain("#include \"rope.cuh\""), "DecRope and the rotation from rope.cuh");
    }

    [Test]
    public unsafe void DecRopeHasTheKernelStructsLayout()
    {
        // rope.cuh: one definition for attention_decode.cu's and attention_decode_mma.cu's fused kernels
        string src = Regex.Replace(KernelSources.Read("rope.cuh"), @"//[^\n]*", "");
        var body = Regex.Match(src, @"struct DecRope\s*\{([^}]*)\}").Groups[1].Value;
        Assert.That(Regex.Replace(body, @"\s+", " ").Trim(), Is.EqualTo(
            "const void* k; const void* v; const void* cos; const void* sin; i64 ks[4], vs[4]; i64 clast, slast, crow, srow; int tdt;"));
        var r = new CudaBackend.DecRope();
        byte* at = (byte*)&r;
        Assert.That((long)((byte*)&r.K - at), Is.EqualTo(0));
        Assert.That((long)((byte*)&r.Sin - at), Is.EqualTo(24));
        Assert.That((long)((byte*)r.Ks - at), Is.EqualTo(32));
        Assert.That((long)((byte*)r.Vs - at), Is.EqualTo(64));
        Assert.That((long)((byte*)&r.CLast - at), Is.EqualTo(96));
        Assert.That((long)((byte*)&r.SRow - at), Is.EqualTo(120));
        Assert.That((long)((byte*)&r.TDType - at), Is.EqualTo(128));
        Assert.That(sizeof(CudaBackend.DecRope), Is.EqualTo(136), "padded to 8 bytes as the C struct");
    }
}
