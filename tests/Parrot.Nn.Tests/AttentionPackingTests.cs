using Parrot.Autograd;
using Parrot.Nn.Layers;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// Attention with its q/k/v weights and biases packed as row views of one buffer (one product instead of three): the
/// same numbers forward and backward as the three Linear layers it replaces, gradients that match finite differences,
/// and a layout that survives moving, casting, saving and loading without changing names, bytes or memory.
/// </summary>
public class AttentionPackingTests
{
    private const int Hidden = 24, Heads = 4, KvHeads = 2;

    private static readonly Qwen2Config Tiny = new()
    {
        VocabSize = 50, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        RopeTheta = 10000, RmsNormEps = 1e-6,
    };

    private static Linear[] Projections(Attention a) => [a.QProj, a.KProj, a.VProj];

    /// <summary>Gives every q/k/v parameter a tensor of its own (the state before packing), keeping the values.</summary>
    private static void Unpack(Attention a)
    {
        foreach (var l in Projections(a))
            foreach (var p in new[] { l.Weight, l.Bias })
            {
                if (p is null) continue;
                var old = p.Value;
                p.ReplaceValue(TensorScope.Detach(old.Clone()));
                old.Dispose();
            }
        Assert.That(a.IsPacked, Is.False);
    }

    [TestCase(true)]
    [TestCase(false)]
    public void ANewLayerIsPackedWithTheValuesAndNamesOfThreeLinears(bool bias)
    {
        using var a = new Attention(Hidden, Heads, KvHeads, qkvBias: bias, outBias: false, seed: 3);
        Assert.That(a.IsPacked, Is.True);
        string[] names = bias
            ? ["q_proj.weight", "q_proj.bias", "k_proj.weight", "k_proj.bias", "v_proj.weight", "v_proj.bias", "o_proj.weight"]
            : ["q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"];
        Assert.That(a.NamedParameters().Select(p => p.Name), Is.EqualTo(names));
        foreach (var (name, l) in new[] { ("q_proj", a.QProj), ("k_proj", a.KProj), ("v_proj", a.VProj) })
        {
            using var fresh = new Linear(Hidden, l.OutFeatures, bias, Init.SeedFor(3, name));
            Assert.That(l.Weight.Value.ToFloatArray(), Is.EqualTo(fresh.Weight.Value.ToFloatArray()), name);
            if (bias) Assert.That(l.Bias!.Value.ToFloatArray(), Is.EqualTo(fresh.Bias!.Value.ToFloatArray()), name);
        }
        // One buffer of exactly the three weights: no second copy.
        var ws = Projections(a).Select(l => l.Weight.Value).ToArray();
        Assert.That(ws.Select(w => w.Storage).Distinct().Count(), Is.EqualTo(1));
        Assert.That(ws[0].Storage.Bytes, Is.EqualTo(ws.Sum(w => w.Count * 4)));
        Assert.That(a.ParameterCount(), Is.EqualTo(3L * Hidden * Hidden / Heads * (Heads + 2 * KvHeads) / 3 + Hidden * Hidden + (bias ? Hidden / Heads * (Heads + 2 * KvHeads) : 0)));
    }

    /// <summary>Forward and backward of a packed layer and an unpacked one with the same weights.</summary>
    private static (double[] Out, double[][] Grads) Train(Attention a, Tensor x0, Tensor seed, bool rope, bool causal)
    {
        using var scope = TensorScope.Begin();
        a.ZeroGrad();
        var x = new Variable(x0, requiresGrad: true);
        (Tensor, Tensor)? tables = rope ? Tensor.RopeTables(0, x0.Shape[1], Hidden / Heads, 10000) : null;
        var y = a.Forward(x, causal, tables);
        (y * seed).Sum().Backward();
        var grads = new List<double[]> { x.Grad!.ToDoubleArray() };
        grads.AddRange(a.Parameters().Select(p => p.Grad!.ToDoubleArray()));
        return (y.Value.ToDoubleArray(), grads.ToArray());
    }

