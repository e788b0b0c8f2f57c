using Parrot.Autograd;
using Parrot.Nn.Models.Qwen2;
using Parrot.Tensors;
using Parrot.Tests.Shared;

namespace Parrot.Nn.Tests;

/// <summary>
/// Attention under activation checkpointing: the block's forward runs without gradients and its recomputation in
/// backward with them, and both must call the backend's attention the same way — with the log-sum-exp, which on a GPU
/// also picks the kernel (cuDNN's fused SDPA for training, ours for inference) — or the recomputed output would not be
/// the one the forward handed on to the next layers. Inference without a checkpoint still asks for none.
/// </summary>
public class CheckpointAttentionTests
{
    private static readonly Qwen2Config Tiny = new()
    {
        VocabSize = 50, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        RopeTheta = 10000, RmsNormEps = 1e-6,
    };

    private static List<string> Attentions(Action step)
    {
        var dev = TestDevice.Backend;
        using var scope = TensorScope.Begin();
        dev.OpLog = [];
        try
        {
            step();
            return dev.OpLog.Where(o => o.StartsWith("Attention", StringComparison.Ordinal) && !o.StartsWith("AttentionBackward", StringComparison.Ordinal)).ToList();
        }
        finally { dev.OpLog = null; }
    }

    [Test]
    public void ACheckpointedBlocksForwardAndRecomputationBothSaveTheLogSumExp()
    {
        using var model = new Qwen2ForCausalLM(Tiny, seed: 5, DType.F32) { GradientCheckpointing = true };
        model.To(TestDevice.Get());
        var ids = Tensor.FromArray(Enumerable.Range(0, 12).Select(i => (long)(i * 7 % Tiny.VocabSize)).ToArray(), model.Device, 2, 6);
        var forward = new List<string>();
        var all = Attentions(() =>
        {
            var loss = Losses.NextTokenCrossEntropy(model.Forward(ids), ids);
            forward.AddRange(TestDevice.Backend.OpLog!.Where(o => o.StartsWith("Attention", StringComparison.Ordinal)));
            loss.Backward();
        });
        int layers = Tiny.NumHiddenLayers;
        Assert.That(forward, Is.EqualTo(Enumerable.Repeat("Attention+lse", layers)), "the checkpointed forward (no gradients recorded) as training");
        Assert.That(all, Is.EqualTo(Enumerable.Repeat("Attention+lse", 2 * layers)), "the recomputation likewise");
        Assert.That(Graph.IsInCheckpoint, Is.False, "the flag ends with the block");
    }

    [Test]
    public void InferenceAndUncheckpointedTrainingKeepTheirPaths()
    {
        using var model = new Qwen2ForCausalLM(Tiny, seed: 5, DType.F32);
        model.To(TestDevice.Get());
        var ids = Tensor.FromArray(Enumerable.Range(0, 6).Select(i => (long)(i * 3 % Tiny.VocabSize)).ToArray(), model.Device, 1, 6);
        var inference = Attentions(() => { using var ng = Graph.NoGrad(); model.Forward(ids); });
        Assert.That(inference, Is.EqualTo(Enumerable.Repeat("Attention", Tiny.NumHiddenLayers)), "no backward follows: no log-sum-exp");
        var training = Attentions(() => model.Forward(ids));
        Assert.That(training, Is.EqualTo(Enumerable.Repeat("Attention+lse", Tiny.NumHiddenLayers)));
    }
}
