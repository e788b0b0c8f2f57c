using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Optim;

/// <summary>
/// AdamW with PyTorch's semantics (torch.optim.AdamW, single-tensor path): decoupled weight decay
/// applied to every parameter, bias-corrected moments, ε added after the square root. Moments are
/// kept in float32 (float64 for float64 parameters); the update itself is one fused backend kernel.
/// </summary>
public sealed class AdamW : Optimizer
{
    private readonly Dictionary<Variable, (Tensor M, Tensor V)> _state = new(ReferenceEqualityComparer.Instance);

    /// <summary>β1, the first-moment decay.</summary>
    public double Beta1 { get; }
    /// <summary>β2, the second-moment decay.</summary>
    public double Beta2 { get; }
    /// <summary>ε, added to the denominator.</summary>
    public double Epsilon { get; }
    /// <summary>Decoupled weight decay.</summary>
    public double WeightDecay { get; set; }

    /// <summary>Creates AdamW (defaults as PyTorch's, except weight decay 0 as the Parrot recipe uses).</summary>
    public AdamW(IEnumerable<Variable> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double weightDecay = 0)
        : base(parameters, learningRate)
    {
        if (beta1 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "β1 must be in [0, 1)");
        if (beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "β2 must be in [0, 1)");
        if (!(epsilon >= 0)) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "ε must be ≥ 0");
        if (!(weightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(weightDecay), weightDecay, "weight decay must be ≥ 0");
        Beta1 = beta1; Beta2 = beta2; Epsilon = epsilon; WeightDecay = weightDecay;
        foreach (var p in Parameters)
            if (p.DType is not (DType.F32 or DType.F64))
                throw new ArgumentException($"AdamW updates float32/float64 master weights; {p.Describe()} is {p.DType.Name()} (use MixedPrecision for bf16 models)");
    }

    /// <inheritdoc/>
    protected override void Update(Variable parameter, Tensor grad)
    {
        var w = parameter.Value;
        if (!_state.TryGetValue(parameter, out var st))
        {
            st = (TensorScope.Detach(Tensor.Zeros(w.Shape, w.DType, w.Device)), TensorScope.Detach(Tensor.Zeros(w.Shape, w.DType, w.Device)));
            _state[parameter] = st;
        }
        if (!w.IsContiguous) throw new InvalidOperationException($"AdamW: parameter {parameter.Describe()} is not contiguous");
        var g = grad.IsContiguous ? grad : grad.Contiguous();
        w.Backend.AdamW(w, g, st.M, st.V, new AdamWStep(LearningRate, Beta1, Beta2, Epsilon, WeightDecay, StepCount));
    }

    /// <summary>The first and second moments of a parameter (null before its first update).</summary>
    public (Tensor M, Tensor V)? State(Variable parameter) => _state.TryGetValue(parameter, out var s) ? s : null;

    /// <summary>Restores a parameter's moments (copies of <paramref name="m"/> and <paramref name="v"/>) when resuming a run.</summary>
    public void SetState(Variable parameter, Tensor m, Tensor v)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        var w = parameter.Value;
        if (!m.Shape.SequenceEqual(w.Shape) || !v.Shape.SequenceEqual(w.Shape))
            throw new ArgumentException($"AdamW.SetState: moments {m.ShapeString()}/{v.ShapeString()} do not fit {parameter.Describe()}");
        if (_state.Remove(parameter, out var old)) { old.M.Dispose(); old.V.Dispose(); }
        var ownM = TensorScope.Detach(Tensor.Zeros(w.Shape, w.DType, w.Device));
        var ownV = TensorScope.Detach(Tensor.Zeros(w.Shape, w.DType, w.Device));
        ownM.CopyFrom(m);
        ownV.CopyFrom(v);
        _state[parameter] = (ownM, ownV);
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        foreach (var (m, v) in _state.Values) { m.Dispose(); v.Dispose(); }
        _state.Clear();
    }
}
