using Parrot.Tensors;

namespace Parrot.Tensors.Tests;

/// <summary>
/// RoPE (Hugging Face rotate-half) against a float64 naive implementation, and the cos/sin tables
/// against float64 and against values numpy computed the way Hugging Face's Qwen2RotaryEmbedding does.
/// Tolerances: F32 results equal HF's float32 evaluation order (a·c − b·s, products rounded) bit for
/// bit and are within 1e-6·(1+|y|) of float64; F64 within 1e-14; BF16 within one bf16 rounding
/// (2^-8 relative) of the float64 result; F16 within 2^-10 relative plus 1e-4.
/// </summary>
public class RopeTests
{
    /// <summary>y = x·cos + rotate_half(x)·sin in float64, rotate_half(x) = cat(−x2, x1), over the last axis.</summary>
    private static double[] NaiveRope(double[] x, double[] cos, double[] sin, int dim)
    {
        var y = new double[x.Length];
        int half = dim / 2;
        for (int r = 0; r < x.Length / dim; r++)
        {
            int o = r * dim;
            for (int d = 0; d < dim; d++)
            {
                double rotated = d < half ? -x[o + d + half] : x[o + d - half];
                y[o + d] = x[o + d] * cos[o + d] + rotated * sin[o + d];
            }
        }
        return y;
    }

    /// <summary>Broadcasts a table to x's shape as a flat C-order array.</summary>
    private static double[] Broadcast(Tensor table, int[] shape)
    {
        using var e = table.Expand(shape);
        return e.ToDoubleArray();
    }

    [Test]
    public void ApplyRopeMatchesFloat64ForEveryFloatDtype(
        [Values(DType.F32, DType.F64, DType.BF16, DType.F16)] DType dtype,
        [Values(2, 34, 64, 128, 1000)] int headDim,
        [Values("contiguous", "qwen2-transposed", "stepped")] string layout)
    {
        const int batch = 2, heads = 3, seq = 7;
        using var scope = TensorScope.Begin();
        int[] shape = [batch, heads, seq, headDim];
        Tensor x;
        Tensor source;
        if (layout == "qwen2-transposed")
        {
            // Qwen2: the projection gives [batch, seq, heads·head_dim]; view as heads, then transpose.
            var projected = IndexRef.Random([batch, seq, heads * headDim], dtype, 1);
            x = projected.ViewAs(batch, seq, heads, headDim).Transpose(1, 2);
            source = x.Contiguous();
        }
        else
        {
            source = IndexRef.Random(shape, dtype, 2);
            x = IndexRef.Layout(source, layout);
        }
        var (cos, sin) = Tensor.RopeTables(5, seq, headDim, 1_000_000.0);
        var y = x.ApplyRope(cos, sin);
        Assert.That(y.DType, Is.EqualTo(dtype));
        Assert.That(y.Shape.ToArray(), Is.EqualTo(shape));
        var expected = NaiveRope(source.ToDoubleArray(), Broadcast(cos, shape), Broadcast(sin, shape), headDim);
        var got = y.ToDoubleArray();
        for (int i = 0; i < got.Length; i++)
        {
            double e = expected[i];
            double tol = dtype switch
            {
                DType.F64 => 1e-14 * (1 + Math.Abs(e)),
                DType.F32 => 1e-6 * (1 + Math.Abs(e)),
                DType.BF16 => Math.Abs(e) / 256 + 1e-6,
                _ => Math.Abs(e) / 1024 + 1e-4,
            };
            Assert.That(got[i], Is.EqualTo(e).Within(tol), $"element {i}");
        }
    }

    [Test]
    public void Float32EqualsHuggingFaceEvaluationOrderBitForBit()
    {
        using var scope = TensorScope.Begin();
        const int dim = 64, seq = 33;
        var x = Tensor.Normal([2, 5, seq, dim], 3);
        var (cos, sin) = Tensor.RopeTables(100, seq, dim, 1_000_000.0);
        var y = x.ApplyRope(cos, sin).ToArray<float>();
        var xv = x.ToArray<float>();
        var c = cos.ToArray<float>();
        var s = sin.ToArray<float>();
        int half = dim / 2;
        for (int r = 0; r < xv.Length / dim; r++)
        {
            int t = (r % seq) * dim;
            for (int d = 0; d < dim; d++)
            {
                // HF: q * cos + rotate_half(q) * sin, each operation rounded to float32.
                float rotated = d < half ? -xv[r * dim + d + half] : xv[r * dim + d - half];
                float product1 = xv[r * dim + d] * c[t + d];
                float product2 = rotated * s[t + d];
                float expected = product1 + product2;
                Assert.That(BitConverter.SingleToInt32Bits(y[r * dim + d]), Is.EqualTo(BitConverter.SingleToInt32Bits(expected)), $"row {r} d {d}");
            }
        }
    }

