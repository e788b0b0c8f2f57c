using Parrot.Tensors;

namespace Parrot.Autograd;

/// <summary>
/// Computes one op's input gradients from its output gradient. Returns one tensor per input, or null
/// for inputs that need none (<see cref="Node.NeedsGrad"/> tells which do).
/// </summary>
public delegate Tensor?[] BackwardRule(Node node, Tensor gradOutput);

/// <summary>
/// A recorded op: its inputs, the tensors its backward rule saved, and the rule. Saved tensors are
/// private references (views) released as soon as the rule has run, so activations go away while
/// backward proceeds, not when the whole graph is dropped.
/// </summary>
public sealed class Node
{
    private readonly BackwardRule _rule;
    private Tensor[]? _saved;

    /// <summary>The op's name, for error messages.</summary>
    public string Name { get; }

    /// <summary>The op's inputs, in order.</summary>
    public IReadOnlyList<Variable> Inputs { get; }

    internal Node(string name, Variable[] inputs, Tensor[] saved, BackwardRule rule)
    {
        Name = name;
        Inputs = inputs;
        _rule = rule;
        // Own references (views) to what backward needs, released in Run. They belong to the scope the
        // forward pass runs in, so a graph that never sees a backward pass cannot leak its activations.
        _saved = new Tensor[saved.Length];
        for (int i = 0; i < saved.Length; i++) _saved[i] = saved[i].Alias();
    }

    /// <summary>Whether input <paramref name="i"/> needs a gradient.</summary>
    public bool NeedsGrad(int i) => Inputs[i].RequiresGrad;

    /// <summary>
    /// A tensor of input <paramref name="i"/>'s shape (any strides, its dtype and device) to write that input's gradient
    /// into instead of a new tensor, or null. Only for inputs that need a gradient, and only the first rule to ask gets
    /// it (a region of a buffer the producer of the input gathers its gradients in: SplitLinear's packed q/k/v). A rule
    /// that takes it must write every element and return that tensor as the input's gradient (or null: then the region
    /// counts as no gradient), and must not read its own output gradient from it.
    /// </summary>
    public Tensor? GradientTarget(int i) => NeedsGrad(i) ? Inputs[i].ClaimGradientTarget() : null;

    /// <summary>Saved tensor <paramref name="i"/>.</summary>
    public Tensor Saved(int i)
    {
        var s = _saved ?? throw new InvalidOperationException($"backward of {Name} ran already and released its saved tensors; run the forward pass again before another Backward");
        if (s[i].IsDisposed)
            throw new InvalidOperationException($"backward of {Name}: its saved tensors were freed when the TensorScope of the forward pass ended; call Backward inside that scope");
        return s[i];
    }

    internal Tensor?[] Run(Tensor gradOutput)
    {
        var grads = _rule(this, gradOutput);
        if (grads.Length != Inputs.Count) throw new InvalidOperationException($"backward of {Name} returned {grads.Length} gradients for {Inputs.Count} inputs");
        ReleaseSaved();
        return grads;
    }

    internal void ReleaseSaved()
    {
        var s = _saved;
        _saved = null;
        if (s is null) return;
        foreach (var t in s) t.Dispose();
    }
}
