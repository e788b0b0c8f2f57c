using Parrot.Tensors;

namespace Parrot.Autograd;

/// <summary>Recording ops and running backward passes.</summary>
public static class Graph
{
    [ThreadStatic] private static int _noGradDepth;

    /// <summary>True while a <see cref="NoGrad"/> scope is open on this thread.</summary>
    public static bool IsGradDisabled => _noGradDepth > 0;

    /// <summary>Opens a scope in which no op is recorded (inference, optimizer updates).</summary>
    public static IDisposable NoGrad() => new NoGradScope();

    private sealed class NoGradScope : IDisposable
    {
        private bool _done;
        public NoGradScope() => _noGradDepth++;
        public void Dispose() { if (!_done) { _done = true; _noGradDepth--; } }
    }

    [ThreadStatic] private static bool _noGradientTargets;

    /// <summary>
    /// Whether rules may write gradients into the places their inputs offer (<see cref="Node.GradientTarget"/>); on
    /// unless <see cref="WithoutGradientTargets"/> is open on this thread.
    /// </summary>
    public static bool GradientTargets => !_noGradientTargets;

    /// <summary>
    /// Until disposed, every rule on this thread makes new gradient tensors (gathered by copies where they were written
    /// in place): the way before, for comparisons (tests and `parrot selftest` check both give the same bits).
    /// </summary>
    public static IDisposable WithoutGradientTargets()
    {
        bool before = _noGradientTargets;
        _noGradientTargets = true;
        return new Restore(() => _noGradientTargets = before);
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        private Action? _undo = undo;
        public void Dispose() { _undo?.Invoke(); _undo = null; }
    }

    [ThreadStatic] private static int _checkpointDepth;

    /// <summary>
    /// True while a checkpointed block runs (<see cref="Checkpoint.Run"/>): its forward, without gradients, and its
    /// recomputation during backward. An op that picks its path by whether a backward may follow (attention saves its
    /// log-sum-exp only then, and a GPU backend may then take another kernel) must pick the same path in both runs, or
    /// the recomputation would not reproduce the values the forward handed on.
    /// </summary>
    public static bool IsInCheckpoint => _checkpointDepth > 0;

    /// <summary>Marks a checkpointed block's run (<see cref="IsInCheckpoint"/>) until disposed.</summary>
    internal static IDisposable CheckpointScope() => new CheckpointRun();

    private sealed class CheckpointRun : IDisposable
    {
        private bool _done;
        public CheckpointRun() => _checkpointDepth++;
        public void Dispose() { if (!_done) { _done = true; _checkpointDepth--; } }
    }

    /// <summary>
    /// Wraps an op's output: records a node when some input requires a gradient and recording is on,
    /// else returns a constant. <paramref name="save"/> lists the tensors the rule will read.
    /// </summary>
    public static Variable Record(string name, Tensor output, Variable[] inputs, BackwardRule rule, params Tensor[] save) =>
        Record(name, output, inputs, rule, forceRecord: false, save);

    /// <summary>
    /// As <see cref="Record(string, Tensor, Variable[], BackwardRule, Tensor[])"/>; <paramref name="forceRecord"/>
    /// records the node even when no input requires a gradient (a checkpointed block whose parameters do).
    /// </summary>
    public static Variable Record(string name, Tensor output, Variable[] inputs, BackwardRule rule, bool forceRecord, params Tensor[] save)
    {
        if (IsGradDisabled || (!forceRecord && !AnyRequiresGrad(inputs))) return new Variable(output);
        return new Variable(output, new Node(name, inputs, save, rule));
    }

    private static bool AnyRequiresGrad(Variable[] inputs)
    {
        foreach (var v in inputs) if (v.RequiresGrad) return true;
        return false;
    }

    /// <summary>Runs backward from <paramref name="root"/>; see <see cref="Variable.Backward"/>.</summary>
    public static void Backward(Variable root, Tensor? seed) => Backward(root, seed, null);

