namespace Parrot.Tensors;

/// <summary>Kind of device a tensor's storage lives on.</summary>
public enum DeviceKind
{
    /// <summary>Host memory, computed by the SIMD C# kernels.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU, computed by our CUDA kernels and NVIDIA's libraries.</summary>
    Cuda,
}

/// <summary>A device: its kind and, for GPUs, its ordinal.</summary>
public readonly record struct Device(DeviceKind Kind, int Index = 0)
{
    /// <summary>The host.</summary>
    public static readonly Device Cpu = new(DeviceKind.Cpu);

    /// <summary>Parses "cpu", "cuda" or "cuda:N".</summary>
    public static Device Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var t = text.Trim().ToLowerInvariant();
        if (t == "cpu") return Cpu;
        if (t == "cuda") return new Device(DeviceKind.Cuda);
        if (t.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(t.AsSpan(5), out int i) && i >= 0)
            return new Device(DeviceKind.Cuda, i);
        throw new FormatException($"unknown device '{text}': expected cpu, cuda or cuda:N");
    }

    /// <inheritdoc/>
    public override string ToString() => Kind == DeviceKind.Cpu ? "cpu" : $"cuda:{Index}";
}
