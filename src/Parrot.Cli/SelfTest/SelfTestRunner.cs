using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Parrot.Tensors;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// Runs every <see cref="SelfTestCases"/> op in float32 and bfloat16 on a device and compares it with the CPU
/// backend in the same dtype and with the CPU's float64 computation on the same (rounded) inputs, by the
/// norm-wise relative error ‖out − ref‖ / ‖ref‖. NaN never passes; integer and Bool results must match exactly.
/// </summary>
internal static class SelfTestRunner
{
    /// <summary>float32 tolerance (relative, norm-wise), against both references.</summary>
    internal const double F32Tolerance = 1e-5;

    /// <summary>bfloat16 tolerance: 8 bits of mantissa round each stored result by up to 2⁻⁹.</summary>
    internal const double Bf16Tolerance = 1e-2;

    internal sealed record Row(string Op, string DType, double ErrorVsF64, double ErrorVsCpu, double Tolerance, string Status, string Message, double Milliseconds);

    internal static List<Row> Run(Device device, ulong seed, string? filter, TextWriter log)
    {
        var rows = new List<Row>();
        foreach (var c in SelfTestCases.All)
        {
            if (filter is not null && !c.Name.Contains(filter, StringComparison.OrdinalIgnoreCase)) continue;
            foreach (var dtype in c.Only ?? [DType.F32, DType.BF16])
            {
                var row = RunOne(c, dtype, device, seed);
                rows.Add(row);
                log.WriteLine(Format(row));
            }
        }
        return rows;
    }

    private static Row RunOne(SelfTestCase c, DType dtype, Device device, ulong seed)
    {
        double tol = c.Exact ? 0 : c.Tolerance ?? (dtype == DType.F32 ? F32Tolerance : Bf16Tolerance);
        string dn = dtype.Name();
        var rng = new Random(unchecked((int)seed * 31 + StableHash(c.Name) * 7 + (int)dtype));
        var inputs = c.Inputs(rng, dtype);
        var reference = inputs.Select(t => t.DType.IsFloat() ? t.To(DType.F64) : t.Clone()).ToArray();
        try
        {
            double[] f64, cpu, outp;
            using (var r = c.Run(reference)) f64 = r.ToDoubleArray();
            using (var r = c.Run(inputs)) cpu = r.ToDoubleArray();
            var sw = Stopwatch.StartNew();
            if (device.Kind == DeviceKind.Cpu) outp = cpu;
            else
            {
                var onDevice = inputs.Select(t => t.To(device)).ToArray();
                try
                {
                    using var r = c.Run(onDevice);
                    outp = r.ToDoubleArray();
                }
                catch (NotSupportedException e)
                {
                    return new Row(c.Name, dn, double.NaN, double.NaN, tol, "MISSING", e.Message, 0);
                }
                finally
                {
                    foreach (var t in onDevice) t.Dispose();
                }
            }
            double ms = sw.Elapsed.TotalMilliseconds;
            double e64 = Error(outp, f64), ecpu = Error(outp, cpu);
            bool pass = c.Exact ? e64 == 0 && ecpu == 0 : e64 <= tol && ecpu <= tol;
            return new Row(c.Name, dn, e64, ecpu, tol, pass ? "PASS" : "FAIL", pass ? "" : $"error {e64:G3} vs float64 and {ecpu:G3} vs cpu exceeds {tol:G3}", ms);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new Row(c.Name, dn, double.NaN, double.NaN, tol, "FAIL", $"{e.GetType().Name}: {e.Message}", 0);
        }
        finally
        {
            foreach (var t in inputs) t.Dispose();
            foreach (var t in reference) t.Dispose();
        }
    }

    /// <summary>‖out − ref‖ / ‖ref‖ (the plain norm of the difference when ref is zero); NaN when a value is NaN or the shapes differ.</summary>
    internal static double Error(double[] output, double[] reference)
    {
        if (output.Length != reference.Length) return double.NaN;
        double num = 0, den = 0;
        for (int i = 0; i < output.Length; i++)
        {
            double o = output[i], r = reference[i];
            if (double.IsNaN(o) != double.IsNaN(r)) return double.NaN;
            if (double.IsNaN(o) || (double.IsInfinity(r) && o == r)) continue;
            num += (o - r) * (o - r);
            den += r * r;
        }
        if (double.IsNaN(num) || double.IsInfinity(num)) return double.NaN;
        return den > 0 ? Math.Sqrt(num / den) : Math.Sqrt(num);
    }

    private static int StableHash(string s)
    {
        int h = 17;
        foreach (char ch in s) h = unchecked(h * 31 + ch);
        return h;
    }

    internal static string Header => $"{"op",-34} {"dtype",-9} {"err vs f64",11} {"err vs cpu",11} {"tolerance",10}  status";

    internal static string Format(Row r) =>
        string.Create(CultureInfo.InvariantCulture, $"{r.Op,-34} {r.DType,-9} {Num(r.ErrorVsF64),11} {Num(r.ErrorVsCpu),11} {Num(r.Tolerance),10}  {r.Status}{(r.Message.Length > 0 ? "  " + Short(r.Message) : "")}");

    private static string Num(double v) => double.IsNaN(v) ? "-" : v.ToString("0.00E+00", CultureInfo.InvariantCulture);

    private static string Short(string m) { var l = m.Split('\n')[0]; return l.Length > 140 ? l[..140] + "…" : l; }

    internal static string Json(Device device, string description, ulong seed, List<Row> rows)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("device", device.ToString());
            w.WriteString("description", description);
            w.WriteNumber("seed", seed);
            w.WriteNumber("f32_tolerance", F32Tolerance);
            w.WriteNumber("bf16_tolerance", Bf16Tolerance);
            w.WriteNumber("passed", rows.Count(r => r.Status == "PASS"));
            w.WriteNumber("failed", rows.Count(r => r.Status == "FAIL"));
            w.WriteNumber("missing", rows.Count(r => r.Status == "MISSING"));
            w.WriteStartArray("cases");
            foreach (var r in rows)
            {
                w.WriteStartObject();
                w.WriteString("op", r.Op);
                w.WriteString("dtype", r.DType);
                Number(w, "error_vs_f64", r.ErrorVsF64);
                Number(w, "error_vs_cpu", r.ErrorVsCpu);
                w.WriteNumber("tolerance", r.Tolerance);
                w.WriteString("status", r.Status);
                w.WriteString("message", r.Message);
                w.WriteNumber("milliseconds", Math.Round(r.Milliseconds, 3));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void Number(Utf8JsonWriter w, string name, double v)
    {
        if (double.IsNaN(v)) w.WriteNull(name);
        else w.WriteNumber(name, v);
    }
}
