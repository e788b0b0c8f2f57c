using System.CommandLine;
using Parrot.Tensors;

namespace Parrot.Cli;

/// <summary>
/// `--device cpu|cuda|cuda:N` of the model commands (forward, generate, vision, chat, eval, train). The CPU runs as
/// before. A CUDA device is checked first, so a machine without one gets "no CUDA device: why" (no driver, no GPU,
/// a bad ordinal); where a GPU is usable the commands still refuse it, naming what is missing: the models create
/// their inputs, masks, RoPE tables and KV caches on the CPU (docs/cuda.md, "Not done yet"), while
/// <c>Module.To(device)</c> can already move their parameters.
/// </summary>
internal static class DeviceOption
{
    /// <summary>The option, "cpu" by default.</summary>
    public static Option<string> Create() => new("--device") { Description = "cpu, cuda or cuda:N (the model commands run on the CPU for now)", DefaultValueFactory = _ => "cpu" };

    /// <summary>The device to run <paramref name="command"/> on: the CPU, or a <see cref="CliException"/> that says why not.</summary>
    public static Device Resolve(string? text, string command)
    {
        Device device;
        try { device = Device.Parse(text ?? "cpu"); }
        catch (FormatException) { throw new CliException($"--device: '{text}' is not a device; expected cpu, cuda or cuda:N"); }
        if (device.Kind == DeviceKind.Cpu) return device;
        try { _ = Backends.For(device); }
        catch (NotSupportedException e) { throw new CliException($"--device {text}: {e.Message}"); }
        throw new CliException($"--device {text}: {device} is usable, but parrot {command} runs models on the CPU only for now " +
                               "(inputs, masks, RoPE tables and KV caches are created on the CPU; see docs/cuda.md); use --device cpu");
    }
}
