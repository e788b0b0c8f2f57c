using Parrot.Autograd;
using Parrot.Tensors;

namespace Parrot.Nn;

/// <summary>
/// A layer or model: named parameters, buffers and child modules. Names compose with dots exactly as
/// PyTorch's state dicts do, so <c>NamedParameters()</c> of a Qwen2 model yields
/// <c>model.layers.0.self_attn.q_proj.weight</c> and checkpoints load by name without conversion.
/// Parameters and buffers are long-lived: they are kept out of tensor scopes and freed by <see cref="Dispose"/>.
/// </summary>
public abstract class Module : IDisposable
{
    private readonly List<(string Name, Variable Param)> _parameters = new();
    private readonly List<(string Name, Tensor Buffer, bool Persistent)> _buffers = new();
    private readonly List<(string Name, Module Child)> _children = new();

    /// <summary>True in training mode (dropout active); see <see cref="Train"/> and <see cref="Eval"/>.</summary>
    public bool Training { get; private set; } = true;

    /// <summary>Registers a parameter (a leaf requiring gradients). The module owns <paramref name="value"/>.</summary>
    protected Variable AddParameter(string name, Tensor value)
    {
        CheckName(name);
        var p = new Variable(TensorScope.Detach(value), requiresGrad: true, name: name);
        _parameters.Add((name, p));
        return p;
    }

    /// <summary>Registers a buffer: state that is not trained (persistent ones are part of the state dict).</summary>
    protected Tensor AddBuffer(string name, Tensor value, bool persistent = true)
    {
        CheckName(name);
        _buffers.Add((name, TensorScope.Detach(value), persistent));
        return value;
    }

    /// <summary>Registers a child module under <paramref name="name"/>.</summary>
    protected T AddModule<T>(string name, T child) where T : Module
    {
        CheckName(name);
        _children.Add((name, child));
        return child;
    }

    private void CheckName(string name)
    {
        if (string.IsNullOrEmpty(name) || name.Contains('.'))
            throw new ArgumentException($"invalid member name '{name}': must be non-empty and without dots");
        if (_parameters.Any(p => p.Name == name) || _buffers.Any(b => b.Name == name) || _children.Any(c => c.Name == name))
            throw new ArgumentException($"{GetType().Name} already has a member named '{name}'");
    }

    /// <summary>Direct children with their names.</summary>
    public IEnumerable<(string Name, Module Child)> NamedChildren() => _children;

    /// <summary>Every parameter of this module and its descendants, with its full dotted name.</summary>
    public IEnumerable<(string Name, Variable Parameter)> NamedParameters(string prefix = "")
    {
        foreach (var (n, p) in _parameters) yield return (prefix + n, p);
        foreach (var (n, c) in _children)
            foreach (var x in c.NamedParameters(prefix + n + ".")) yield return x;
    }

    /// <summary>Every parameter, in registration order.</summary>
    public IEnumerable<Variable> Parameters() => NamedParameters().Select(p => p.Parameter);

    /// <summary>Every parameter that requires a gradient.</summary>
    public IEnumerable<Variable> TrainableParameters() => Parameters().Where(p => p.RequiresGrad);

    /// <summary>Every buffer with its full dotted name.</summary>
    public IEnumerable<(string Name, Tensor Buffer, bool Persistent)> NamedBuffers(string prefix = "")
    {
        foreach (var (n, b, ps) in _buffers) yield return (prefix + n, b, ps);
        foreach (var (n, c) in _children)
            foreach (var x in c.NamedBuffers(prefix + n + ".")) yield return x;
    }

    /// <summary>Every module in the tree (this one first) with its dotted path.</summary>
    public IEnumerable<(string Name, Module Module)> NamedModules(string prefix = "")
    {
        yield return (prefix.TrimEnd('.'), this);
        foreach (var (n, c) in _children)
            foreach (var x in c.NamedModules(prefix + n + ".")) yield return x;
    }

    /// <summary>Total number of parameter elements.</summary>
    public long ParameterCount() => Parameters().Sum(p => p.Value.Count);

