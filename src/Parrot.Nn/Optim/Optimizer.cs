using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Optim;

/// <summary>
/// Updates parameters from their gradients. State tensors (moments) are created lazily, kept out of
/// tensor scopes and freed by <see cref="Dispose"/>. Parameters without a gradient are skipped, so
/// frozen parameters cost nothing.
/// </summary>
public abstract class Optimizer : IDisposable
{
    /// <summary>The parameters this optimizer updates.</summary>
    public IReadOnlyList<Variable> Parameters { get; }

    /// <summary>The learning rate of the next step (schedules set it before each step).</summary>
    public double LearningRate { get; set; }

    /// <summary>Number of steps taken (set when a run resumes from a checkpoint: bias correction depends on it).</summary>
    public long StepCount { get; set; }

    /// <summary>Creates an optimizer over <paramref name="parameters"/>.</summary>
    protected Optimizer(IEnumerable<Variable> parameters, double learningRate)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Parameters = parameters.ToList();
        if (Parameters.Count == 0) throw new ArgumentException("optimizer got no parameters");
        foreach (var p in Parameters)
            if (!p.IsLeaf) throw new ArgumentException($"optimizer parameter {p.Describe()} is not a leaf");
        if (!(learningRate >= 0)) throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "learning rate must be ≥ 0");
        LearningRate = learningRate;
    }

    /// <summary>Applies one update to every parameter that has a gradient.</summary>
    public void Step()
    {
        StepCount++;
        using var noGrad = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        BeginStep();
        foreach (var p in Parameters)
        {
            if (p.Grad is not { } g) continue;
            // The update kernels get raw pointers: a gradient on another device than its weight is refused here, by name.
            if (g.Device != p.Value.Device)
                throw new InvalidOperationException($"{GetType().Name}: parameter {p.Value.ShapeString()} is on {p.Value.Device} but its gradient is on {g.Device}");
            Update(p, g);
        }
        EndStep();
    }

    /// <summary>Updates one parameter in place (or queues the update for <see cref="EndStep"/>).</summary>
    protected abstract void Update(Variable parameter, Tensor grad);

    /// <summary>Called once per step before the first <see cref="Update"/> (drops what a step that threw left queued).</summary>
    protected virtual void BeginStep() { }

    /// <summary>Called once per step after every <see cref="Update"/>, inside the step's tensor scope: runs queued updates.</summary>
    protected virtual void EndStep() { }

    /// <summary>Clears the gradients of every parameter.</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters) p.ZeroGrad();
    }

    /// <summary>Frees the optimizer state.</summary>
    public abstract void Dispose();
}
