using System.CommandLine;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// `--device cpu|cuda|cuda:N` of the model commands (forward, generate, vision, chat, eval, train, train-lm, pretrain-vision, serve, and the benches). The CPU
/// is the default. A CUDA device is checked before any model is opened, so a machine without one gets "no CUDA device:
/// why" (no driver, no GPU, a bad ordinal); with one, the command loads the weights on the host, moves the model there
/// (<c>Module.To</c>), and the model makes its inputs, masks, RoPE tables and KV caches on that device.
/// </summary>
internal static class DeviceOption
{
    /// <summary>The option, "cpu" by default.</summary>
    public static Option<string> Create() => new("--device") { Description = "cpu, cuda or cuda:N: where the model computes", DefaultValueFactory = _ => "cpu" };

    /// <summary>
    /// The device to run <paramref name="command"/> on, or a <see cref="CliException"/> that says why it cannot be used;
    /// with <paramref name="open"/> false only the text is checked (the training commands first map a GPU to each rank:
    /// <see cref="DistributedCli.ResolveDevice"/>).
    /// </summary>
    public static Device Resolve(string? text, string command, bool open = true)
    {
        Device device;
        try { device = Device.Parse(text ?? "cpu"); }
        catch (FormatException) { throw new CliException($"--device: '{text}' is not a device; expected cpu, cuda or cuda:N"); }
        if (device.Kind == DeviceKind.Cpu || !open) return device;
        try { _ = Backends.For(device); }
        catch (NotSupportedException e) { throw new CliException($"--device {text}: {e.Message}"); }
        return device;
    }
}