    /// <summary>
    /// Runs backward from <paramref name="root"/>, calling <paramref name="onLeafGradient"/> with each leaf as soon as
    /// this pass has added its last contribution to the leaf's gradient (data-parallel training starts reducing a
    /// bucket of gradients while backward computes the rest). Leaves reached only inside checkpointed segments
    /// (activation checkpointing runs its own backward) are not reported.
    /// </summary>
    public static void Backward(Variable root, Tensor? seed, Action<Variable>? onLeafGradient)
    {
        ArgumentNullException.ThrowIfNull(root);
        if (!root.RequiresGrad) throw new InvalidOperationException($"Backward: {root.Describe()} does not require a gradient (no input of its graph does)");
        Tensor grad;
        if (seed is null)
        {
            if (root.Value.Count != 1) throw new ArgumentException($"Backward: {root.Describe()} is not a scalar; pass the gradient of the objective with respect to it");
            grad = Tensor.Ones(root.Shape, root.DType, root.Value.Device);
        }
        else
        {
            if (!seed.Shape.SequenceEqual(root.Shape)) throw new ArgumentException($"Backward: gradient {seed.ShapeString()} does not match {root.Describe()}");
            grad = seed.Alias();
        }

        // Each gradient waiting to be consumed is a private view outside any scope, disposed once used;
        // each rule runs in its own scope, so its temporaries are freed as soon as it returns.
        TensorScope.Detach(grad);
        var order = TopologicalOrder(root);
        var pending = new Dictionary<Variable, Tensor>(ReferenceEqualityComparer.Instance) { [root] = grad };
        var kept = new List<Tensor>(); // leaves' gradients kept as they arrived (they may share storage with others)
        try
        {
            foreach (var v in order)
            {
                if (!pending.Remove(v, out var g)) continue; // no gradient reached it
                using (g)
                {
                    if (v.IsLeaf)
                    {
                        if (v.RequiresGrad)
                        {
                            v.AccumulateGrad(g, Exclusive(g, pending.Values, kept));
                            if (ReferenceEquals(v.Grad!.Storage, g.Storage)) kept.Add(v.Grad);
                            onLeafGradient?.Invoke(v);
                        }
                        continue;
                    }
                    var node = v.GradFn!;
                    using var scope = TensorScope.Begin();
                    var grads = node.Run(g);
                    for (int i = 0; i < grads.Length; i++)
                    {
                        var gi = grads[i];
                        var input = node.Inputs[i];
                        if (gi is null || !input.RequiresGrad) continue;
                        if (!gi.Shape.SequenceEqual(input.Shape))
                            throw new InvalidOperationException($"backward of {node.Name} produced a gradient {gi.ShapeString()} for input {i} of shape {input.Value.ShapeString()}");
                        if (pending.Remove(input, out var acc))
                        {
                            using (acc) pending[input] = TensorScope.Detach(acc + gi);
                        }
                        else pending[input] = TensorScope.Detach(gi.Alias());
                    }
                }
            }
        }
        finally
        {
            foreach (var t in pending.Values) t.Dispose();
        }
    }

    /// <summary>
    /// True when no tensor but <paramref name="g"/> can reach g's elements: every view of its storage is g, a gradient
    /// still pending or a leaf gradient kept in this pass (the storage's user count says there is no other), and none
    /// of those overlaps g's range. The disjoint row ranges SplitLinear hands its weights pass; one tensor handed to
    /// two inputs (an add's backward) does not.
    /// </summary>
    private static bool Exclusive(Tensor g, IEnumerable<Tensor> pending, List<Tensor> kept)
    {
        if (g.IsSoleOwner) return true;
        var storage = g.Storage;
        if (!g.IsContiguous || g.Count == 0) return false;
        long lo = g.Offset * g.ElementSize, hi = (g.Offset + g.Count) * g.ElementSize;
        int holders = 1;
        foreach (var t in pending.Concat(kept))
        {
            if (!ReferenceEquals(t.Storage, storage)) continue;
            holders++;
            if (t.Count == 0) continue;
            long first = t.Offset, last = t.Offset;
            for (int d = 0; d < t.Rank; d++)
            {
                if (t.Strides[d] < 0) return false;
                last += (t.Shape[d] - 1) * t.Strides[d];
            }
            if (first * t.ElementSize < hi && (last + 1) * t.ElementSize > lo) return false;
        }
        return holders == storage.Users;
    }

    /// <summary>Variables reachable from root, each after every variable that consumes it.</summary>
    private static List<Variable> TopologicalOrder(Variable root)
    {
        var visited = new HashSet<Variable>(ReferenceEqualityComparer.Instance);
        var post = new List<Variable>();
        // Iterative DFS: deep graphs (hundreds of layers × many ops) must not overflow the stack.
        var stack = new Stack<(Variable v, int next)>();
        stack.Push((root, 0));
        visited.Add(root);
        while (stack.Count > 0)
        {
            var (v, next) = stack.Pop();
            var inputs = v.GradFn?.Inputs;
            if (inputs is not null && next < inputs.Count)
            {
                stack.Push((v, next + 1));
                var child = inputs[next];
                if (child.RequiresGrad && visited.Add(child)) stack.Push((child, 0));
                continue;
            }
            post.Add(v);
        }
        post.Reverse();
        return post;
    }
}
