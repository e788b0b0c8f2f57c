using Parrot.Autograd;
using Parrot.Tensors;
using static Parrot.Cli.SelfTest.SelfTestCase;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// A tiny Qwen2-style decoder layer (RMSNorm, GQA attention with RoPE, SwiGLU MLP, residuals) run forward and
/// backward through the autograd engine on the chosen device: its output and the gradients of its input and of
/// the query projection, flattened into one result. Checks that whole chains of ops, not only single ops, agree.
/// </summary>
internal static class SelfTestModelCases
{
    private const int B = 2, T = 16, Hidden = 64, Heads = 4, KvHeads = 2, HeadDim = 16, Inter = 128;

    internal static IEnumerable<SelfTestCase> All()
    {
        yield return new("decoder layer fwd+bwd (autograd)", Inputs, Run);
    }

    private static Tensor[] Inputs(Random r, DType t)
    {
        Tensor W(int i, int o) { using var w = Normal(r, DType.F32, i, o); using var s = w * (1.0 / Math.Sqrt(i)); return s.To(t); }
        Tensor Norm() { using var n = Positive(r, DType.F32, 0.5, 1.5, Hidden); return n.To(t); }
        return [Normal(r, t, B, T, Hidden), Norm(), W(Hidden, Hidden), W(Hidden, KvHeads * HeadDim), W(Hidden, KvHeads * HeadDim), W(Hidden, Hidden),
                Norm(), W(Hidden, Inter), W(Hidden, Inter), W(Inter, Hidden)];
    }

    private static Tensor Run(Tensor[] p)
    {
        using var scope = TensorScope.Begin();
        var x = new Variable(p[0], requiresGrad: true);
        var wq = new Variable(p[2], requiresGrad: true);
        Variable V(int i) => new(p[i]);
        var (cos0, sin0) = Tensor.RopeTables(0, T, HeadDim, 10000.0, p[0].Device);
        var cos = cos0.To(p[0].DType);
        var sin = sin0.To(p[0].DType);

        var h = x.RmsNorm(V(1));
        var q = h.MatMul(wq).Reshape(B, T, Heads, HeadDim).Transpose(1, 2).ApplyRope(cos, sin);
        var k = h.MatMul(V(3)).Reshape(B, T, KvHeads, HeadDim).Transpose(1, 2).ApplyRope(cos, sin);
        var v = h.MatMul(V(4)).Reshape(B, T, KvHeads, HeadDim).Transpose(1, 2);
        var a = Variable.ScaledDotProductAttention(q, k, v, causal: true).Transpose(1, 2).Reshape(B, T, Hidden);
        var x2 = x + a.MatMul(V(5));
        var h2 = x2.RmsNorm(V(6));
        var y = x2 + (h2.MatMul(V(7)).Silu() * h2.MatMul(V(8))).MatMul(V(9));
        var loss = (y * y).Mean();
        loss.Backward();
        using var fy = y.Value.Reshape(-1);
        using var fx = x.Grad!.Reshape(-1);
        using var fq = wq.Grad!.Reshape(-1);
        return scope.Keep(Tensor.Concat(0, fy, fx, fq));
    }
}
