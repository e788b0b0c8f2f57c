using System.Runtime.CompilerServices;
using Parrot.Tensors.Cpu;

[assembly: InternalsVisibleTo("Parrot.Nn.Tests")]
[assembly: InternalsVisibleTo("Parrot.Parrot.Tests")]
[assembly: InternalsVisibleTo("Parrot.Cli.Tests")]

namespace Parrot.Tensors;

/// <summary>Finds the backend for a device. The CPU backend is always present; GPU backends register themselves.</summary>
public static class Backends
{
    private static readonly Dictionary<DeviceKind, Func<int, IBackend>> Factories = new();
    private static readonly Dictionary<Device, IBackend> Instances = new();
    private static readonly Lock Gate = new();

    /// <summary>The backend that computes on <paramref name="device"/>.</summary>
    public static IBackend For(Device device)
    {
        if (device.Kind == DeviceKind.Cpu) return CpuBackend.Instance;
        lock (Gate)
        {
            if (Instances.TryGetValue(device, out var b)) return b;
            if (!Factories.TryGetValue(device.Kind, out var f) && device.Kind == DeviceKind.Cuda) f = Cuda.CudaBackend.Create;
            if (f is null)
                throw new NotSupportedException($"no backend for device {device}: the {device.Kind} backend is not available in this build or on this machine");
            b = f(device.Index);
            Instances[device] = b;
            return b;
        }
    }

    /// <summary>
    /// Tests only (tests/Shared/TestDevice.cs): binds one device identity to a backend instance, e.g. a backend that
    /// computes with the CPU kernels but owns its own memory, so a model moved there fails on any tensor left behind.
    /// </summary>
    internal static void RegisterInstance(Device device, IBackend backend)
    {
        lock (Gate) Instances[device] = backend;
    }

    /// <summary>Registers the factory of a non-CPU backend.</summary>
    public static void Register(DeviceKind kind, Func<int, IBackend> factory)
    {
        lock (Gate) Factories[kind] = factory;
    }
}
