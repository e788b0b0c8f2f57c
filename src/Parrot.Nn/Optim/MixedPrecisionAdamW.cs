using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn.Optim;

/// <summary>
/// AdamW for a model whose weights and activations are bf16 (or f16): each such parameter has a float32
/// master copy with float32 moments; the update runs on the master (the bf16 gradient is widened inside
/// the fused kernel) and the parameter receives the master rounded to nearest even. Float32/float64
/// parameters are updated directly. This is the recipe of bf16 training with fp32 master weights.
/// </summary>
public sealed class MixedPrecisionAdamW : Optimizer
{
    private readonly Dictionary<Variable, (Tensor Master, Tensor M, Tensor V)> _state = new(ReferenceEqualityComparer.Instance);

    /// <summary>β1.</summary>
    public double Beta1 { get; }
    /// <summary>β2.</summary>
    public double Beta2 { get; }
    /// <summary>ε.</summary>
    public double Epsilon { get; }
    /// <summary>Decoupled weight decay.</summary>
    public double WeightDecay { get; set; }

    /// <summary>Creates the optimizer; master copies are taken from the current parameter values.</summary>
    public MixedPrecisionAdamW(IEnumerable<Variable> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double weightDecay = 0)
        : base(parameters, learningRate)
    {
        if (beta1 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta1), beta1, "β1 must be in [0, 1)");
        if (beta2 is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(beta2), beta2, "β2 must be in [0, 1)");
        Beta1 = beta1; Beta2 = beta2; Epsilon = epsilon; WeightDecay = weightDecay;
        foreach (var p in Parameters)
        {
            var w = p.Value;
            var masterType = w.DType == DType.F64 ? DType.F64 : DType.F32;
            var master = w.DType == masterType ? null : TensorScope.Detach(w.To(masterType));
            _state[p] = (master ?? w, TensorScope.Detach(Tensor.Zeros(w.Shape, masterType, w.Device)), TensorScope.Detach(Tensor.Zeros(w.Shape, masterType, w.Device)));
        }
    }

    /// <summary>The float32 master copy of a parameter (the parameter itself when it is float32/float64).</summary>
    public Tensor Master(Variable parameter) => _state[parameter].Master;

    /// <summary>The first and second moments of a parameter.</summary>
    public (Tensor M, Tensor V) Moments(Variable parameter) => (_state[parameter].M, _state[parameter].V);

    /// <summary>Restores a parameter's master copy and moments (copied in) when resuming a run; the parameter gets the rounded master.</summary>
    public void SetState(Variable parameter, Tensor master, Tensor m, Tensor v)
    {
        ArgumentNullException.ThrowIfNull(parameter);
        var (ownMaster, ownM, ownV) = _state[parameter];
        ownMaster.CopyFrom(master);
        ownM.CopyFrom(m);
        ownV.CopyFrom(v);
        if (!ReferenceEquals(ownMaster, parameter.Value)) parameter.Value.CopyFrom(ownMaster);
    }

    /// <inheritdoc/>
    protected override void Update(Variable parameter, Tensor grad)
    {
        var (master, m, v) = _state[parameter];
        var g = grad.IsContiguous ? grad : grad.Contiguous();
        var step = new AdamWStep(LearningRate, Beta1, Beta2, Epsilon, WeightDecay, StepCount);
        var w = parameter.Value;
        if (!ReferenceEquals(master, w) && w.DType == DType.BF16 && w.IsContiguous && master.Backend is Parrot.Tensors.Cuda.CudaBackend cuda)
        {
            // The rounded bf16 weights are written in the same pass (round to nearest even, as CopyFrom). Small
            // tensors (norms, biases, attention projections) wait for EndStep and share launches.
            if (master.Count < SharedLaunchBelow) _queued.Add((cuda, new Parrot.Tensors.Cuda.CudaBackend.AdamWTensor(master, g, m, v, w)));
            else cuda.AdamW(master, g, m, v, step, w);
            return;
        }
        master.Backend.AdamW(master, g, m, v, step);
        if (!ReferenceEquals(master, w)) w.CopyFrom(master);
    }

    /// <summary>Below this many elements a CUDA parameter's update shares a launch with others (AdamWMulti): alone, it
    /// would leave most of the GPU idle for a launch; a large one sharing a launch would hold its shares' blocks back.</summary>
    private const long SharedLaunchBelow = 1 << 20;

    private readonly List<(Parrot.Tensors.Cuda.CudaBackend Backend, Parrot.Tensors.Cuda.CudaBackend.AdamWTensor Entry)> _queued = new();

    /// <inheritdoc/>
    protected override void BeginStep() => _queued.Clear(); // a failed step's entries hold gradients its scope freed

    /// <inheritdoc/>
    protected override void EndStep()
    {
        if (_queued.Count == 0) return;
        var step = new AdamWStep(LearningRate, Beta1, Beta2, Epsilon, WeightDecay, StepCount);
        try
        {
            foreach (var group in _queued.GroupBy(q => q.Backend))
                group.Key.AdamWMulti(group.Select(q => q.Entry).ToList(), step);
        }
        finally { _queued.Clear(); }
    }

    /// <inheritdoc/>
    public override void Dispose()
    {
        foreach (var (p, (master, m, v)) in _state)
        {
            if (!ReferenceEquals(master, p.Value)) master.Dispose();
            m.Dispose(); v.Dispose();
        }
        _state.Clear();
    }
}
