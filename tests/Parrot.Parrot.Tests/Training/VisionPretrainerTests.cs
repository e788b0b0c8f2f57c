using Parrot.Autograd;
using Parrot.Nn.Models.Clip;
using Parrot.Parrot.Data.World;
using Parrot.Parrot.Training;
using Parrot.Parrot.Vision;
using Parrot.Tensors;
using Parrot.Tensors.Formats;

namespace Parrot.Parrot.Tests.Training;

public class VisionPretrainerTests
{
    /// <summary>48 px in 16-px patches: a 3 × 3 grid whose cells are the world's slots; one narrow layer.</summary>
    private static readonly ClipVisionConfig Micro = new()
    {
        HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 1, NumAttentionHeads = 2, ImageSize = 48, PatchSize = 16,
    };

    private static string TinyWorld(int images, int size = 48)
    {
        var dir = Path.Combine(Path.GetTempPath(), "parrot-vision-pretrain-tests", Guid.NewGuid().ToString("N"));
        WorldGenerator.Generate(dir, new WorldOptions { Seed = 5, ImageSize = size, Stage1Count = images, Stage2Count = 0, BenchmarkCount = 0, TextScenes = 0 });
        return dir;
    }

    [Test]
    public void TargetsDescribeTheSceneSlotBySlot()
    {
        var world = WorldBuilder.Build(new WorldOptions { Seed = 11, Stage1Count = 200, Stage2Count = 0, BenchmarkCount = 0, TextScenes = 0 });
        // With 3 × 3 patches each slot's cell is one patch: left = (row 1, col 0), right = (1, 2), top = (0, 1), bottom = (2, 1), center = (1, 1).
        var slotOfPatch = new Dictionary<int, Slot> { [3] = Slot.Left, [5] = Slot.Right, [1] = Slot.Top, [7] = Slot.Bottom, [4] = Slot.Center };
        foreach (var image in world.Images)
        {
            var scene = image.Scene;
            foreach (int size in new[] { 48, 96 })
            {
                var t = VisionTargets.Patches(scene, size, size / 3);
                Assert.That(t, Has.Length.EqualTo(27));
                for (int q = 0; q < 9; q++)
                {
                    var o = slotOfPatch.TryGetValue(q, out var slot) ? scene.At(slot) : null;
                    long[] expected = o is null ? [0, 0, 0]
                        : [1 + (int)o.Shape, 1 + Array.IndexOf(WorldPalette.ObjectColors, o.Color), o.Size == SizeClass.Small ? 1 : 2];
                    Assert.That(t.Skip(3 * q).Take(3), Is.EqualTo(expected), $"patch {q} at {size} px");
                }
            }
            var c = VisionTargets.Cls(scene);
            Assert.That(c, Has.Length.EqualTo(VisionTargets.ClsHeads.Length));
            Assert.That(WorldPalette.BackgroundColors[c[0]], Is.EqualTo(scene.Background));
            Assert.That(c[1] + 1, Is.EqualTo(scene.Objects.Count));
            for (int s = 0; s < 5; s++) Assert.That(c[2 + s], Is.EqualTo(scene.Objects.Count(o => (int)o.Shape == s)));
            for (int k = 0; k < 8; k++) Assert.That(c[7 + k], Is.EqualTo(scene.Objects.Count(o => o.Color == WorldPalette.ObjectColors[k])));
            for (int h = 0; h < c.Length; h++) Assert.That(c[h], Is.InRange(0, VisionTargets.ClsHeads[h] - 1));
        }
    }

    [Test]
    public void LossDecreasesAndAccuracyRises()
    {
        var world = TinyWorld(96);
        var options = new VisionPretrainingOptions { Tower = Micro, Steps = 40, Batch = 16, LearningRate = 3e-3, ValidImages = 32, EvalEvery = 0, Seed = 3 };
        using var trainer = new VisionPretrainer(world, options);
        Assert.That(trainer.TrainCount, Is.EqualTo(64));
        var before = trainer.Evaluate();
        var records = trainer.Train();
        Assert.That(records, Has.Count.EqualTo(40));
        Assert.That(records.All(r => double.IsFinite(r.Loss) && r.GradNorm > 0), Is.True);
        Assert.That(records.Take(39).All(r => r.Valid is null) && records[^1].Valid is not null, Is.True, "evaluation only at the end with EvalEvery 0");
        double first = records.Take(3).Average(r => r.Loss), last = records.TakeLast(5).Average(r => r.Loss);
        Assert.That(last, Is.LessThan(0.75 * first), $"training loss {first:F3} → {last:F3}");
        var after = records[^1].Valid!;
        Assert.That(after["loss"], Is.LessThan(before["loss"] * 0.8), "held-out loss");
        TestContext.Progress.WriteLine("before: " + string.Join(" ", before.Select(kv => $"{kv.Key} {kv.Value:F3}")));
        TestContext.Progress.WriteLine("after:  " + string.Join(" ", after.Select(kv => $"{kv.Key} {kv.Value:F3}")));
        // Background and colours are linear read-outs of the pixels: they are learnt first.
        Assert.That(after["acc_patch_color"], Is.GreaterThan(before["acc_patch_color"] + 0.1));
        Assert.That(after["acc_background"], Is.GreaterThan(0.6));
    }

