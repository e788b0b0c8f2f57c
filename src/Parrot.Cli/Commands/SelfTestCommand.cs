using System.CommandLine;
using Parrot.Cli.SelfTest;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;

namespace Parrot.Cli;

/// <summary>
/// `parrot selftest --device cpu|cuda[:N] [--out FILE.json] [--seed N] [--op TEXT]`: every backend op on seeded
/// random inputs against the CPU backend and the CPU's float64 computation, as a pass/fail table with the
/// errors and tolerances; exit 1 when any op fails. Ops the device's backend does not implement yet are listed
/// as MISSING (not a failure). Without a usable GPU, `--device cuda` says "--device cuda: no CUDA device: why" and exits 2,
/// as every model command does.
/// </summary>
internal static class SelfTestCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
        var output = new Option<string?>("--out") { Description = "Also write the results as JSON to this file" };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the random inputs", DefaultValueFactory = _ => 1 };
        var op = new Option<string?>("--op") { Description = "Only the ops whose name contains this text" };
        var bench = new Option<string?>("--bench") { Description = "On a GPU, also time bf16 GEMM, a device copy and attention and write the figures as JSON to this file" };
        var benchGroup = new Option<string?>("--bench-group") { Description = "With --bench, only this group of rows: decode-attention (the decode attention kernels at 160/4096/32768 keys) or decode-gemv (the 7B decode products, each K split)" };
        var command = new Command("selftest", "Check every op of a device's backend against the CPU reference");
        command.Options.Add(device);
        command.Options.Add(output);
        command.Options.Add(seed);
        command.Options.Add(op);
        command.Options.Add(bench);
        command.Options.Add(benchGroup);
        command.SetAction(p => CliErrors.Run("selftest", () => Run(p.GetValue(device)!, p.GetValue(output), p.GetValue(seed), p.GetValue(op), p.GetValue(bench), p.GetValue(benchGroup))));
        return command;
    }

    private static int Run(string deviceText, string? output, ulong seed, string? filter, string? benchOut, string? benchGroup)
    {
        // A device that does not parse or cannot be used is a usage error like every model command's (exit 2); it gave exit 1,
        // its message without the option's name.
        var device = DeviceOption.Resolve(deviceText, "selftest");
        if (benchOut is not null && device.Kind != DeviceKind.Cuda) throw new CliException("--bench needs a GPU device (--device cuda)");
        if (benchGroup is not null && (benchOut is null || !DeviceBench.Groups.Contains(benchGroup)))
            throw new CliException($"--bench-group needs --bench and one of: {string.Join(", ", DeviceBench.Groups)} (got '{benchGroup}')");
        string description = "CPU backend (SIMD C#)";
        if (device.Kind == DeviceKind.Cuda)
        {
            if (Backends.For(device) is CudaBackend cuda) description = cuda.Description;
        }
        Console.WriteLine($"parrot selftest on {device}: {description}");
        if (device.Kind == DeviceKind.Cuda && Backends.For(device) is CudaBackend compiling)
        {
            var (files, seconds) = compiling.PrecompileKernels();
            Console.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"kernels: {files} files compiled or read from the cache in {seconds:F1} s (in parallel)"));
        }
        Console.WriteLine(SelfTestRunner.Header);
        var rows = SelfTestRunner.Run(device, seed, filter, Console.Out);
        if (rows.Count == 0) throw new CliException($"no op matches --op '{filter}'");
        int passed = rows.Count(r => r.Status == "PASS"), failed = rows.Count(r => r.Status == "FAIL"), missing = rows.Count(r => r.Status == "MISSING");
        if (device.Kind == DeviceKind.Cuda && Backends.For(device) is CudaBackend c)
            Console.WriteLine($"device memory: {c.BytesInUse} bytes in use, {c.BytesCached} cached, peak {c.PeakBytesInUse}");
        Console.WriteLine($"selftest {device}: {passed} passed, {failed} failed, {missing} not implemented on this device");
        if (output is not null)
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(output));
            if (dir is not null) Directory.CreateDirectory(dir);
            global::Parrot.Tensors.Formats.AtomicFile.WriteAllText(output, SelfTestRunner.Json(device, description, seed, rows));
        }
        if (benchOut is not null && Backends.For(device) is CudaBackend gpu)
        {
            var dir = Path.GetDirectoryName(Path.GetFullPath(benchOut));
            if (dir is not null) Directory.CreateDirectory(dir);
            // Written after every row, so a run cut short by a time limit still leaves the rows it finished.
            void Save(IReadOnlyList<DeviceBench.Result> done) => global::Parrot.Tensors.Formats.AtomicFile.WriteAllText(benchOut, DeviceBench.Json(description, done));
            try { Save(DeviceBench.Run(gpu, device, Console.Out, Save, benchGroup)); }
            catch (CudaException e) { throw new CliException($"benchmarks stopped: {e.Message}"); }
        }
        return failed > 0 ? 1 : 0;
    }
}