    /// <summary>Switches this module and its descendants to training mode.</summary>
    public void Train(bool on = true)
    {
        foreach (var (_, m) in NamedModules()) m.Training = on;
    }

    /// <summary>Switches to evaluation mode (dropout off).</summary>
    public void Eval() => Train(false);

    /// <summary>Turns gradients off for every parameter whose name starts with <paramref name="prefix"/> (all when empty); returns how many.</summary>
    public int Freeze(string prefix = "") => SetRequiresGrad(prefix, false);

    /// <summary>Turns gradients back on for parameters whose name starts with <paramref name="prefix"/>; returns how many.</summary>
    public int Unfreeze(string prefix = "") => SetRequiresGrad(prefix, true);

    private int SetRequiresGrad(string prefix, bool on)
    {
        int n = 0;
        foreach (var (name, p) in NamedParameters())
            if (name.StartsWith(prefix, StringComparison.Ordinal)) { p.RequiresGrad = on; if (!on) p.ZeroGrad(); n++; }
        return n;
    }

    /// <summary>Clears every parameter's gradient.</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters()) p.ZeroGrad();
    }

    /// <summary>Parameters and persistent buffers by name (views of the live tensors, not copies).</summary>
    public Dictionary<string, Tensor> StateDict()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (n, p) in NamedParameters()) d[n] = p.Value;
        foreach (var (n, b, persistent) in NamedBuffers()) if (persistent) d[n] = b;
        return d;
    }

    /// <summary>
    /// Copies tensors into parameters and persistent buffers by name (converting dtypes). With
    /// <paramref name="strict"/>, any missing, unexpected or mis-shaped entry is an error that lists all of
    /// them; otherwise mis-shaped entries are still errors and the missing/unexpected names are returned.
    /// </summary>
    public LoadReport LoadStateDict(IReadOnlyDictionary<string, Tensor> state, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(state);
        var targets = StateDict();
        var missing = targets.Keys.Where(k => !state.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var unexpected = state.Keys.Where(k => !targets.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        var mismatched = targets.Where(kv => state.TryGetValue(kv.Key, out var t) && !t.Shape.SequenceEqual(kv.Value.Shape))
            .Select(kv => $"{kv.Key}: checkpoint {state[kv.Key].ShapeString()}, model {kv.Value.ShapeString()}").ToList();
        if (mismatched.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add($"missing {missing.Count}: {Preview(missing)}");
            if (unexpected.Count > 0) parts.Add($"unexpected {unexpected.Count}: {Preview(unexpected)}");
            if (mismatched.Count > 0) parts.Add($"shape mismatch {mismatched.Count}: {Preview(mismatched)}");
            throw new StateDictException($"LoadStateDict into {GetType().Name}: " + string.Join("; ", parts), missing, unexpected, mismatched);
        }
        foreach (var (k, target) in targets)
            if (state.TryGetValue(k, out var src)) target.CopyFrom(src);
        return new LoadReport(missing, unexpected);

        static string Preview(List<string> xs) => string.Join(", ", xs.Take(20)) + (xs.Count > 20 ? $", ... ({xs.Count - 20} more)" : "");
    }

    /// <summary>
    /// Converts every floating-point parameter of this module and its descendants to <paramref name="dtype"/>
    /// (e.g. BF16 for mixed-precision training or inference); gradients are dropped.
    /// </summary>
    public void CastParameters(DType dtype)
    {
        if (!dtype.IsFloat()) throw new ArgumentException($"CastParameters: {dtype.Name()} is not a float type");
        if (ConvertParameters(p => p.DType != dtype && p.DType.IsFloat(), t => t.To(dtype))) ParametersReplaced();
    }

    /// <summary>
    /// Gives each parameter that <paramref name="needs"/> it a new value, <paramref name="convert"/> of its value (the old
    /// one is freed). Parameters that are consecutive row views of one buffer (a packed layout: Attention's q/k/v) are
    /// converted as one tensor and stay row views of one buffer, so a move or a cast allocates each tensor once and keeps
    /// the layout. Returns whether anything changed.
    /// </summary>
    private bool ConvertParameters(Func<Variable, bool> needs, Func<Tensor, Tensor> convert)
    {
        bool changed = false;
        var todo = Parameters().Distinct().Where(needs).ToList();
        foreach (var group in todo.GroupBy(p => p.Value.Storage))
        {
            var ps = group.OrderBy(p => p.Value.Offset).ToArray();
            using var joined = ps.Length > 1 ? Tensor.ConcatView(0, ps.Select(p => p.Value).ToArray()) : null;
            if (joined is null)
            {
                foreach (var p in ps) Replace(p, TensorScope.Detach(convert(p.Value)));
                changed = true;
                continue;
            }
            using var converted = TensorScope.Detach(convert(joined));
            int at = 0;
            foreach (var p in ps)
            {
                int rows = p.Shape[0];
                Replace(p, TensorScope.Detach(converted.Narrow(0, at, rows)));
                at += rows;
            }
            changed = true;
        }
        return changed;

        static void Replace(Variable p, Tensor value)
        {
            var old = p.Value;
            p.ReplaceValue(value);
            old.Dispose();
        }
    }

    /// <summary>
    /// Called on every module of a tree after <see cref="To"/>, <see cref="CastParameters"/> or
    /// <see cref="ModelLoading.Load"/> gave parameters tensors of their own: a layer that keeps its parameters in a layout
    /// of its own restores it (<see cref="Layers.Attention"/> packs its q/k/v projections into one buffer again).
    /// </summary>
    protected virtual void OnParametersReplaced() { }

    /// <summary>Runs <see cref="OnParametersReplaced"/> on this module and its descendants.</summary>
    internal void ParametersReplaced()
    {
        foreach (var (_, m) in NamedModules()) m.OnParametersReplaced();
    }

    /// <summary>
    /// Moves every parameter and buffer of this module and its descendants to <paramref name="device"/> (copies;
    /// the old tensors are freed, gradients dropped; packed parameters move as one tensor and stay packed); tensors
    /// already there stay. The device's backend is created
    /// first, so an unusable device (no CUDA driver or GPU, a bad ordinal) throws before anything moves: a
    /// <see cref="NotSupportedException"/> whose message says why. Returns this module.
    /// </summary>
    public Module To(Device device)
    {
        _ = Backends.For(device);
        bool moved = ConvertParameters(p => p.Value.Device != device, t => t.To(device));
        foreach (var (_, m) in NamedModules())
            for (int i = 0; i < m._buffers.Count; i++)
            {
                var (name, b, persistent) = m._buffers[i];
                if (b.Device == device) continue;
                m._buffers[i] = (name, TensorScope.Detach(b.To(device)), persistent);
                b.Dispose();
            }
        if (moved) ParametersReplaced();
        return this;
    }

    /// <summary>The device of the first parameter (the CPU for a module without parameters).</summary>
    public Device Device => Parameters().Select(p => p.Value.Device).FirstOrDefault(Device.Cpu);

    /// <summary>Frees parameters and buffers of this module and its descendants.</summary>
    public virtual void Dispose()
    {
        foreach (var (_, p) in _parameters) { p.Value.Dispose(); p.ZeroGrad(); }
        foreach (var (_, b, _) in _buffers) b.Dispose();
        foreach (var (_, c) in _children) c.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>What a non-strict <see cref="Module.LoadStateDict"/> left out.</summary>
public sealed record LoadReport(IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected);

/// <summary>A state dict did not fit a module; lists every problem.</summary>
public sealed class StateDictException(string message, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> mismatched)
    : Exception(message)
{
    /// <summary>Names the module expects but the state dict lacks.</summary>
    public IReadOnlyList<string> Missing { get; } = missing;
    /// <summary>Names the state dict has but the module does not.</summary>
    public IReadOnlyList<string> Unexpected { get; } = unexpected;
    /// <summary>Entries whose shapes differ, described.</summary>
    public IReadOnlyList<string> Mismatched { get; } = mismatched;
}