    [Test]
    public void SavedFolderLoadsAsAClipTowerWithIdenticalFeatures()
    {
        var options = new VisionPretrainingOptions { Tower = Micro, Steps = 2, Batch = 4, ValidImages = 4, EvalEvery = 0 };
        using var trainer = new VisionPretrainer(TinyWorld(12), options);
        trainer.Train();
        var dir = Path.Combine(Path.GetTempPath(), "parrot-vision-pretrain-tests", Guid.NewGuid().ToString("N"), "tower");
        ClipTowerFolder.Save(trainer.Tower, dir);
        using var loaded = ClipVisionLoader.Load(dir, DType.F32);
        Assert.That(loaded.Config, Is.EqualTo(trainer.Tower.Config));
        var pre = ImagePreprocessor.FromDirectory(dir);
        Assert.That(pre.FixedOutputShape, Is.EqualTo(new[] { 3, 48, 48 }));
        Assert.That(pre.Config.ImageMean, Is.EqualTo(PreprocessorConfig.ClipMean));

        using var scope = TensorScope.Begin();
        var pixels = Tensor.Normal([2, 3, 48, 48], seed: 9);
        using var ng = Graph.NoGrad();
        foreach (int layer in new[] { -1, -2 })
        {
            var a = trainer.Tower.HiddenState(new Variable(pixels), layer).Value.ToFloatArray();
            var b = loaded.HiddenState(new Variable(pixels), layer).Value.ToFloatArray();
            Assert.That(b, Is.EqualTo(a), $"layer {layer}");
        }

        // bf16 weights: every tensor is the float32 one rounded to bf16.
        var bfDir = dir + "-bf16";
        ClipTowerFolder.Save(trainer.Tower, bfDir, DType.BF16);
        using var bf = ClipVisionLoader.Load(bfDir);
        Assert.That(bf.Parameters().First().DType, Is.EqualTo(DType.BF16));
        var original = trainer.Tower.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.Value);
        foreach (var (name, p) in bf.NamedParameters())
            Assert.That(p.Value.To(DType.F32).ToFloatArray(), Is.EqualTo(original[name].To(DType.BF16).To(DType.F32).ToFloatArray()), name);
    }

    [Test]
    public void BadLabelsAreNamed()
    {
        var world = TinyWorld(4);
        var path = Path.Combine(world, "labels.json");
        var text = File.ReadAllText(path);
        File.WriteAllText(path, text.Replace("\"shape\":\"", "\"shape\":\"hexagon", StringComparison.Ordinal));
        var e = Assert.Throws<InvalidDataException>(() => VisionLabels.Load(world))!;
        Assert.That(e.Message, Does.Contain("labels.json: entry 0, object 0").And.Contain("unknown shape 'hexagon"));
        // \ud800 (an unpaired surrogate) parses but is not text: reading it threw InvalidOperationException, unnamed.
        File.WriteAllText(path, text.Replace("\"image\":\"", "\"image\":\"\\ud800", StringComparison.Ordinal));
        Assert.That(Assert.Throws<InvalidDataException>(() => VisionLabels.Load(world))!.Message,
            Is.EqualTo($"{path}: entry 0: 'image' {JsonText.NotText}"));
        File.WriteAllText(path, "{}");
        Assert.That(Assert.Throws<InvalidDataException>(() => VisionLabels.Load(world))!.Message, Does.Contain("array"));
        File.Delete(path);
        Assert.That(Assert.Throws<InvalidDataException>(() => VisionLabels.Load(world))!.Message, Does.Contain("not found"));

        var ok = TinyWorld(4);
        File.Delete(Path.Combine(ok, "images", "stage1", "000002.png"));
        var missing = Assert.Throws<InvalidDataException>(() => new VisionPretrainer(ok, new VisionPretrainingOptions { Tower = Micro, ValidImages = 1 }))!;
        Assert.That(missing.Message, Does.Contain("000002.png").And.Contain("entry 2"));
        Assert.That(Assert.Throws<InvalidDataException>(() => new VisionPretrainer(TinyWorld(4), new VisionPretrainingOptions { Tower = Micro, ValidImages = 4 }))!.Message,
            Does.Contain("held out"));
    }
}