    [TestCase(DType.F32, true, true)]
    [TestCase(DType.F32, false, false)]
    [TestCase(DType.BF16, true, true)]
    public void PackedEqualsUnpackedForwardAndBackward(DType dtype, bool rope, bool causal)
    {
        using var packed = new Attention(Hidden, Heads, KvHeads, qkvBias: true, outBias: true, seed: 5, dtype: dtype);
        using var apart = new Attention(Hidden, Heads, KvHeads, qkvBias: true, outBias: true, seed: 5, dtype: dtype);
        Unpack(apart);
        using var x = TensorScope.Detach(Tensor.Normal([2, 7, Hidden], 1, 0, 1, dtype));
        using var seed = TensorScope.Detach(Tensor.Normal([2, 7, Hidden], 2, 0, 1, dtype));
        var a = Train(packed, x, seed, rope, causal);
        var b = Train(apart, x, seed, rope, causal);
        Assert.That(packed.IsPacked, Is.True, "still packed after a step");
        // float32: the same sums in another blocking at most; bf16: a rounding of the same float32 numbers.
        double tol = dtype == DType.F32 ? 1e-6 : 2e-2;
        Assert.That(a.Out, Is.EqualTo(b.Out).Within(tol), "output");
        for (int i = 0; i < a.Grads.Length; i++)
        {
            double scale = Math.Max(1, b.Grads[i].Max(Math.Abs));
            Assert.That(a.Grads[i], Is.EqualTo(b.Grads[i]).Within(tol * scale), i == 0 ? "x" : packed.NamedParameters().ElementAt(i - 1).Name);
        }
    }

    [Test]
    public void InferenceWithAndWithoutACacheEqualsTheUnpackedLayer()
    {
        using var packed = new Attention(Hidden, Heads, KvHeads, qkvBias: true, outBias: false, seed: 7);
        using var apart = new Attention(Hidden, Heads, KvHeads, qkvBias: true, outBias: false, seed: 7);
        Unpack(apart);
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([1, 6, Hidden], 3, 0, 1, DType.F32);
        var tables = Tensor.RopeTables(0, 6, Hidden / Heads, 10000);
        Assert.That(packed.Forward(x, true, tables).Value.ToFloatArray(), Is.EqualTo(apart.Forward(x, true, tables).Value.ToFloatArray()));
        // Prefill of 5 then one decode step through the cache's fused rope + append (the q/k/v views go in as they are).
        using var c1 = new KvCache(1, 8);
        using var c2 = new KvCache(1, 8);
        var head = x.Narrow(1, 0, 5);
        var t5 = Tensor.RopeTables(0, 5, Hidden / Heads, 10000);
        Assert.That(packed.Forward(head, true, t5, cache: c1).Value.ToFloatArray(), Is.EqualTo(apart.Forward(head, true, t5, cache: c2).Value.ToFloatArray()));
        var last = x.Narrow(1, 5, 1);
        var t1 = Tensor.RopeTables(5, 1, Hidden / Heads, 10000);
        var p = packed.Forward(last, true, t1, cache: c1).Value.ToFloatArray();
        Assert.That(p, Is.EqualTo(apart.Forward(last, true, t1, cache: c2).Value.ToFloatArray()));
    }

