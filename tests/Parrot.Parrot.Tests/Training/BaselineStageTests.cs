using Parrot.Parrot.Data;
using Parrot.Parrot.Model;
using Parrot.Parrot.Training;
using static Parrot.Parrot.Tests.Training.TrainingFixtures;

namespace Parrot.Parrot.Tests.Training;

public class BaselineStageTests
{
    [Test]
    public void StageTwoWithoutTheMoeTrainsEverythingButTheMoeAndBypassesIt()
    {
        var dir = TempDir();
        var (json, images) = WriteData(dir);
        var data = LlavaDataset.Load(json, images, Chat, DataOptions());
        using var model = new ParrotForCausalLM(Config(useMoe: true), seed: 3);
        var before = model.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter.Value.ToFloatArray());
        using var features = new LlavaImageFeatures(ToyTower, Preprocessor);
        var options = ParrotTrainingOptions.Parrot7b(2) with { GlobalBatch = 4, MicroBatch = 2, Steps = 2, LearningRate = 1e-3, WarmupRatio = 0, UseMoe = false };
        using var trainer = new ParrotTrainer(model, data, features, options);
        Assert.That(model.MoeEnabled, Is.False, "the baseline bypasses the MoE");
        var steps = trainer.Train();
        Assert.That(steps.Select(s => s.Loss).All(double.IsFinite), Is.True);

        foreach (var (name, p) in model.NamedParameters())
        {
            bool same = p.Value.ToFloatArray().SequenceEqual(before[name]);
            if (name.StartsWith("model.moe_model.", StringComparison.Ordinal))
            {
                Assert.That(p.RequiresGrad, Is.False, $"{name} is frozen");
                Assert.That(same, Is.True, $"{name} is neither trained nor re-initialised");
            }
            else if (name is "model.mm_projector.0.weight" or "model.embed_tokens.weight" or "lm_head.weight" or "model.layers.0.mlp.up_proj.weight")
                Assert.That(same, Is.False, $"{name} is trained");
        }

        // With the MoE on (Parrot), the same stage re-initialises and trains it.
        using var parrot = new ParrotForCausalLM(Config(useMoe: true), seed: 3);
        using var parrotTrainer = new ParrotTrainer(parrot, data, features, options with { UseMoe = true });
        Assert.That(parrot.MoeEnabled, Is.True);
        Assert.That(parrot.NamedParameters().Where(p => p.Name.StartsWith("model.moe_model.", StringComparison.Ordinal)).All(p => p.Parameter.RequiresGrad), Is.True);
    }
}
