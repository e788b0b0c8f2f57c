using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Optim;

/// <summary>
/// Stochastic gradient descent with optional momentum, PyTorch's form: b ← μ·b + g (b = g at the first
/// step), p ← p − lr·b; weight decay (L2, coupled) adds wd·p to the gradient first.
/// </summary>
public sealed class Sgd : Optimizer
{
    private readonly Dictionary<Variable, Tensor> _momentum = new(ReferenceEqualityComparer.Instance);

    /// <summary>Momentum μ (0 = plain SGD).</summary>
    public double Momentum { get; }
    /// <summary>L2 weight decay added to the gradient.</summary>
    public double WeightDecay { get; }

    /// <summary>Creates SGD.</summary>
    public Sgd(IEnumerable<Variable> parameters, double learningRate, double momentum = 0, double weightDecay = 0) : base(parameters, learningRate)
    {
        if (!(momentum >= 0)) throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "momentum must be ≥ 0");
        if (!(weightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "weight decay must be ≥ 0");
        Momentum = momentum; WeightDecay = weightDecay;
    }

    /// <inheritdoc/>
    protected override void Update(Variable parameter, Tensor grad)
    {
        var w = parameter.Value;
        var g = WeightDecay != 0 ? grad + w * WeightDecay : grad;
        if (Momentum != 0)
        {
            if (!_momentum.TryGetValue(parameter, out var buf))
            {
                buf = TensorScope.Detach(g.To(w.DType));
                _momentum[parameter] = buf;
            }
            else buf.CopyFrom(buf * Momentum + g);
            g = buf;
        }
        w.CopyFrom(w - g * LearningRate);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        foreach (var b in _momentum.Values) b.Dispose();
        _momentum.Clear();
    }
}
