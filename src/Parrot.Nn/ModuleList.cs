namespace Parrot.Nn;

/// <summary>An ordered list of child modules named "0", "1", … (PyTorch's nn.ModuleList).</summary>
public sealed class ModuleList : Module
{
    private readonly List<Module> _items = new();

    /// <summary>Number of modules.</summary>
    public int Count => _items.Count;

    /// <summary>Module <paramref name="i"/>.</summary>
    public Module this[int i] => _items[i];

    /// <summary>Appends a module under the next index.</summary>
    public T Add<T>(T module) where T : Module
    {
        AddModule(_items.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), module);
        _items.Add(module);
        return module;
    }
}
