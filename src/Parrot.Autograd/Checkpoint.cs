using Parrot.Tensors;

namespace Parrot.Autograd;

/// <summary>
/// Activation checkpointing: runs a block without keeping its activations, and recomputes them during
/// backward. Peak memory drops to the block's inputs and outputs; gradients are identical as long as the
/// block is deterministic (the same inputs give the same values when run again).
/// </summary>
public static class Checkpoint
{
    /// <summary>Runs <paramref name="block"/> on <paramref name="inputs"/>, recording a single node for it.</summary>
    public static Variable Run(Func<Variable[], Variable> block, params Variable[] inputs)
    {
        ArgumentNullException.ThrowIfNull(block);
        ArgumentNullException.ThrowIfNull(inputs);
        Tensor output;
        // The block's temporaries die here; only its output survives, which is the point of checkpointing.
        using (var scope = TensorScope.Begin())
        using (Graph.NoGrad())
        using (Graph.CheckpointScope()) // both runs take the same op paths (Graph.IsInCheckpoint)
            output = scope.Keep(block(inputs).Value);
        if (Graph.IsGradDisabled) return new Variable(output);
        // Parameters used inside the block are leaves reached only through the recomputation, so the
        // node is recorded even when no explicit input needs a gradient.
        var saved = inputs.Select(i => i.Value).ToArray();
        return Graph.Record("Checkpoint", output, inputs, (node, g) =>
        {
            // Fresh leaves over the same values; inner backward accumulates into them and into every
            // parameter the block touches.
            var leaves = new Variable[inputs.Length];
            for (int i = 0; i < inputs.Length; i++) leaves[i] = new Variable(node.Saved(i), requiresGrad: inputs[i].RequiresGrad);
            Variable recomputed;
            using (Graph.CheckpointScope())
                recomputed = block(leaves);
            if (recomputed.RequiresGrad) recomputed.Backward(g);
            var grads = new Tensor?[inputs.Length];
            for (int i = 0; i < inputs.Length; i++)
            {
                grads[i] = leaves[i].Grad?.Alias();
                leaves[i].ZeroGrad();
            }
            return grads;
        }, forceRecord: true, save: saved);
    }
}
