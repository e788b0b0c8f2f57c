using System.Text.Json;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Cli.Tests;

/// <summary>
/// The model commands and benches with `--device` naming a device that is not the CPU, in process, on the test device
/// (the CPU kernels behind a check that every operand lives on that device, registered as cuda:9): what they write
/// equals the CPU run, so every tensor they make follows the model (one left on the host would throw).
/// </summary>
[NonParallelizable]
public class DeviceCommandsTests
{
    private static string Dev => TestDevice.Get().ToString();
    private static string Model => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "qwen2", "f32-gqa-untied");

    private static int Invoke(System.CommandLine.Command cmd, params string[] args)
    {
        var err = new StringWriter();
        var old = Console.Error;
        Console.SetError(err);
        try
        {
            int code = cmd.Parse(args).Invoke();
            Assert.That(code, Is.Zero, err.ToString());
            return code;
        }
        finally { Console.SetError(old); }
    }

    [Test]
    public void TheTestDeviceIsAcceptedByTheOption()
    {
        Assert.That(DeviceOption.Resolve(Dev, "forward"), Is.EqualTo(TestDevice.Get()));
        Assert.That(DeviceOption.Resolve("cpu", "forward"), Is.EqualTo(Device.Cpu));
    }

    [Test]
    public void TheSelftestsBadIndexCaseRunsTheDeferredChecksOnTheDevice()
    {
        // The test device checks indices on the device as CUDA does (the error at the next read): the selftest case
        // that GPU runs use to prove it passes here, in both dtypes.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "bad id and target", TextWriter.Null);
        Assert.That(rows, Has.Count.EqualTo(2));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsGradClipCasePassesOnTheDevice()
    {
        // The case a GPU run uses to check the multi-tensor gradient clipping (against the per-tensor path there, the
        // CPU and float64), here on the per-tensor path of another device: it runs in both dtypes with device inputs.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "grad norm + clip", TextWriter.Null);
        Assert.That(rows, Has.Count.EqualTo(2));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsRopeKvAppendCasesPassOnTheDevice()
    {
        // The cases a GPU run uses to check the fused rope + KV append kernel, here on the composite path of another
        // device: they run, in both dtypes, and the fused-equals-apart case is exact. The packed q/k/v cases feed it the
        // column views of one projection.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "rope + kv append", TextWriter.Null);
        Assert.That(rows, Has.Count.EqualTo(10));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsTopKRowsPassOnTheDevice()
    {
        // The rows a GPU run uses to prove native/topk.cu bit for bit against the CPU: here their device branch (the
        // copy to the host, the CPU's top-k, the comparison of indices and value bits) runs on the test device, in every
        // dtype a row names.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "topk on the device", TextWriter.Null);
        Assert.That(rows, Has.Count.EqualTo(11));
        Assert.That(rows.Select(r => r.DType).Distinct(), Is.EquivalentTo(new[] { "float32", "bfloat16", "float16", "float64" }));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsTopPRowPassesOnTheDevice()
    {
        // The row a GPU run uses to prove top-p sampling from candidates and the device's row sum: on the test device the
        // generator takes that path and the sum is computed there.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "row sum = full row", TextWriter.Null);
        Assert.That(rows.Select(r => r.Op).Distinct(), Is.EquivalentTo(new[] { "top-p sampling from device candidates + row sum = full row" }));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsTemperatureChunksRowPassesOnTheDevice()
    {
        // The row a GPU run uses to prove plain temperature sampling from the device's chunk sums and one chunk: on the
        // test device the generator takes that path and the sums are computed there.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "device chunk sums = full row", TextWriter.Null);
        Assert.That(rows.Select(r => r.Op).Distinct(), Is.EquivalentTo(new[] { "temperature sampling from device chunk sums = full row" }));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsEscalationRowPassesOnTheDevice()
    {
        // The row a GPU run uses to prove the escalated candidates (a second TopK after the step) and top-k past 1024: on
        // the test device the generator and the batch read take that path.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "escalated candidates = full row", TextWriter.Null);
        Assert.That(rows.Select(r => r.Op).Distinct(), Is.EquivalentTo(new[] { "top-p sampling, escalated candidates = full row" }));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsCandidateSamplingRowsPassOnTheDevice()
    {
        // The rows a GPU run uses to prove sampling (and penalised greedy decoding) from the device's candidates: here on
        // the test device, whose reads are copies, so the generator takes the candidates path and the seen ids are gathered
        // there.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "from device candidates = full row", TextWriter.Null);
        Assert.That(rows.Select(r => r.Op).Distinct(), Is.EquivalentTo(new[]
        {
            "top-k sampling from device candidates = full row", "sampling with repetition penalty from device candidates = full row",
        }));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsCudnnAttentionRowsRunInBf16Only()
    {
        // The rows a GPU run uses to prove cuDNN's SDPA (forced there; MISSING with cuDNN's reason where it cannot run):
        // on another device they take that device's attention, so here they check the rows themselves — inputs, the
        // bf16 and float64 references, the tolerance — and that they run in bfloat16 only.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "(cuDNN SDPA", TextWriter.Null);
        Assert.That(rows.Select(r => (r.Op, r.DType)), Is.EqualTo(new[]
        {
            ("attention fwd (cuDNN SDPA)", "bfloat16"), ("attention fwd (cuDNN SDPA, offset)", "bfloat16"), ("attention fwd+bwd (cuDNN SDPA)", "bfloat16"),
            ("attention fwd+bwd (cuDNN SDPA, deterministic): two runs = same bits, vs float64", "bfloat16"),
        }));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsStaticDecodeCasesPassOnTheDevice()
    {
        // The cases a GPU run uses to check the graph-ready decode step (device positions, ids buffer, argmax on the
        // device) against the eager decode, here on another device: both dtypes, the equality case exact.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "static decode step", TextWriter.Null);
        Assert.That(rows, Has.Count.EqualTo(14), "seven cases (with the programmatic-launch pair and the fusions + programmatic row), two dtypes");
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsDecodeAttentionCasesPassOnTheDevice()
    {
        // The rows a GPU run uses to check the decode attention kernel (key ranges merged in the launch, one range,
        // device positions = the eager call per row bit for bit), here on another device's attention:
        // they run in both dtypes and pass, the positions row throwing on a mismatch there as on a GPU.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "attention decode T1 GQA7", TextWriter.Null)
            .Concat(SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "attention at positions = eager", TextWriter.Null)).ToList();
        Assert.That(rows.Select(r => r.Op).Distinct(), Is.EquivalentTo(new[]
        {
            "attention decode T1 GQA7 D128 S160", "attention decode T1 GQA7 D128 S160 min keys 32",
            "attention at positions = eager (key ranges)",
        }));
        Assert.That(rows, Has.Count.EqualTo(6));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsGenerateStaticStepCasesPassOnTheDevice()
    {
        // The rows a GPU run uses to check the generator's session over the static step (graph-replayed there) against
        // the eager session: both dtypes, exact (same logits bits, same greedy and sampled tokens).
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "static step = eager", TextWriter.Null);
        Assert.That(rows.Select(r => (r.Op, r.DType)), Is.EquivalentTo(new[]
        {
            ("generate session, static step = eager session", "float32"), ("generate session, static step = eager session", "bfloat16"),
            ("generate, static step = eager (greedy, sampled)", "float32"), ("generate, static step = eager (greedy, sampled)", "bfloat16"),
        }));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsGreedyOnTheDeviceCasesPassOnTheDevice()
    {
        // The rows a GPU run uses to check the greedy pick on the device (both sessions, the continuous batch — its
        // row is there because the tests run inside the repository, where the demo's tiny assets are —, and the pick
        // over ties and NaN).
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "greedy", TextWriter.Null);
        Assert.That(rows.Select(r => r.Op).Distinct(), Is.EquivalentTo(new[]
        {
            "generate, static step = eager (greedy, sampled)", "generate, greedy on the device = greedy from the logits",
            "greedy pick on the device (ties, NaN, ±∞) = host argmax", "continuous batch, greedy on the device = host picks",
        }));
        Assert.That(rows, Has.Count.EqualTo(8));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void TheSelftestsContinuousBatchSlotsCasePassesOnTheDevice()
    {
        // The row a GPU run uses to check serve's continuous batch over the static step with slots (graph-replayed there)
        // against the eager batch: both dtypes, the same events.
        var rows = SelfTest.SelfTestRunner.Run(TestDevice.Get(), 1, "static slots", TextWriter.Null);
        Assert.That(rows.Select(r => (r.Op, r.DType)), Is.EquivalentTo(new[]
        {
            ("continuous batch, static slots = eager", "float32"), ("continuous batch, static slots = eager", "bfloat16"),
        }));
        Assert.That(rows.Select(r => r.Status), Is.All.EqualTo("PASS"), string.Join("; ", rows.Select(r => r.Message)));
    }

    [Test]
    public void UnderALauncherEachRankResolvesItsOwnGpu()
    {
        // Local rank 1 of 2 with --device cuda:8 is cuda:9 (the test device), so the rank's model goes there; one GPU
        // short is an error naming both counts, before any GPU is opened.
        var device = TestDevice.Get();
        var launch = new global::Parrot.Tensors.Distributed.LaunchInfo("mpirun", 3, 4, 1, 2);
        Assert.That(DistributedCli.ResolveDevice("cuda:8", "train-lm", () => launch, () => 10), Is.EqualTo(device));
        Assert.That(DistributedCli.ResolveDevice("cpu", "train-lm", () => launch, () => throw new InvalidOperationException("no GPU count for the CPU")), Is.EqualTo(Device.Cpu));
        var e = Assert.Throws<CliException>(() => DistributedCli.ResolveDevice("cuda:8", "train-lm", () => launch, () => 9));
        Assert.That(e!.Message, Does.Contain("--device cuda:8 (rank 3 of 4)").And.Contain("2 ranks on this machine need 2 CUDA devices (one each, cuda:8..cuda:9), but it has 9"));
        // Alone (no launcher), the device is the one asked for.
        var alone = new global::Parrot.Tensors.Distributed.LaunchInfo("none", 0, 1, 0);
        Assert.That(DistributedCli.ResolveDevice(Dev, "train-lm", () => alone, () => throw new InvalidOperationException("not needed")), Is.EqualTo(TestDevice.Get()));
    }

    [Test]
    public void ForwardOnTheDeviceWritesTheCpusLogits()
    {
        string dir = CliRunner.TempDir(), a = Path.Combine(dir, "a.npy"), b = Path.Combine(dir, "b.npy");
        Invoke(ForwardCommand.Create(), "--model", Model, "--tokens", "1,5,9,2", "--out", a, "--device", "cpu");
        long ops = TestDevice.Backend.Ops;
        Invoke(ForwardCommand.Create(), "--model", Model, "--tokens", "1,5,9,2", "--out", b, "--device", Dev);
        Assert.That(TestDevice.Backend.Ops, Is.GreaterThan(ops));
        Assert.That(File.ReadAllBytes(b), Is.EqualTo(File.ReadAllBytes(a)));
    }

    [Test]
    public void GenerateOnTheDevicePrintsTheCpusTokens()
    {
        string Run(string device)
        {
            var outp = new StringWriter();
            var old = Console.Out;
            Console.SetOut(outp);
            try { Invoke(GenerateCommand.Create(), "--model", Model, "--tokens=3,4,5", "--max-new-tokens", "6", "--ignore-eos", "--device", device); }
            finally { Console.SetOut(old); }
            return outp.ToString();
        }
        var cpu = Run("cpu");
        Assert.That(cpu.Split(',').Length, Is.EqualTo(6 + 3).Or.EqualTo(6), cpu);
        Assert.That(Run(Dev), Is.EqualTo(cpu));
    }

    [Test]
    public void TrainLmOnTheDeviceLogsTheCpusLosses()
    {
        string dir = CliRunner.TempDir();
        var rng = new Random(4);
        File.WriteAllLines(Path.Combine(dir, "tokens.jsonl"), Enumerable.Range(0, 6).Select(_ => JsonSerializer.Serialize(new { ids = Enumerable.Range(0, 10).Select(_ => rng.Next(40)).ToArray() })));
        File.WriteAllText(Path.Combine(dir, "init.json"), """{"vocab_size": 40, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 10000.0}""");
        string[] Losses(string device)
        {
            var log = Path.Combine(dir, $"log-{device.Replace(':', '_')}.jsonl");
            Invoke(TrainLmCommand.Create(), "--init", Path.Combine(dir, "init.json"), "--tokens", Path.Combine(dir, "tokens.jsonl"), "--steps", "4", "--batch", "2",
                "--lr", "0.003", "--max-grad-norm", "1", "--seed", "3", "--log", log, "--device", device, "--out", Path.Combine(dir, "out-" + device.Replace(':', '_')));
            return File.ReadAllLines(log);
        }
        var cpu = Losses("cpu");
        var dev = Losses(Dev);
        Assert.That(cpu, Has.Length.EqualTo(4));
        Assert.That(dev, Is.EqualTo(cpu));
        Assert.That(File.ReadAllBytes(Path.Combine(dir, "out-" + Dev.Replace(':', '_'), "model.safetensors")),
            Is.EqualTo(File.ReadAllBytes(Path.Combine(dir, "out-cpu", "model.safetensors"))), "the checkpoint written from the device");
    }

    [Test]
    public void PretrainVisionOnTheDeviceLogsTheCpusLossesAndWritesItsTower()
    {
        string dir = CliRunner.TempDir(), world = Path.Combine(dir, "world");
        Invoke(MakeWorldCommand.Create(), "--out", world, "--seed", "3", "--size", "48", "--stage1", "20", "--stage2", "0", "--bench", "0", "--text", "0");
        var config = Path.Combine(dir, "tower.json");
        File.WriteAllText(config, """{"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 48, "patch_size": 16}""");
        (string[] Log, byte[] Weights) Run(string device)
        {
            var o = Path.Combine(dir, "vision-" + device.Replace(':', '_'));
            var old = Console.Out;
            Console.SetOut(TextWriter.Null);
            try
            {
                Invoke(PretrainVisionCommand.Create(), "--world", world, "--out", o, "--config", config, "--steps", "3", "--batch", "4", "--valid", "4",
                    "--eval-every", "2", "--device", device);
            }
            finally { Console.SetOut(old); }
            // Throughput differs between runs; everything else (losses, norms, held-out accuracies) must not.
            var log = File.ReadAllLines(Path.Combine(o, "train_log.jsonl"))
                .Select(l => System.Text.RegularExpressions.Regex.Replace(l, "\"images_per_s\":[^,}]*", "")).ToArray();
            return (log, File.ReadAllBytes(Path.Combine(o, "model.safetensors")));
        }
        var cpu = Run("cpu");
        long ops = TestDevice.Backend.Ops;
        var dev = Run(Dev);
        Assert.That(TestDevice.Backend.Ops - ops, Is.GreaterThan(100), "the device trained the tower");
        Assert.That(cpu.Log, Has.Length.EqualTo(3));
        Assert.That(dev.Log, Is.EqualTo(cpu.Log));
        Assert.That(dev.Weights, Is.EqualTo(cpu.Weights), "the tower written from the device");
    }

    [Test]
    public void TheBenchesRunOnTheDeviceAndComputeWhatTheCpuComputes()
    {
        var cfg = DeviceDecodeBench.Shape("tiny");
        var a = TrainBench.Run(cfg, DType.BF16, Device.Cpu, 2, 16, 3, checkpointing: false, peakTflops: 100);
        var b = TrainBench.Run(cfg, DType.BF16, TestDevice.Get(), 2, 16, 3, checkpointing: false, peakTflops: 100);
        Assert.That((b.FirstLoss, b.LastLoss), Is.EqualTo((a.FirstLoss, a.LastLoss)));
        Assert.That(b.Device, Is.EqualTo(Dev));
        Assert.That(b.Mfu, Is.EqualTo(b.Tflops / 100).Within(1e-12));
        // FLOPs per token by PaLM's formula for the untied tiny shape: 6·(parameters − embedding) + 12·layers·hidden·seq.
        Assert.That(b.FlopsPerToken, Is.EqualTo(6.0 * (b.Parameters - 512L * 128) + 12.0 * 2 * 128 * 16));
        var da = DeviceDecodeBench.Run("tiny", DType.BF16, Device.Cpu, 12, 6, TextWriter.Null);
        var db = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null);
        Assert.That(db.Generated, Is.EqualTo(da.Generated));
        Assert.That(db.WeightBytes, Is.EqualTo((db.Parameters - 512L * 128 + 128) * 2));
        Assert.That(db.RooflineFraction, Is.EqualTo(db.BoundMs / db.MsPerToken).Within(1e-12));
        // --static: the graph-ready step (Qwen2StaticDecoder) generates the same tokens, on either device.
        var sa = DeviceDecodeBench.Run("tiny", DType.BF16, Device.Cpu, 12, 6, TextWriter.Null, useStatic: true);
        var sb = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, useStatic: true);
        Assert.That((sa.Static, da.Static), Is.EqualTo((true, false)));
        Assert.That(sa.Generated, Is.EqualTo(da.Generated));
        Assert.That(sb.Generated, Is.EqualTo(da.Generated));
        Assert.That(DeviceDecodeBench.Json(sa), Does.Contain("\"host_issue_ms\":").And.Contain("\"ms_per_token\":").And.Contain("\"static\":true"));
        // --cuda-graph: the static step, replayed from a graph on a GPU; on these devices (no CudaBackend) eager, so no
        // graph is reported and the tokens are the same.
        var ga = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, cudaGraph: true);
        Assert.That((ga.Static, ga.CudaGraph, ga.GraphNodes), Is.EqualTo((true, false, 0)));
        Assert.That(ga.Generated, Is.EqualTo(da.Generated));
        Assert.That(DeviceDecodeBench.Json(ga), Does.Contain("\"cuda_graph\":false").And.Contain("\"graph_nodes\":0"));
        // --generator: the generator's session, eager and static, the same tokens again (its timed steps: 6).
        var gen1 = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, generator: true);
        var gen2 = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, useStatic: true, generator: true);
        Assert.That((gen1.Generator, gen1.Static, gen2.Generator, gen2.Static), Is.EqualTo((true, false, true, true)));
        Assert.That(gen1.Generated, Is.EqualTo(da.Generated));
        Assert.That(gen2.Generated, Is.EqualTo(da.Generated));
        Assert.That(DeviceDecodeBench.Json(gen2), Does.Contain("\"generator\":true"));
        Assert.That(DeviceDecodeBench.Describe(gen2), Does.Contain("through the generator's session").And.Contain("argmax on the device"));
        // --host-pick: the logits path the greedy pick took before (sampling's), for comparison; the same tokens.
        var host = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, useStatic: true, generator: true, hostPick: true);
        Assert.That(host.Generated, Is.EqualTo(da.Generated));
        Assert.That(DeviceDecodeBench.Json(host), Does.Contain("\"host_pick\":true"));
        Assert.That(DeviceDecodeBench.Json(gen2), Does.Contain("\"host_pick\":false"));
        Assert.That(DeviceDecodeBench.Describe(host), Does.Contain("the pick on the host"));
        Assert.That(() => DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, hostPick: true), Throws.InstanceOf<CliException>());
        // --temperature (and --repetition-penalty): seeded sampling through the sampler's device reads gives the tokens the
        // whole row read to the host gives (--host-pick), greedy or static alike.
        // The tiny shape's 512 ids are one chunk of the default 512, where the chunk sums cost more than the row (so the
        // sampler reads the row whole, and the comparison would prove nothing): chunks of 64 here, and the device→host
        // bytes show that the chunk path ran.
        foreach (double penalty in new[] { 1.0, 1.3 })
        {
            var dev = TestDevice.Backend;
            long before = dev.DeviceToHostBytes;
            var sampled = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, useStatic: true, generator: true, temperature: 0.9, repetitionPenalty: penalty,
                temperatureChunk: 64);
            long sampledBytes = dev.DeviceToHostBytes - before;
            before = dev.DeviceToHostBytes;
            var whole = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, useStatic: true, generator: true, hostPick: true, temperature: 0.9, repetitionPenalty: penalty);
            long wholeBytes = dev.DeviceToHostBytes - before;
            Assert.That(sampled.Generated, Is.EqualTo(whole.Generated), $"penalty {penalty}");
            Assert.That(sampledBytes, Is.LessThan(wholeBytes / 2), $"penalty {penalty}: the chunk sums and one chunk were read, not the rows ({sampledBytes} bytes against the rows' {wholeBytes})");
            Assert.That(sampled.Generated, Is.Not.EqualTo(da.Generated), "sampling at 0.9 took another path than greedy");
            Assert.That(DeviceDecodeBench.Json(sampled), Does.Contain("\"temperature\":0.9").And.Contain($"\"repetition_penalty\":{penalty.ToString(System.Globalization.CultureInfo.InvariantCulture)}"));
            Assert.That(DeviceDecodeBench.Describe(sampled), Does.Contain("sampled at temperature 0.9").And.Contain("the sampler's reads"));
        }
        // Greedy with a penalty (temperature 0) is the sampler's pick from the top and seen logits, not the device's argmax.
        var penalisedGreedy = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, useStatic: true, generator: true, repetitionPenalty: 1.3);
        Assert.That(DeviceDecodeBench.Describe(penalisedGreedy), Does.Contain(", greedy with repetition penalty 1.3").And.Contain("the sampler's reads and its pick")
            .And.Not.Contain("argmax on the device").And.Not.Contain("sampled at temperature"));
        Assert.That(() => DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, temperature: 0.9), Throws.InstanceOf<CliException>());
        Assert.That(() => DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, generator: true, temperature: double.NaN), Throws.InstanceOf<CliException>());
    }

    [Test]
    public void TheContinuousBatchBenchTimesEagerAndSlotsWithTheSameTokens()
    {
        // --continuous 3: serve's batch step for three greedy sequences (prompts of 12, 11 and 10 ids), eager and with
        // slots; row 0 (the whole prompt) generates what the one-sequence decode does.
        var alone = DeviceDecodeBench.Run("tiny", DType.BF16, Device.Cpu, 12, 6, TextWriter.Null);
        var eager = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, continuous: 3);
        var slots = DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, cudaGraph: true, continuous: 3);
        Assert.That((eager.Continuous, eager.Static, slots.Continuous, slots.Static, slots.CudaGraph), Is.EqualTo((3, false, 3, true, false)), "no CudaBackend here: no graph");
        Assert.That(eager.Generated, Is.EqualTo(alone.Generated));
        Assert.That(slots.Generated, Is.EqualTo(alone.Generated));
        Assert.That(DeviceDecodeBench.Json(slots), Does.Contain("\"continuous\":3"));
        Assert.That(DeviceDecodeBench.Describe(slots), Does.Contain("continuous batch's step with slots, 3 greedy sequences"));
        Assert.That(() => DeviceDecodeBench.Run("tiny", DType.BF16, TestDevice.Get(), 12, 6, TextWriter.Null, generator: true, continuous: 3), Throws.InstanceOf<CliException>());
    }
}