    [Test]
    public void GradientsOfThePackedWeightsAndBiasesMatchFiniteDifferences()
    {
        // float64, a tiny layer: every q/k/v weight and bias element perturbed in place (a view of the packed buffer).
        using var a = new Attention(8, 2, 1, qkvBias: true, outBias: false, seed: 9, dtype: DType.F64);
        Assert.That(a.IsPacked, Is.True);
        using var scope = TensorScope.Begin();
        var x = Tensor.Normal([2, 3, 8], 4, 0, 1, DType.F64);
        var w = Tensor.Normal([2, 3, 8], 5, 0, 1, DType.F64);
        var tables = Tensor.RopeTables(0, 3, 4, 10000);
        double Objective()
        {
            using var s = TensorScope.Begin();
            using var ng = Graph.NoGrad();
            using var y = a.Forward(new Variable(x), true, tables).Value * w;
            return y.Sum().Item();
        }
        (a.Forward(new Variable(x), true, tables) * w).Sum().Backward();
        int checkedElements = 0;
        foreach (var l in Projections(a))
            foreach (var p in new[] { l.Weight, l.Bias! })
            {
                var analytic = p.Grad!.ToDoubleArray();
                for (int e = 0; e < p.Value.Count; e++)
                {
                    unsafe
                    {
                        double* v = (double*)p.Value.DataPointer + e; // contiguous row views
                        double orig = *v;
                        const double eps = 1e-6;
                        *v = orig + eps; double lp = Objective();
                        *v = orig - eps; double lm = Objective();
                        *v = orig;
                        double numeric = (lp - lm) / (2 * eps);
                        Assert.That(analytic[e], Is.EqualTo(numeric).Within(1e-7 + 1e-5 * Math.Abs(numeric)), $"{p.Name} element {e}");
                    }
                    checkedElements++;
                }
            }
        Assert.That(checkedElements, Is.EqualTo(8 * 8 + 8 + 2 * (4 * 8 + 4)));
    }

