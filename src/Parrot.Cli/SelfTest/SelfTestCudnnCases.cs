using Parrot.Tensors;
using Parrot.Tensors.Cuda;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// Attention through cuDNN's fused SDPA (CudaBackend.Cudnn.cs), in bfloat16 only (cuDNN's engines take bf16/f16):
/// the device run forces the cuDNN path (<see cref="CudaBackend.CudnnAttentionRequired"/>), so a GPU whose cuDNN is
/// missing, too old or refuses the graph reports the row MISSING with cuDNN's reason instead of passing on our
/// kernels. The references (CPU in bf16 and float64) are the same as for the other attention rows.
/// </summary>
internal static class SelfTestCudnnCases
{
    internal static IEnumerable<SelfTestCase> All()
    {
        DType[] bf16 = [DType.BF16];
        // Grouped heads, causal from offset 0, 100 rows and keys (ragged against any 64- or 128-row tile).
        yield return new("attention fwd (cuDNN SDPA)", (r, t) => [Normal(r, t, 2, 4, 100, 64), Normal(r, t, 2, 2, 100, 64), Normal(r, t, 2, 2, 100, 64)],
            x => OnCudnn(x, () =>
            {
                using var scope = TensorScope.Begin();
                var o = Tensor.ScaledDotProductAttention(x[0], x[1], x[2], out var lse, causal: true);
                return scope.Keep(Tensor.Concat(0, o.Contiguous().Reshape((int)o.Count), lse.To(x[0].DType).Reshape((int)lse.Count)));
            }), Only: bf16);
        // A chunk of 64 queries after 128 cached keys: cuDNN's bottom-right causal mask.
        yield return new("attention fwd (cuDNN SDPA, offset)", (r, t) => [Normal(r, t, 1, 4, 64, 128), Normal(r, t, 1, 4, 192, 128), Normal(r, t, 1, 4, 192, 128)],
            x => OnCudnn(x, () => Tensor.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, queryOffset: 128)), Only: bf16);
        // Forward and backward, head dim 128, grouped heads: o, dq, dk and dv in one vector.
        yield return new("attention fwd+bwd (cuDNN SDPA)",
            (r, t) => [Normal(r, t, 1, 4, 128, 128), Normal(r, t, 1, 2, 128, 128), Normal(r, t, 1, 2, 128, 128), Normal(r, t, 1, 4, 128, 128)],
            x => OnCudnn(x, () =>
            {
                using var scope = TensorScope.Begin();
                var o = Tensor.ScaledDotProductAttention(x[0], x[1], x[2], out var lse, causal: true);
                double scale = 1 / Math.Sqrt(x[0].Shape[3]);
                var (dq, dk, dv) = Tensor.ScaledDotProductAttentionBackward(x[0], x[1], x[2], o, lse, x[3], null, true, 0, scale);
                return scope.Keep(Tensor.Concat(0, o.Reshape((int)o.Count), dq!.Reshape((int)dq.Count), dk!.Reshape((int)dk.Count), dv!.Reshape((int)dv.Count)));
            }), Only: bf16);
    }

    /// <summary>Runs <paramref name="op"/> with the cuDNN path forced when the inputs are on a GPU (as they are for the device run).</summary>
    private static Tensor OnCudnn(Tensor[] x, Func<Tensor> op)
    {
        if (x[0].Device.Kind != DeviceKind.Cuda || Backends.For(x[0].Device) is not CudaBackend cuda) return op();
        bool was = cuda.CudnnAttentionRequired;
        cuda.CudnnAttentionRequired = true;
        try { return op(); }
        finally { cuda.CudnnAttentionRequired = was; }
    }
}
