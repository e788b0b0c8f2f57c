using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Cli.Tests;

/// <summary>
/// Data-parallel training under <c>mpirun --allow-run-as-root --oversubscribe -np 2</c> (Open MPI) against the
/// single-process run with the same global batch. Skipped (with the reason) where mpirun is not installed.
/// Tolerances: the ranks sum their halves of the batch and MPI adds the halves, so the float32 rounding of each
/// gradient sum differs from the one-process sum by a few ulps; losses and norms agree to 2e-6 relative and the
/// weights after 5 AdamW steps to 2e-5 absolute (|w| ≈ 0.02–1); ZeRO-1 takes the same elementwise updates as plain
/// data parallel (bit for bit), ZeRO-2 differs only in the rounding of the global norm.
/// </summary>
[NonParallelizable]
public class DistributedTrainingTests
{
    private static string? _mpirun;

    private static string Mpirun()
    {
        _mpirun ??= FindOnPath("mpirun") ?? "";
        if (_mpirun.Length == 0) Assert.Ignore("mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev): the 2-rank tests need Open MPI");
        return _mpirun;
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    /// <summary>Runs `mpirun -np N dotnet parrot.dll args` with small gradient buckets (several per step).</summary>
    private static (int ExitCode, string Stdout, string Stderr) MpiRun(int ranks, params string[] args)
    {
        var psi = MpiStart(ranks, args);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(180_000)) { p.Kill(true); Assert.Fail($"mpirun parrot {string.Join(' ', args)} did not finish in 3 minutes"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static ProcessStartInfo MpiStart(int ranks, string[] args)
    {
        var psi = new ProcessStartInfo(Mpirun()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "--allow-run-as-root", "--oversubscribe", "-np", ranks.ToString(CultureInfo.InvariantCulture), "dotnet",
                                  Path.Combine(TestContext.CurrentContext.TestDirectory, "parrot.dll") }.Concat(args))
            psi.ArgumentList.Add(a);
        psi.Environment["PARROT_DIST_BUCKET_MB"] = "0.02"; // ~5k floats: the tiny models span several buckets
        psi.Environment["PARROT_DIST_TIMEOUT"] = "120";
        return psi;
    }

    /// <summary>A fresh tiny Qwen2 config (seeded weights: every rank draws the same) and 24 random 16-token sequences.</summary>
    private static (string Dir, string Config, string Tokens) TinyLm()
    {
        var dir = CliRunner.TempDir();
        var config = Path.Combine(dir, "config.json");
        File.WriteAllText(config, """{"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "max_position_embeddings": 64}""");
        var rng = new Random(7);
        var sb = new StringBuilder();
        for (int i = 0; i < 24; i++) sb.Append("{\"ids\": [").Append(string.Join(", ", Enumerable.Range(0, 16).Select(_ => rng.Next(64)))).Append("]}\n");
        var tokens = Path.Combine(dir, "tokens.jsonl");
        File.WriteAllText(tokens, sb.ToString());
        return (dir, config, tokens);
    }

    private static string[] TrainLmArgs(string config, string tokens, string log, string outDir, params string[] extra) =>
        ["train-lm", "--init", config, "--tokens", tokens, "--steps", "5", "--batch", "4", "--lr", "0.01", "--weight-decay", "0.1",
         "--warmup-steps", "2", "--max-grad-norm", "0.5", "--seed", "3", "--shuffle", "--log", log, "--out", outDir, .. extra];

    private static JsonElement[] Records(string log) => File.ReadAllLines(log).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement).ToArray();

    private static Dictionary<string, float[]> Weights(string dir)
    {
        using var ck = SafetensorsCheckpoint.Open(dir);
        using var scope = TensorScope.Begin();
        return ck.Names.ToDictionary(n => n, n => ck.Load(n, DType.F32).ToFloatArray());
    }

    private static double MaxDifference(Dictionary<string, float[]> a, Dictionary<string, float[]> b)
    {
        Assert.That(a.Keys.Order(), Is.EqualTo(b.Keys.Order()));
        double worst = 0;
        foreach (var (name, x) in a)
        {
            var y = b[name];
            for (int i = 0; i < x.Length; i++) worst = Math.Max(worst, Math.Abs(x[i] - y[i]));
        }
        return worst;
    }

    private static void AssertSameRun(JsonElement[] expected, JsonElement[] actual, double relative, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what + ": one record per step, written by rank 0 alone");
        for (int k = 0; k < expected.Length; k++)
            foreach (var key in new[] { "loss", "grad_norm" })
            {
                double e = expected[k].GetProperty(key).GetDouble(), a = actual[k].GetProperty(key).GetDouble();
                Assert.That(Math.Abs(a - e), Is.LessThanOrEqualTo(relative * Math.Abs(e)), $"{what}: step {k + 1} {key} {a} vs {e}");
            }
    }