    [Test]
    public void SavingAPackedModelWritesTheNamesAndBytesOfAnUnpackedOneAndLoadingPacksAgain()
    {
        var dir = Path.Combine(Path.GetTempPath(), "parrot-qkv-" + Guid.NewGuid().ToString("N"));
        try
        {
            using var packed = new Qwen2ForCausalLM(Tiny, seed: 13);
            using var apart = new Qwen2ForCausalLM(Tiny, seed: 13);
            foreach (var l in apart.Model.Layers) Unpack(l.SelfAttn);
            Qwen2Loader.Save(packed, Path.Combine(dir, "packed"));
            Qwen2Loader.Save(apart, Path.Combine(dir, "apart"));
            var bytes = File.ReadAllBytes(Path.Combine(dir, "packed", "model.safetensors"));
            Assert.That(bytes, Is.EqualTo(File.ReadAllBytes(Path.Combine(dir, "apart", "model.safetensors"))));
            using (var f = Tensors.Formats.Safetensors.Open(Path.Combine(dir, "packed", "model.safetensors")))
                Assert.That(f.Names, Does.Contain("model.layers.1.self_attn.k_proj.bias").And.Contain("model.layers.0.self_attn.q_proj.weight"));

            using var loaded = Qwen2Loader.Load(Path.Combine(dir, "packed"));
            Assert.That(loaded.Model.Layers.All(l => l.SelfAttn.IsPacked), Is.True, "loading packs again");
            var want = packed.StateDict();
            foreach (var (name, t) in loaded.StateDict()) Assert.That(t.ToFloatArray(), Is.EqualTo(want[name].ToFloatArray()), name);
            // LoadStateDict copies into the live tensors: the layout stays.
            apart.LoadStateDict(packed.StateDict());
            Assert.That(apart.Model.Layers.All(l => !l.SelfAttn.IsPacked), Is.True, "copying in does not change the layout");
            loaded.LoadStateDict(apart.StateDict());
            Assert.That(loaded.Model.Layers.All(l => l.SelfAttn.IsPacked), Is.True);
        }
        finally
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void MovingAndCastingKeepThePackingTheParametersAndTheMemory()
    {
        var dev = TestDevice.Get();
        using var cpu = new Qwen2ForCausalLM(Tiny, seed: 17);
        using var model = new Qwen2ForCausalLM(Tiny, seed: 17);
        long count = model.ParameterCount();
        long allocated = TestDevice.Backend.AllocatedBytes;
        model.To(dev);
        // Packed weights move as one tensor: the device allocates each parameter once (no per-tensor copies to pack again).
        Assert.That(TestDevice.Backend.AllocatedBytes - allocated,
            Is.EqualTo(model.Parameters().Sum(p => p.Value.Count * p.Value.ElementSize) + model.NamedBuffers().Sum(b => b.Buffer.Count * b.Buffer.ElementSize)));
        Assert.That(model.Model.Layers.All(l => l.SelfAttn.IsPacked && l.SelfAttn.QProj.Weight.Value.Device == dev), Is.True);
        Assert.That(model.ParameterCount(), Is.EqualTo(count));
        // The parameters' storages hold exactly the parameters: the per-tensor copies made by the move were freed.
        static long StorageBytes(Module m) => m.Parameters().Select(p => p.Value.Storage).Distinct().Sum(s => s.Bytes);
        static long ParameterBytes(Module m) => m.Parameters().Sum(p => p.Value.Count * p.Value.ElementSize);
        Assert.That(StorageBytes(model), Is.EqualTo(ParameterBytes(model)));
        using (Graph.NoGrad())
        using (var scope = TensorScope.Begin())
        {
            var ids = Tensor.FromArray(new long[] { 1, 7, 9, 3 }, 1, 4);
            Assert.That(model.Forward(ids).Value.ToFloatArray(), Is.EqualTo(cpu.Forward(ids).Value.ToFloatArray()));
        }
        model.CastParameters(DType.BF16);
        Assert.That(model.Model.Layers.All(l => l.SelfAttn.IsPacked && l.SelfAttn.KProj.Bias!.DType == DType.BF16), Is.True);
        Assert.That(StorageBytes(model), Is.EqualTo(ParameterBytes(model)));
        model.To(Device.Cpu);
        Assert.That(model.Model.Layers.All(l => l.SelfAttn.IsPacked), Is.True);
    }

    [Test]
    public void ADecodeStepOnTheDeviceRunsFewerOpsPerLayer()
    {
        // Packed: one product and one bias add for q, k and v (the first layer, whose input norm adds nothing), or one op
        // with the residual add and the norm before them (Tensor.AddRmsNormLinear, every other layer); apart: three
        // products and three adds after the norm.
        var dev = TestDevice.Get();
        long Step(bool pack)
        {
            using var model = new Qwen2ForCausalLM(Tiny, seed: 19);
            if (!pack) foreach (var l in model.Model.Layers) Unpack(l.SelfAttn);
            model.To(dev);
            if (!pack) foreach (var l in model.Model.Layers) Unpack(l.SelfAttn); // To packs again
            using var ng = Graph.NoGrad();
            using var cache = new KvCache(Tiny.NumHiddenLayers, 16);
            using (var s = TensorScope.Begin()) model.Forward(Tensor.FromArray(new long[] { 3, 4, 5 }, 1, 3), cache: cache);
            var ops = new List<long>();
            for (int i = 0; i < 3; i++)
            {
                using var s = TensorScope.Begin();
                long before = TestDevice.Backend.Ops;
                model.Forward(Tensor.FromArray(new long[] { 6 + i }, 1, 1), cache: cache);
                ops.Add(TestDevice.Backend.Ops - before);
            }
            Assert.That(ops.Distinct().Count(), Is.EqualTo(1), "every step the same ops");
            TestContext.Out.WriteLine($"{(pack ? "packed" : "apart")}: {ops[0]} ops per decode step ({Tiny.NumHiddenLayers} layers)");
            return ops[0];
        }
        long packed = Step(pack: true);
        Assert.That(Step(pack: false) - packed, Is.EqualTo(4 + 6 * (Tiny.NumHiddenLayers - 1)));
        // 36 before the residual fusion, 32 after it (per layer, the residual add h + mlp is made by the next norm), 24
        // now: the norms' products joined them (per layer, the post-attention AddRmsNorm, the gate and up products and
        // SwiGLU are one op; every input norm but the first adds, normalises and projects q/k/v in one op).
        // ResidualStreamTests counts the ops by name.
        Assert.That(packed, Is.EqualTo(24));
    }
}