    [Test]
    public void PerSequencePositionsBroadcastOverHeads()
    {
        using var scope = TensorScope.Begin();
        const int batch = 3, heads = 4, seq = 5, dim = 16;
        // Left-padded batch: each sequence starts at its own position.
        var positions = Tensor.FromArray(new long[] { 0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 0, 0, 0, 1, 2 }, batch, seq);
        var (cos, sin) = Tensor.RopeTables(positions, dim, 10_000.0);
        Assert.That(cos.Shape.ToArray(), Is.EqualTo(new[] { batch, seq, dim }));
        var c4 = cos.Unsqueeze(1);
        var s4 = sin.Unsqueeze(1);
        var x = Tensor.Normal([batch, heads, seq, dim], 4, dtype: DType.F64);
        var y = x.ApplyRope(c4, s4);
        int[] shape = [batch, heads, seq, dim];
        var expected = NaiveRope(x.ToDoubleArray(), Broadcast(c4, shape), Broadcast(s4, shape), dim);
        Assert.That(y.ToDoubleArray(), Is.EqualTo(expected).Within(1e-14));
    }

    [Test]
    public void LargeInputUsesBothCoresAndMatches()
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([2, 14, 256, 64], 5, dtype: DType.BF16);
        var (cos, sin) = Tensor.RopeTables(0, 256, 64, 1_000_000.0);
        var y = x.ApplyRope(cos, sin);
        int[] shape = [2, 14, 256, 64];
        var expected = NaiveRope(x.ToDoubleArray(), Broadcast(cos, shape), Broadcast(sin, shape), 64);
        var got = y.ToDoubleArray();
        for (int i = 0; i < got.Length; i++)
            Assert.That(got[i], Is.EqualTo(expected[i]).Within(Math.Abs(expected[i]) / 256 + 1e-6));
    }

    [Test]
    public void BackwardIsRopeWithNegatedSin()
    {
        // <ApplyRope(x), g> = <x, ApplyRope(g, cos, -sin)>: the documented gradient rule.
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([2, 3, 9, 32], 6, dtype: DType.F64);
        var g = Tensor.Normal([2, 3, 9, 32], 7, dtype: DType.F64);
        var (cos, sin) = Tensor.RopeTables(3, 9, 32, 10_000.0);
        var negSin = sin.Neg();
        var forward = x.ApplyRope(cos, sin).ToDoubleArray();
        var backward = g.ApplyRope(cos, negSin).ToDoubleArray();
        var gv = g.ToDoubleArray();
        var xv = x.ToDoubleArray();
        double lhs = 0, rhs = 0;
        for (int i = 0; i < xv.Length; i++) { lhs += forward[i] * gv[i]; rhs += xv[i] * backward[i]; }
        Assert.That(lhs, Is.EqualTo(rhs).Within(1e-10 * (1 + Math.Abs(lhs))));
    }

    /// <summary>ApplyRopeInto a strided output (the head split of a packed buffer): ApplyRope's bits; misfits throw.</summary>
    [Test]
    public void ApplyRopeIntoAStridedOutputIsApplyRope([Values(DType.F32, DType.BF16)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([2, 3, 5, 8], 6).To(dtype);
        var (cos, sin) = Tensor.RopeTables(0, 5, 8, 10_000.0);
        var packed = Tensor.Full([2, 5, 40], 3, dtype);
        var into = packed.Narrow(2, 8, 24).Reshape(2, 5, 3, 8).Transpose(1, 2);
        x.ApplyRopeInto(cos, sin, into);
        Assert.That(into.ToFloatArray(), Is.EqualTo(x.ApplyRope(cos, sin).ToFloatArray()));
        Assert.That(packed.Narrow(2, 0, 8).ToFloatArray(), Is.All.EqualTo(3f), "nothing outside the view");
        Assert.That(packed.Narrow(2, 32, 8).ToFloatArray(), Is.All.EqualTo(3f));
        Assert.Throws<ArgumentException>(() => x.ApplyRopeInto(cos, sin, Tensor.Empty([2, 3, 5, 4], dtype)));
        Assert.Throws<ArgumentException>(() => x.ApplyRopeInto(cos, sin, Tensor.Empty([2, 3, 5, 8], DType.F64)));
        Assert.Throws<ArgumentException>(() => x.ApplyRopeInto(cos, sin, x));
    }

    [Test]
    public void BackendRopeMayWorkInPlace([Values(DType.F32, DType.BF16)] DType dtype)
    {
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([1, 2, 6, 40], 8, dtype: dtype);
        var (cos, sin) = Tensor.RopeTables(0, 6, 40, 10_000.0);
        var expected = x.ApplyRope(cos, sin).ToDoubleArray();
        var c = cos.Expand(x.Shape.ToArray());
        var s = sin.Expand(x.Shape.ToArray());
        x.Backend.Rope(x, c, s, x);
        Assert.That(x.ToDoubleArray(), Is.EqualTo(expected));
    }

    [Test]
    public void TablesDuplicateHalvesAndMatchFloat64()
    {
        const int dim = 128;
        const double theta = 1_000_000.0;
        using var scope = TensorScope.Begin();
        var positions = Tensor.FromArray(new long[] { 0, 1, 2, 17, 511, 4095, 32767 });
        var (cos, sin) = Tensor.RopeTables(positions, dim, theta);
        Assert.That(cos.DType, Is.EqualTo(DType.F32));
        Assert.That(cos.Shape.ToArray(), Is.EqualTo(new[] { 7, dim }));
        var c = cos.ToArray<float>();
        var s = sin.ToArray<float>();
        var pos = positions.ToLongArray();
        for (int p = 0; p < pos.Length; p++)
        {
            for (int i = 0; i < dim / 2; i++)
            {
                Assert.That(c[p * dim + i], Is.EqualTo(c[p * dim + dim / 2 + i]));
                Assert.That(s[p * dim + i], Is.EqualTo(s[p * dim + dim / 2 + i]));
                // The exact angle, all in float64. HF rounds the angle to float32 (as we do), which moves it
                // by up to ~2 ulps of its size; cos/sin move by at most that much.
                double angle = pos[p] * Math.Pow(theta, -2.0 * i / dim);
                double tol = Math.Abs(angle) * 3 * Math.Pow(2, -24) + 2e-7;
                Assert.That(c[p * dim + i], Is.EqualTo(Math.Cos(angle)).Within(tol), $"cos position {pos[p]} i {i}");
                Assert.That(s[p * dim + i], Is.EqualTo(Math.Sin(angle)).Within(tol), $"sin position {pos[p]} i {i}");
            }
        }
    }

    /// <summary>
    /// (position, i, inv_freq[i], cos, sin) for head_dim 64, θ = 1e6, computed with numpy in float32 as
    /// HF's Qwen2RotaryEmbedding does: inv_freq = 1 / θ^(arange(0, 64, 2).float() / 64); freqs = pos·inv_freq.
    /// </summary>
    private static readonly (int Position, int I, double InvFreq, double Cos, double Sin)[] NumpyHfReference =
    [
        (1, 0, 1.0, 0.5403022766113281, 0.8414710164070129),
        (1, 1, 0.6493816375732422, 0.7964578866958618, 0.6046940088272095),
        (1, 5, 0.11547820270061493, 0.9933397769927979, 0.11522171646356583),
        (1, 17, 0.0006493816617876291, 0.9999997615814209, 0.0006493816035799682),
        (1, 31, 1.5399265294036013e-06, 1.0, 1.5399265294036013e-06),
        (7, 1, 0.6493816375732422, -0.16594627499580383, -0.9861347675323486),
        (7, 5, 0.11547820270061493, 0.6906944513320923, 0.7231467366218567),
        (100, 0, 1.0, 0.8623188734054565, -0.5063656568527222),
        (100, 1, 0.6493816375732422, -0.5102834701538086, 0.8600062727928162),
        (100, 5, 0.11547820270061493, 0.5246005058288574, -0.8513485193252563),
        (4095, 1, 0.6493816375732422, 0.13994693756103516, 0.9901589751243591),
        (4095, 5, 0.11547820270061493, -0.07347910106182098, 0.9972967505455017),
        (4095, 17, 0.0006493816617876291, -0.8858957886695862, 0.4638843238353729),
        (32767, 0, 1.0, 0.9822633266448975, 0.1875065565109253),
        (32767, 1, 0.6493816375732422, -0.9604952931404114, -0.27829617261886597),
        (32767, 5, 0.11547820270061493, 0.17320571839809418, 0.9848856925964355),
        (32767, 17, 0.0006493816617876291, -0.7564952969551086, 0.6539990901947021),
        (32767, 31, 1.5399265294036013e-06, 0.9987272024154663, 0.05043736472725868),
    ];

    [Test]
    public void TablesMatchHuggingFaceFloat32Pipeline()
    {
        var inv = Tensor.RopeInverseFrequencies(64, 1_000_000.0);
        using var scope = TensorScope.Begin();
        var positions = Tensor.FromArray(NumpyHfReference.Select(r => (long)r.Position).Distinct().ToArray());
        var (cos, sin) = Tensor.RopeTables(positions, 64, 1_000_000.0);
        var c = cos.ToArray<float>();
        var s = sin.ToArray<float>();
        var order = positions.ToLongArray().ToList();
        foreach (var r in NumpyHfReference)
        {
            Assert.That(inv[r.I], Is.EqualTo((float)r.InvFreq), $"inv_freq[{r.I}]");
            int row = order.IndexOf(r.Position) * 64;
            // Both sides evaluate cos/sin of the same float32 angle; numpy's float32 cos is within an ulp or so.
            Assert.That(c[row + r.I], Is.EqualTo(r.Cos).Within(2.5e-7), $"cos position {r.Position} i {r.I}");
            Assert.That(s[row + r.I], Is.EqualTo(r.Sin).Within(2.5e-7), $"sin position {r.Position} i {r.I}");
        }
    }

    [Test]
    public void RopeRejectsBadInput()
    {
        using var scope = TensorScope.Begin();
        var (cos, sin) = Tensor.RopeTables(0, 4, 8, 10_000.0);
        var x = Tensor.Zeros([1, 2, 4, 8]);
        Assert.That(() => Tensor.Zeros([1, 2, 4, 7]).ApplyRope(cos, sin), Throws.ArgumentException.With.Message.Contains("ApplyRope").And.Message.Contains("even"));
        Assert.That(() => Tensor.Zeros([1, 2, 4, 8], DType.I32).ApplyRope(cos, sin), Throws.ArgumentException.With.Message.Contains("ApplyRope").And.Message.Contains("int32"));
        Assert.That(() => x.ApplyRope(cos.Narrow(0, 0, 3), sin), Throws.ArgumentException.With.Message.Contains("ApplyRope").And.Message.Contains("[3, 8]"));
        Assert.That(() => x.ApplyRope(cos.Narrow(1, 0, 4), sin), Throws.ArgumentException.With.Message.Contains("ApplyRope").And.Message.Contains("head_dim"));
        Assert.That(() => Tensor.Zeros([4, 8]).ApplyRope(Tensor.Zeros([2, 4, 8]), sin), Throws.ArgumentException.With.Message.Contains("ApplyRope"));
        Assert.That(() => x.ApplyRope(Tensor.Zeros([4, 8], DType.I64), sin), Throws.ArgumentException.With.Message.Contains("ApplyRope"));
        Assert.That(() => Tensor.RopeTables(0, 4, 7, 10_000.0), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("RopeTables"));
        Assert.That(() => Tensor.RopeTables(0, 4, 8, 0.5), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("RopeTables"));
        Assert.That(() => Tensor.RopeTables(Tensor.Zeros([3]), 8, 10_000.0), Throws.ArgumentException.With.Message.Contains("RopeTables"));
        var dead = Tensor.Zeros([1, 2, 4, 8]);
        dead.Dispose();
        Assert.That(() => dead.ApplyRope(cos, sin), Throws.InstanceOf<ObjectDisposedException>().With.Message.Contains("ApplyRope"));
    }
}
