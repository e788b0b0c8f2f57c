using System.Text.Json;
using Parrot.Autograd;
using Parrot.Parrot.Data;
using Parrot.Parrot.Model;
using Parrot.Parrot.Training;
using Parrot.Tensors;
using Parrot.Tensors.Formats;
using static Parrot.Parrot.Tests.Training.TrainingFixtures;

namespace Parrot.Parrot.Tests.Training;

public class ParrotTrainerTests
{
    private static (LlavaDataset Data, string Dir) Data(int samples = 8)
    {
        var dir = TempDir();
        var (json, images) = WriteData(dir, samples);
        return (LlavaDataset.Load(json, images, Chat, DataOptions()), dir);
    }

    private static ParrotTrainingOptions Options(int stage, int global = 4, int micro = 2, int? steps = null) =>
        ParrotTrainingOptions.Parrot7b(stage) with { GlobalBatch = global, MicroBatch = micro, Steps = steps, LearningRate = stage == 1 ? 1e-2 : 1e-3, WarmupRatio = 0.2 };

    private static Dictionary<string, float[]> Snapshot(ParrotForCausalLM m) =>
        m.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.Value.ToFloatArray());

    [Test]
    public void TheRecipeHasThePapersHyperparameters()
    {
        var s1 = ParrotTrainingOptions.Recipe("parrot-7b", 1);
        var s2 = ParrotTrainingOptions.Recipe("parrot-7b", 2);
        Assert.That((s1.LearningRate, s1.GlobalBatch, s1.Epochs, s1.WeightDecay, s1.WarmupRatio, s1.MaxGradNorm, s1.MaxLength), Is.EqualTo((1e-3, 256, 1, 0.0, 0.03, 1.0, 2048)));
        Assert.That((s2.LearningRate, s2.GlobalBatch, s2.Epochs, s2.WeightDecay, s2.WarmupRatio, s2.MaxGradNorm, s2.MaxLength), Is.EqualTo((2e-5, 128, 1, 0.0, 0.03, 1.0, 2048)));
        Assert.That(s1.Bf16 || s1.GradientCheckpointing, Is.False, "float32 without recomputation by default on the CPU");
        Assert.Throws<ArgumentException>(() => ParrotTrainingOptions.Recipe("llava", 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => ParrotTrainingOptions.Parrot7b(3));
        Assert.Throws<ArgumentException>(() => (s1 with { GlobalBatch = 10, MicroBatch = 4 }).Validate());
    }

    [Test]
    public void StageOneTrainsOnlyTheProjectorWithTheMoeBypassed()
    {
        var (data, _) = Data();
        using var model = new ParrotForCausalLM(Config(), seed: 3);
        using var features = new LlavaImageFeatures(ToyTower, Preprocessor);
        var before = Snapshot(model);
        using var trainer = new ParrotTrainer(model, data, features, Options(1));
        Assert.That(model.MoeEnabled, Is.False);
        Assert.That(trainer.TotalSteps, Is.EqualTo(2), "one epoch of 8 samples in batches of 4");
        var records = trainer.Train();
        Assert.That(records.Select(r => r.Step), Is.EqualTo(new[] { 1, 2 }));
        foreach (var (name, p) in model.NamedParameters())
        {
            bool changed = !p.Value.ToFloatArray().SequenceEqual(before[name]);
            Assert.That(changed, Is.EqualTo(name.StartsWith("model.mm_projector.", StringComparison.Ordinal)), name);
        }
    }

    [Test]
    public void StageTwoStartsAFreshMoeAndTrainsEverything()
    {
        var (data, _) = Data();
        using var model = new ParrotForCausalLM(Config(), seed: 3);
        using var features = new LlavaImageFeatures(ToyTower, Preprocessor);
        var before = Snapshot(model);
        using var trainer = new ParrotTrainer(model, data, features, Options(2, steps: 1) with { WarmupRatio = 0 });
        Assert.That(model.MoeEnabled, Is.True);
        var afterInit = Snapshot(model);
        Assert.That(afterInit["model.moe_model.gate.weight"].SequenceEqual(before["model.moe_model.gate.weight"]), Is.False, "MoE re-initialised");
        Assert.That(afterInit["model.mm_projector.0.weight"].SequenceEqual(before["model.mm_projector.0.weight"]), Is.True, "projector kept from stage 1");
        var r = trainer.Train().Single();
        Assert.That(r.Loss, Is.GreaterThan(0));
        foreach (var (name, p) in model.NamedParameters())
            Assert.That(p.Value.ToFloatArray().SequenceEqual(afterInit[name]), Is.False, name + " trained");
    }

    [Test]
    public void AccumulatingMicroBatchesEqualsOneBigBatch()
    {
        var (data, _) = Data();
        var results = new List<(double Loss, double Norm, Dictionary<string, float[]> Weights)>();
        foreach (int micro in new[] { 4, 1, 2 })
        {
            using var model = new ParrotForCausalLM(Config(), seed: 5);
            using var features = new LlavaImageFeatures(ToyTower, Preprocessor);
            using var trainer = new ParrotTrainer(model, data, features, Options(2, global: 4, micro: micro, steps: 1) with { WarmupRatio = 0 });
            var r = trainer.Train().Single();
            results.Add((r.Loss, r.GradNorm, Snapshot(model)));
        }
        // The three loss means are over the same supervised tokens; padding in the big batch changes nothing but rounding.
        for (int k = 1; k < results.Count; k++)
        {
            Assert.That(results[k].Loss, Is.EqualTo(results[0].Loss).Within(1e-5 * results[0].Loss));
            Assert.That(results[k].Norm, Is.EqualTo(results[0].Norm).Within(1e-4 * results[0].Norm));
            foreach (var (name, w) in results[0].Weights)
            {
                var o = results[k].Weights[name];
                double maxDiff = 0;
                for (int i = 0; i < w.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(w[i] - o[i]));
                Assert.That(maxDiff, Is.LessThan(2e-5), name);
            }
        }
    }

    [Test]
    public void ActivationCheckpointingGivesTheSameTraining()
    {
        var (data, _) = Data();
        var losses = new List<double[]>();
        foreach (bool checkpointing in new[] { false, true })
        {
            using var model = new ParrotForCausalLM(Config(), seed: 5);
            using var features = new LlavaImageFeatures(ToyTower, Preprocessor);
            using var trainer = new ParrotTrainer(model, data, features, Options(2, global: 4, micro: 2, steps: 2) with { WarmupRatio = 0, GradientCheckpointing = checkpointing });
            Assert.That(model.Model.GradientCheckpointing, Is.EqualTo(checkpointing));
            losses.Add(trainer.Train().Select(r => r.Loss).ToArray());
        }
        Assert.That(losses[1], Is.EqualTo(losses[0]).Within(1e-6));
    }

    [Test]
    public void TheLossIsTheMeanOverSupervisedTokensOfTheGlobalBatch()
    {
        var (data, _) = Data(samples: 4);
        using var model = new ParrotForCausalLM(Config(), seed: 5);
        using var features = new LlavaImageFeatures(ToyTower, Preprocessor);
        // Reference: the whole batch in one forward pass with the library's mean next-token loss, before any update.
        double expected;
        long supervised = 0;
        using (Graph.NoGrad())
        using (var scope = TensorScope.Begin())
        {
            ParrotTrainer.ReinitializeMoe(model, 42);
            model.MoeEnabled = true;
            var paths = data.Examples.Where(e => e.ImagePath is not null).Select(e => e.ImagePath!).ToList();
            int img = 0;
            var samples = data.Examples.Select(e => new ParrotSample(e.Ids, e.Labels, e.ImagePath is null ? -1 : img++)).ToList();
            var feats = features.Batch(paths, paths);
            var output = model.Forward(samples, feats);
            expected = global::Parrot.Nn.Losses.NextTokenCrossEntropy(output.Logits, output.Labels).Value.Item();
            var labels = output.Labels.ToLongArray();
            int len = output.Labels.Dim(1);
            for (int i = 0; i < labels.Length; i++) if (i % len != 0 && labels[i] != ParrotSample.IgnoreIndex) supervised++;
        }
        using var trainer = new ParrotTrainer(model, data, features, Options(2, global: 4, micro: 1, steps: 1));
        var r = trainer.Train().Single();
        Assert.That(r.SupervisedTokens, Is.EqualTo(supervised));
        Assert.That(r.Loss, Is.EqualTo(expected).Within(1e-5 * expected));
        // Every sample carries a language (id prefix), so the overall mean lies within the per-language means.
        Assert.That(r.LanguageLoss.Keys, Is.EquivalentTo(new[] { "en", "zh", "pt" }));
        Assert.That(r.Loss, Is.InRange(r.LanguageLoss.Values.Min() - 1e-9, r.LanguageLoss.Values.Max() + 1e-9));
        var line = JsonDocument.Parse(r.ToJson()).RootElement;
        foreach (var key in new[] { "step", "loss", "lr", "grad_norm", "tokens_per_s", "loss_en", "loss_zh", "loss_pt" })
            Assert.That(line.TryGetProperty(key, out _), Is.True, key);
        Assert.That(r.Tokens, Is.GreaterThan(r.SupervisedTokens));
    }

    [Test]
    public void TheLearningRateFollowsWarmupAndCosine()
    {
        var (data, _) = Data();
        using var model = new ParrotForCausalLM(Config(), seed: 5);
        using var features = new LlavaImageFeatures(ToyTower, Preprocessor);
        using var trainer = new ParrotTrainer(model, data, features, Options(1, global: 2, micro: 2, steps: 4) with { LearningRate = 1e-2, WarmupRatio = 0.25 });
        var lrs = trainer.Train().Select(r => r.LearningRate).ToArray();
        // warm-up ceil(0.25·4) = 1 step: 0, then cosine over 3 steps.
        Assert.That(lrs[0], Is.EqualTo(0));
        Assert.That(lrs[1], Is.EqualTo(1e-2).Within(1e-15));
        Assert.That(lrs[2], Is.EqualTo(1e-2 * 0.5 * (1 + Math.Cos(Math.PI / 3))).Within(1e-15));
        Assert.That(lrs[3], Is.EqualTo(1e-2 * 0.5 * (1 + Math.Cos(2 * Math.PI / 3))).Within(1e-15));
    }

    [TestCase(1, false)]
    [TestCase(2, false)]
    [TestCase(2, true)]
    public void AResumedRunGivesTheSameLossesBitForBit(int stage, bool bf16)
    {
        var (data, dir) = Data();
        var options = Options(stage, global: 2, micro: 1, steps: 6) with { Bf16 = bf16, SaveEvery = 3 };
        double[] straight;
        using (var model = new ParrotForCausalLM(Config(), seed: 9))
        using (var features = new LlavaImageFeatures(ToyTower, Preprocessor))
        using (var trainer = new ParrotTrainer(model, data, features, options))
            straight = trainer.Train().Select(r => r.Loss).ToArray();
        Assert.That(straight.Distinct().Count(), Is.EqualTo(6));

        var outDir = Path.Combine(dir, "run");
        var resumed = new List<double>();
        using (var model = new ParrotForCausalLM(Config(), seed: 9))
        using (var features = new LlavaImageFeatures(ToyTower, Preprocessor))
        using (var trainer = new ParrotTrainer(model, data, features, options) { OutputDir = outDir })
            resumed.AddRange(trainer.Train(stopAfter: 3).Select(r => r.Loss)); // "interrupted" after the step-3 checkpoint
        var latest = ParrotCheckpoint.Latest(outDir);
        Assert.That(Path.GetFileName(latest), Is.EqualTo("checkpoint-3"));
        Assert.That(Directory.GetDirectories(outDir).Select(Path.GetFileName), Is.EqualTo(new[] { "checkpoint-3" }), "no temporary directory left");

        // A fresh process would start from a different initialisation: use another seed to prove everything comes from the checkpoint.
        using (var model = new ParrotForCausalLM(Config(), seed: 77))
        using (var features = new LlavaImageFeatures(ToyTower, Preprocessor))
        using (var trainer = new ParrotTrainer(model, data, features, options) { OutputDir = outDir })
        {
            trainer.Resume(latest!);
            Assert.That(trainer.Step, Is.EqualTo(3));
            resumed.AddRange(trainer.Train().Select(r => r.Loss));
        }
        Assert.That(resumed, Is.EqualTo(straight), "bit for bit");
        Assert.That(ParrotCheckpoint.Latest(outDir), Does.EndWith("checkpoint-6"));
        using var saved = ParrotLoader.Load(Path.Combine(outDir, "checkpoint-6"));
        Assert.That(saved.Config.UseMoe, Is.EqualTo(stage == 2));
    }

    [Test]
    public void ResumingAMismatchedRunIsRefused()
    {
        var (data, dir) = Data();
        var outDir = Path.Combine(dir, "run");
        using var features = new LlavaImageFeatures(ToyTower, Preprocessor);
        using (var model = new ParrotForCausalLM(Config(), seed: 9))
        using (var trainer = new ParrotTrainer(model, data, features, Options(1, global: 4, micro: 4, steps: 1)) { OutputDir = outDir })
            trainer.Train();
        var ck = ParrotCheckpoint.Latest(outDir)!;
        using var m2 = new ParrotForCausalLM(Config(), seed: 9);
        using (var t2 = new ParrotTrainer(m2, data, features, Options(2, global: 4, micro: 4, steps: 1)))
            Assert.That(Assert.Throws<InvalidDataException>(() => t2.Resume(ck))!.Message, Does.Contain("stage 1"));
        using (var t3 = new ParrotTrainer(m2, data, features, Options(1, global: 4, micro: 4, steps: 1) with { Seed = 7 }))
            Assert.That(Assert.Throws<InvalidDataException>(() => t3.Resume(ck))!.Message, Does.Contain("seed"));
        using (var t4 = new ParrotTrainer(m2, data, features, Options(1, global: 4, micro: 4, steps: 5)))
            Assert.That(Assert.Throws<InvalidDataException>(() => t4.Resume(ck))!.Message, Does.Contain("steps"));
        // These two resumed silently with another schedule or data position.
        var options = Options(1, global: 4, micro: 4, steps: 1);
        using (var t6 = new ParrotTrainer(m2, data, features, options with { LearningRate = options.LearningRate * 10 }))
            Assert.That(Assert.Throws<InvalidDataException>(() => t6.Resume(ck))!.Message,
                Does.Contain($"the checkpoint's run has learning rate {options.LearningRate.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}, this one"));
        using (var t7 = new ParrotTrainer(m2, data, features, Options(1, global: 2, micro: 2, steps: 1)))
            Assert.That(Assert.Throws<InvalidDataException>(() => t7.Resume(ck))!.Message, Does.Contain("a global batch of 4, this one 2"));
        using (var t8 = new ParrotTrainer(m2, data, features, Options(1, global: 4, micro: 2, steps: 1)))
            Assert.DoesNotThrow(() => t8.Resume(ck), "another split into micro-batches gives the same losses");

        // Another data set of the same size (the same samples in another order; one answer changed) resumed silently with
        // other samples at the checkpoint's offset: the checkpoint records the data's fingerprint.
        var recorded = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(ck, "trainer_state.json")))!["data_fingerprint"]!.GetValue<string>();
        Assert.That(recorded, Is.EqualTo(data.Fingerprint).And.StartWith("sha256:").And.Length.EqualTo(7 + 64));
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(data.File))!.AsArray();
        var reordered = Path.Combine(dir, "reordered.json");
        File.WriteAllText(reordered, new System.Text.Json.Nodes.JsonArray(json.Reverse().Select(n => n!.DeepClone()).ToArray()).ToJsonString());
        var edited = Path.Combine(dir, "edited.json");
        var copy = json.DeepClone().AsArray();
        copy[5]!["conversations"]![1]!["value"] = "purple";
        File.WriteAllText(edited, copy.ToJsonString());
        foreach (var other in new[] { reordered, edited })
        {
            var otherData = LlavaDataset.Load(other, Path.Combine(dir, "images"), Chat, DataOptions());
            Assert.That(otherData.Examples, Has.Count.EqualTo(data.Examples.Count));
            using var t9 = new ParrotTrainer(m2, otherData, features, Options(1, global: 4, micro: 4, steps: 1));
            Assert.That(Assert.Throws<InvalidDataException>(() => t9.Resume(ck))!.Message, Does.StartWith($"{ck}: the checkpoint's run trained on a different dataset: its data fingerprint is {recorded}, this run's data ({other}, 8 samples) has sha256:")
                .And.EndWith("start a new run (another output folder) to train on this data"), other);
        }
        // The same data with its images elsewhere (the paths are hashed relative to the images folder) resumes.
        var moved = Path.Combine(dir, "moved");
        Directory.CreateDirectory(Path.Combine(moved, "pictures"));
        foreach (var f in Directory.GetFiles(Path.Combine(dir, "images"))) File.Copy(f, Path.Combine(moved, "pictures", Path.GetFileName(f)));
        File.Copy(data.File, Path.Combine(moved, "data.json"));
        var movedData = LlavaDataset.Load(Path.Combine(moved, "data.json"), Path.Combine(moved, "pictures"), Chat, DataOptions());
        Assert.That(movedData.Fingerprint, Is.EqualTo(data.Fingerprint));
        using (var t10 = new ParrotTrainer(m2, movedData, features, Options(1, global: 4, micro: 4, steps: 1)))
            Assert.DoesNotThrow(() => t10.Resume(ck));

        // A damaged trainer_state.json: each problem names the file and the key (a string used to give a bare "cannot be converted").
        var state = Path.Combine(ck, "trainer_state.json");
        var good = File.ReadAllText(state);
        void Damaged(Action<System.Text.Json.Nodes.JsonObject> edit, string expected)
        {
            var o = System.Text.Json.Nodes.JsonNode.Parse(good)!.AsObject();
            edit(o);
            File.WriteAllText(state, o.ToJsonString());
            using var t = new ParrotTrainer(m2, data, features, Options(1, global: 4, micro: 4, steps: 1));
            Assert.That(Assert.Throws<InvalidDataException>(() => t.Resume(ck))!.Message, Does.StartWith(state).And.Contain(expected));
        }
        Damaged(o => o["stage"] = "1", "'stage' is \"1\", not an integer");
        Damaged(o => o["bf16"] = 0, "'bf16' is 0, not true or false");
        Damaged(o => o["offset"] = -3, "inconsistent position");
        Damaged(o => o["step"] = 99, "inconsistent position: step 99 of 1");
        Damaged(o => o.Remove("optimizer_steps"), "no 'optimizer_steps'");
        Damaged(o => o["learning_rate"] = "fast", "'learning_rate' is \"fast\", not a number");
        Damaged(o => o["data_fingerprint"] = 5, "'data_fingerprint' is 5, not a fingerprint string");
        // \ud800 (an unpaired surrogate) parses but is not text: the fingerprint's read, or with such a key every lookup,
        // threw InvalidOperationException, naming neither the file nor the key.
        foreach (var (text, where) in new[]
        {
            (good.Replace("\"sha256:", "\"\\ud800sha256:", StringComparison.Ordinal), "the string at $.data_fingerprint"),
            (good.TrimEnd().TrimEnd('}') + ", \"x\\ud800\": 1}", "a key of $"),
        })
        {
            Assert.That(text, Is.Not.EqualTo(good));
            File.WriteAllText(state, text);
            using var t = new ParrotTrainer(m2, data, features, Options(1, global: 4, micro: 4, steps: 1));
            Assert.That(Assert.Throws<InvalidDataException>(() => t.Resume(ck))!.Message, Is.EqualTo($"{state}: {where} {JsonText.NotText}"));
        }
        // A checkpoint written before the fingerprint was recorded still resumes (its sample count checked alone).
        {
            var o = System.Text.Json.Nodes.JsonNode.Parse(good)!.AsObject();
            o.Remove("data_fingerprint");
            File.WriteAllText(state, o.ToJsonString());
            var reorderedData = LlavaDataset.Load(reordered, Path.Combine(dir, "images"), Chat, DataOptions());
            using var old = new ParrotTrainer(m2, reorderedData, features, Options(1, global: 4, micro: 4, steps: 1));
            Assert.DoesNotThrow(() => old.Resume(ck));
            var six = WriteData(Path.Combine(dir, "six"), 6);
            using var fewer = new ParrotTrainer(m2, LlavaDataset.Load(six.Json, six.Images, Chat, DataOptions()), features, Options(1, global: 4, micro: 4, steps: 1));
            Assert.That(Assert.Throws<InvalidDataException>(() => fewer.Resume(ck))!.Message, Does.Contain("the checkpoint was trained on 8 samples, the data now has 6"));
        }
        File.WriteAllText(state, "[1]");
        using (var t5 = new ParrotTrainer(m2, data, features, Options(1, global: 4, micro: 4, steps: 1)))
            Assert.That(Assert.Throws<InvalidDataException>(() => t5.Resume(ck))!.Message, Does.Contain("expected a JSON object"));
    }

    [Test]
    public void ANonFiniteLossStopsTheRunNamingTheStepAndKeepsTheLastCheckpoint()
    {
        var (data, dir) = Data();
        var outDir = Path.Combine(dir, "run");
        using var model = new ParrotForCausalLM(Config(), seed: 9);
        using var features = new LlavaImageFeatures(ToyTower, Preprocessor);
        using var trainer = new ParrotTrainer(model, data, features, Options(1, global: 2, micro: 1, steps: 4) with { SaveEvery = 1 }) { OutputDir = outDir };
        trainer.Train(stopAfter: 1);
        var files = Directory.GetFiles(Path.Combine(outDir, "checkpoint-1")).ToDictionary(f => f, File.ReadAllBytes);
        using (var scope = TensorScope.Begin())
        {
            var w = model.Model.Projector.NamedParameters().First().Parameter.Value;
            w.CopyFrom(Tensor.Full(w.Shape.ToArray(), float.NaN));
        }
        var e = Assert.Throws<ParrotTrainingException>(() => trainer.Train());
        Assert.That(e!.Message, Does.Contain("step 2").And.Contain("micro-batch 1").And.Contain("NaN"));
        Assert.That(ParrotCheckpoint.Latest(outDir), Does.EndWith("checkpoint-1"));
        foreach (var (f, bytes) in files) Assert.That(File.ReadAllBytes(f), Is.EqualTo(bytes));
    }

    [Test]
    public void LoaderRoundTripsWithoutTheVisionTowerAndStartsAFreshProjectorFromAPlainLm()
    {
        var dir = TempDir();
        using var model = new ParrotForCausalLM(Config(), seed: 4);
        ParrotLoader.Save(model, dir);
        using (var loaded = ParrotLoader.Load(dir))
            foreach (var ((n1, p1), (n2, p2)) in model.NamedParameters().Zip(loaded.NamedParameters()))
            {
                Assert.That(n2, Is.EqualTo(n1));
                Assert.That(p2.Value.ToFloatArray(), Is.EqualTo(p1.Value.ToFloatArray()), n1);
            }

        // A Qwen2 LM with Parrot's keys in its config: projector and MoE start fresh.
        var lmDir = TempDir();
        using (var scope = TensorScope.Begin())
        {
            var lm = model.NamedParameters().Where(p => !p.Name.Contains("mm_projector") && !p.Name.Contains("moe_model"))
                .Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Parameter.Value)).ToList();
            global::Parrot.Tensors.Formats.Safetensors.Save(Path.Combine(lmDir, "model.safetensors"), lm);
        }
        File.Copy(Path.Combine(dir, "config.json"), Path.Combine(lmDir, "config.json"));
        using (var fresh = ParrotLoader.Load(lmDir, seed: 11))
        {
            Assert.That(fresh.Model.EmbedTokens.Weight.Value.ToFloatArray(), Is.EqualTo(model.Model.EmbedTokens.Weight.Value.ToFloatArray()));
            Assert.That(fresh.Model.Projector.NamedParameters().First().Parameter.Value.ToFloatArray()
                .SequenceEqual(model.Model.Projector.NamedParameters().First().Parameter.Value.ToFloatArray()), Is.False);
        }
        File.Delete(Path.Combine(lmDir, "model.safetensors"));
        Assert.Throws<FileNotFoundException>(() => ParrotLoader.Load(lmDir), "no weights at all");
    }
}