    [Test]
    public void EveryCollectiveAgreesWithFloat64OnTwoRanks()
    {
        var (code, stdout, stderr) = MpiRun(2, "dist-check", "--mib", "1", "--iters", "2");
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(stdout, Does.Contain("rank 0/2 (mpi)"));
        foreach (var op in new[] { "AllReduce sum f32", "AllReduce avg f64", "AllReduce max f32", "ReduceScatter sum f32", "AllGather f32", "Broadcast from 1" })
            Assert.That(stdout, Does.Match(op + @"\s+ok"), stdout);
        Assert.That(stdout, Does.Not.Contain("WRONG"));
    }

    [Test]
    public void AHungRankEndsTheJobWithATimeoutErrorInsteadOfHanging()
    {
        var psi = MpiStart(2, ["dist-check", "--mib", "0", "--stall-rank", "1", "--stall-seconds", "100"]);
        psi.Environment["PARROT_DIST_TIMEOUT"] = "3";
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        bool ended = p.WaitForExit(60_000);
        if (!ended) p.Kill(true);
        Assert.That(ended, Is.True, "the job hung although a collective has a 3 s limit");
        TestContext.Out.WriteLine($"job ended after {clock.Elapsed.TotalSeconds:F1} s");
        Assert.That(p.ExitCode, Is.Not.EqualTo(0));
        Assert.That(stderr.Result, Does.Contain("rank 0 of 2").And.Contain("did not complete within 3 s: a peer rank died or hangs"), stderr.Result + stdout.Result);
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(50), "ended by the timeout, long before the stalled rank woke up");
    }

    [Test]
    public void ARankThatDiesEndsTheJob()
    {
        var psi = MpiStart(2, ["dist-check", "--mib", "0", "--stall-rank", "1", "--stall-seconds", "100"]);
        psi.Environment["PARROT_DIST_TIMEOUT"] = "100"; // the death, not the timeout, must end it
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        string? line;
        int pid = 0;
        while ((line = p.StandardError.ReadLine()) is not null)
        {
            var m = System.Text.RegularExpressions.Regex.Match(line, @"^rank 1 \(pid (\d+)\) stalls");
            if (m.Success) { pid = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture); break; }
        }
        Assert.That(pid, Is.GreaterThan(0), "rank 1 never reported its pid");
        using (var rank1 = Process.GetProcessById(pid)) rank1.Kill(); // SIGKILL: no goodbye to MPI
        var stderr = p.StandardError.ReadToEndAsync();
        bool ended = p.WaitForExit(60_000);
        if (!ended) p.Kill(true);
        Assert.That(ended, Is.True, "rank 0 was left waiting for a dead peer");
        TestContext.Out.WriteLine($"job ended {clock.Elapsed.TotalSeconds:F1} s after the start; mpirun said: {stderr.Result.Trim()}");
        Assert.That(p.ExitCode, Is.Not.EqualTo(0));
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(60));
    }

    [Test]
    public void TrainLmOnTwoRanksEqualsOneProcessWithTheGlobalBatch()
    {
        var (dir, config, tokens) = TinyLm();
        var single = CliRunner.Run(null, TrainLmArgs(config, tokens, Path.Combine(dir, "single.jsonl"), Path.Combine(dir, "single")));
        Assert.That(single.ExitCode, Is.EqualTo(0), single.Stderr + single.Stdout);
        var (code, stdout, stderr) = MpiRun(2, TrainLmArgs(config, tokens, Path.Combine(dir, "dp.jsonl"), Path.Combine(dir, "dp")));
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(stdout, Does.Contain("data parallel: 2 ranks (mpi), 2 sequences per rank per step, ZeRO-0"));
        Assert.That(stdout, Does.Contain("memory per rank (ZeRO-0)"));

        var one = Records(Path.Combine(dir, "single.jsonl"));
        var two = Records(Path.Combine(dir, "dp.jsonl"));
        AssertSameRun(one, two, 2e-6, "2 ranks × batch 2 vs 1 process × batch 4");
        Assert.That(one.Select(r => (r.GetProperty("world_size").GetInt32(), r.GetProperty("zero").GetInt32())), Is.All.EqualTo((1, 0)));
        Assert.That(two.Select(r => (r.GetProperty("world_size").GetInt32(), r.GetProperty("zero").GetInt32())), Is.All.EqualTo((2, 0)));
        Assert.That(two.Select(r => r.GetProperty("lr").GetDouble()), Is.EqualTo(one.Select(r => r.GetProperty("lr").GetDouble())));
        double diff = MaxDifference(Weights(Path.Combine(dir, "single")), Weights(Path.Combine(dir, "dp")));
        TestContext.Out.WriteLine($"max |Δw| after 5 steps: {diff:G3}");
        Assert.That(diff, Is.LessThanOrEqualTo(2e-5));
        // The run moved the weights far more than the tolerance: the comparison can fail.
        Assert.That(MaxDifference(Weights(Path.Combine(dir, "single")), InitialWeights(config)), Is.GreaterThan(1e-2));
    }

    /// <summary>The seeded initial weights of the tiny LM (a run at learning rate 0 writes them back unchanged).</summary>
    private static Dictionary<string, float[]> InitialWeights(string config)
    {
        var dir = Path.Combine(Path.GetDirectoryName(config)!, "initial");
        var r = CliRunner.Run(null, "train-lm", "--init", config, "--tokens", Path.Combine(Path.GetDirectoryName(config)!, "tokens.jsonl"),
            "--steps", "1", "--batch", "4", "--lr", "0", "--seed", "3", "--log", dir + ".jsonl", "--out", dir);
        Assert.That(r.ExitCode, Is.EqualTo(0), r.Stderr);
        return Weights(dir);
    }

    [Test]
    public void ZeroOneAndTwoEqualPlainDataParallel()
    {
        var (dir, config, tokens) = TinyLm();
        var runs = new Dictionary<int, (JsonElement[] Log, Dictionary<string, float[]> Weights, string Stdout)>();
        foreach (int zero in new[] { 0, 1, 2 })
        {
            string log = Path.Combine(dir, $"z{zero}.jsonl"), outDir = Path.Combine(dir, $"z{zero}");
            var (code, stdout, stderr) = MpiRun(2, TrainLmArgs(config, tokens, log, outDir, "--zero", zero.ToString(CultureInfo.InvariantCulture)));
            Assert.That(code, Is.EqualTo(0), stderr + stdout);
            runs[zero] = (Records(log), Weights(outDir), stdout);
            Assert.That(runs[zero].Log.Select(r => r.GetProperty("zero").GetInt32()), Is.All.EqualTo(zero));
        }
        AssertSameRun(runs[0].Log, runs[1].Log, 0, "ZeRO-1 vs ZeRO-0");
        Assert.That(MaxDifference(runs[0].Weights, runs[1].Weights), Is.EqualTo(0), "ZeRO-1 takes the same elementwise AdamW updates");
        AssertSameRun(runs[0].Log, runs[2].Log, 2e-6, "ZeRO-2 vs ZeRO-0");
        Assert.That(MaxDifference(runs[0].Weights, runs[2].Weights), Is.LessThanOrEqualTo(2e-5));

        // Memory per rank: ZeRO-1 halves the optimizer state, ZeRO-2 the kept gradients as well.
        var memory = runs.ToDictionary(kv => kv.Key, kv => MemoryLine(kv.Value.Stdout));
        Assert.That(memory[1].Optimizer, Is.EqualTo(memory[0].Optimizer / 2).Within(0.02));
        Assert.That(memory[2].Optimizer, Is.EqualTo(memory[0].Optimizer / 2).Within(0.02));
        Assert.That(memory[1].Grads, Is.EqualTo(memory[0].Grads));
        Assert.That(memory[2].Grads, Is.EqualTo(memory[0].Grads / 2).Within(0.02));
    }

    private static (double Grads, double Optimizer) MemoryLine(string stdout)
    {
        var m = System.Text.RegularExpressions.Regex.Match(stdout, @"memory per rank \(ZeRO-\d\): params [\d.]+ MiB, grads ([\d.]+) MiB, optimizer ([\d.]+) MiB");
        Assert.That(m.Success, Is.True, stdout);
        return (double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    [Test]
    public void ParrotTrainOnTwoRanksKilledAndResumedEqualsAnUninterruptedRun()
    {
        var (root, model, data, images) = TrainCommandTests.Prepare();
        var args = new[] { "--stage", "2", "--batch", "4", "--micro-batch", "1", "--lr", "0.001", "--steps", "8", "--save-every", "2", "--zero", "2" };
        string[] Train(string outDir, params string[] extra) =>
            ["train", "--model", model, "--data", data, "--images", images, "--out", outDir, .. args, .. extra];

        // One process with the global batch of 4 against 2 ranks × 2.
        var single = CliRunner.Run(null, Train(Path.Combine(root, "single")));
        Assert.That(single.ExitCode, Is.EqualTo(0), single.Stderr + single.Stdout);
        var straight = Path.Combine(root, "straight");
        var (code, stdout, stderr) = MpiRun(2, Train(straight));
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        var full = Records(Path.Combine(straight, "train_log.jsonl"));
        AssertSameRun(Records(Path.Combine(root, "single", "train_log.jsonl")), full, 2e-6, "parrot train: 2 ranks vs 1 process");
        Assert.That(full.Select(r => r.GetProperty("world_size").GetInt32()), Is.All.EqualTo(2));
        foreach (var lang in new[] { "loss_en", "loss_zh", "loss_pt" })
            Assert.That(full.Count(r => r.TryGetProperty(lang, out _)), Is.GreaterThan(0), lang);

        // Kill the whole job (mpirun and both ranks) once a checkpoint is written, then resume on 2 ranks.
        var killed = Path.Combine(root, "killed");
        using (var p = Process.Start(MpiStart(2, Train(killed)))!)
        {
            p.OutputDataReceived += (_, _) => { };
            p.ErrorDataReceived += (_, _) => { };
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            var sw = Stopwatch.StartNew();
            while (!Directory.Exists(Path.Combine(killed, "checkpoint-2")) && !p.HasExited && sw.Elapsed.TotalSeconds < 120) Thread.Sleep(5);
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            p.WaitForExit();
        }
        var latest = global::Parrot.Parrot.Training.ParrotCheckpoint.Latest(killed);
        Assert.That(latest, Is.Not.Null);
        int at = int.Parse(Path.GetFileName(latest!)["checkpoint-".Length..], CultureInfo.InvariantCulture);
        TestContext.Out.WriteLine($"killed after checkpoint {at}");
        if (at == 8) Assert.Inconclusive("the run finished before it could be killed");
        (code, stdout, stderr) = MpiRun(2, Train(killed, "--resume"));
        Assert.That(code, Is.EqualTo(0), stderr + stdout);
        Assert.That(stdout, Does.Contain($"resumed from {latest}"));
        var resumed = Records(Path.Combine(killed, "train_log.jsonl"));
        AssertSameRun(full, resumed, 0, $"killed after checkpoint {at} and resumed: bit for bit");
        Assert.That(MaxDifference(Weights(straight), Weights(killed)), Is.EqualTo(0));
    }

    [Test]
    public void ACpuLaunchWithoutMpiIsAClearError()
    {
        var (dir, config, tokens) = TinyLm();
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(TestContext.CurrentContext.TestDirectory, "parrot.dll") }.Concat(TrainLmArgs(config, tokens, Path.Combine(dir, "x.jsonl"), Path.Combine(dir, "x"))))
            psi.ArgumentList.Add(a);
        psi.Environment["RANK"] = "0";
        psi.Environment["WORLD_SIZE"] = "2";
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.That(p.WaitForExit(60_000), Is.True);
        Assert.That(p.ExitCode, Is.EqualTo(2));
        Assert.That(stderr.Result, Does.Contain("mpirun -np 2"));

        var odd = TrainLmArgs(config, tokens, Path.Combine(dir, "y.jsonl"), Path.Combine(dir, "y"));
        odd[Array.IndexOf(odd, "--batch") + 1] = "3";
        var (code, stdout, err) = MpiRun(2, odd);
        Assert.That(code, Is.Not.EqualTo(0), stdout);
        Assert.That(err, Does.Contain("multiple of the 2 ranks"));
    }
}
