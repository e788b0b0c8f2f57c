namespace Parrot.Tensors;

/// <summary>
/// Frees the temporaries of a block of code: every tensor created on this thread while the scope is
/// the innermost one is disposed when the scope is, unless it was handed to <see cref="Keep"/> (which
/// moves it to the enclosing scope, or out of scope management when there is none).
/// <code>
/// using (var scope = TensorScope.Begin())
/// {
///     var y = scope.Keep((x * 2f + 1f).Exp());   // the two temporaries are freed, y survives
/// }
/// </code>
/// </summary>
public sealed class TensorScope : IDisposable
{
    [ThreadStatic] private static TensorScope? _current;

    private readonly TensorScope? _outer;
    private readonly List<Tensor> _owned = new();
    private bool _disposed;

    private TensorScope(TensorScope? outer) => _outer = outer;

    /// <summary>Opens a scope that becomes the innermost one on this thread.</summary>
    public static TensorScope Begin() => _current = new TensorScope(_current);

    /// <summary>The innermost open scope on this thread, if any.</summary>
    public static TensorScope? Current => _current;

    internal static void Register(Tensor t) => _current?._owned.Add(t);

    /// <summary>Exempts <paramref name="t"/> from this scope; it joins the enclosing scope if there is one.</summary>
    public Tensor Keep(Tensor t)
    {
        int i = _owned.LastIndexOf(t);
        if (i >= 0) _owned.RemoveAt(i);
        _outer?._owned.Add(t);
        return t;
    }

    /// <summary>
    /// Takes <paramref name="t"/> out of scope management altogether (whichever open scope on this thread
    /// owns it): the caller becomes responsible for disposing it. Long-lived state made inside a scope —
    /// gradients of parameters, optimizer moments, saved activations of an autograd graph — uses this.
    /// </summary>
    public static Tensor Detach(Tensor t)
    {
        for (var s = _current; s is not null; s = s._outer)
        {
            int i = s._owned.LastIndexOf(t);
            if (i >= 0) { s._owned.RemoveAt(i); break; }
        }
        return t;
    }

    /// <summary>Disposes every tensor this scope owns and restores the enclosing scope.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (!ReferenceEquals(_current, this))
            throw new InvalidOperationException("TensorScope disposed out of order: inner scopes must be disposed first");
        _current = _outer;
        foreach (var t in _owned) t.Dispose();
        _owned.Clear();
    }
}
