using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Parrot.Tensors.Cuda;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Programmatic dependent launch (CudaKernels.ProgrammaticKernels): the launch structures match cuda.h's layout, the
/// default follows the GPU and driver, and every kernel launched that way reaches pdl_wait in its source — a kernel
/// listed without it could read its predecessor's output before it is written. (Whether the GPU overlaps the kernels
/// is measured by `parrot selftest --device cuda`: the static decode step from a CUDA graph equals the eager step.)
/// </summary>
public class ProgrammaticLaunchTests
{
    [Test]
    public void LaunchStructuresHaveCudaHsLayout()
    {
        Assert.That(Marshal.SizeOf<Driver.LaunchAttribute>(), Is.EqualTo(72), "id, pad to 8, a 64-byte value union");
        Assert.That(Marshal.OffsetOf<Driver.LaunchAttribute>(nameof(Driver.LaunchAttribute.Value)).ToInt32(), Is.EqualTo(8));
        Assert.That(Marshal.SizeOf<Driver.LaunchConfig>(), Is.EqualTo(56));
        Assert.That(Marshal.OffsetOf<Driver.LaunchConfig>(nameof(Driver.LaunchConfig.SharedBytes)).ToInt32(), Is.EqualTo(24));
        Assert.That(Marshal.OffsetOf<Driver.LaunchConfig>(nameof(Driver.LaunchConfig.Stream)).ToInt32(), Is.EqualTo(32));
        Assert.That(Marshal.OffsetOf<Driver.LaunchConfig>(nameof(Driver.LaunchConfig.Attributes)).ToInt32(), Is.EqualTo(40));
        Assert.That(Marshal.OffsetOf<Driver.LaunchConfig>(nameof(Driver.LaunchConfig.AttributeCount)).ToInt32(), Is.EqualTo(48));
    }

    [TestCase(9, 12030, 90, true)]
    [TestCase(10, 13000, 100, true)]
    [TestCase(8, 13000, 80, false)]
    [TestCase(9, 12020, 90, false)]
    [TestCase(9, 13000, 86, false)] // an NVRTC that does not know sm_90 builds compute_86 PTX: pdl_wait is empty there
    [TestCase(9, 13000, 0, false)]  // fatbins or no NVRTC: the target is unknown
    public void SupportedOnHopperWithACuda123DriverAndSm90Kernels(int major, int driver, int kernelArch, bool expected) =>
        Assert.That(CudaKernels.ProgrammaticSupported(major, driver, kernelArch), Is.EqualTo(expected));

    [TestCase("1", true)]
    [TestCase(null, true)]
    [TestCase("", true)]
    [TestCase("0", false)]
    [TestCase(" 0 ", false)]
    public void OnUnlessPdl0(string? env, bool expected) => Assert.That(CudaKernels.ProgrammaticRequested(env), Is.EqualTo(expected));

    [Test]
    public void KernelArchIsTheNvrtcTargetsNumber()
    {
        if (!NvrtcCompiler.IsAvailable(out var why)) Assert.Ignore($"NVRTC is not installed: {why}");
        Assert.That(KernelCache.KernelArch(9, 0), Is.EqualTo(90), "NVRTC 11.8+ knows sm_90");
        Assert.That(KernelCache.KernelArch(8, 0), Is.EqualTo(80));
    }

    [Test]
    public void TheConstantWeightScopeNests()
    {
        // Launches are programmatic only inside the scope (tested through its counter: no GPU here).
        using (CudaBackend.ConstantWeightScope())
        {
            Assert.That(CudaKernels.InConstantWeightScope, Is.True);
            using (CudaBackend.ConstantWeightScope()) Assert.That(CudaKernels.InConstantWeightScope, Is.True);
            Assert.That(CudaKernels.InConstantWeightScope, Is.True, "the outer scope is still open");
        }
        Assert.That(CudaKernels.InConstantWeightScope, Is.False);
        var scope = CudaBackend.ConstantWeightScope();
        scope.Dispose();
        scope.Dispose(); // twice: counted once
        Assert.That(CudaKernels.InConstantWeightScope, Is.False);
    }

    [Test]
    public void EveryProgrammaticKernelWaitsForItsPredecessor()
    {
        var source = new KernelSourceIndex();
        foreach (var kernel in CudaKernels.ProgrammaticKernels)
        {
            Assert.That(source.IsKernel(kernel), Is.True, $"{kernel} is listed but no native/*.cu defines it");
            Assert.That(source.ReachesWait(kernel), Is.True, $"{kernel} is launched programmatically but never calls pdl_wait()");
        }
    }

    [Test]
    public void TheCheckFindsAKernelWithoutTheWait()
    {
        // The check must be able to fail: binary_packed (elementwise.cu) has no wait, gemv_bf16_1 reaches it through
        // gemv_block → gemv_sums, rms_norm through PDL_ENTRY.
        var source = new KernelSourceIndex();
        Assert.That(source.IsKernel("binary_packed"), Is.True);
        Assert.That(source.ReachesWait("binary_packed"), Is.False);
        Assert.That(source.ReachesWait("gemv_bf16_1"), Is.True);
        Assert.That(source.ReachesWait("rms_norm"), Is.True);
        Assert.That(source.IsKernel("attention_decode_forward_bf16"), Is.True, "a kernel with __launch_bounds__ is found too");
        Assert.That(CudaKernels.ProgrammaticKernels, Does.Not.Contain("binary_packed"), "elementwise ops also update weights: not programmatic");
    }

    /// <summary>The functions of native/*.cu and *.cuh by name, with their bodies (brace-matched).</summary>
    private sealed class KernelSourceIndex
    {
        private readonly Dictionary<string, List<string>> _bodies = new();
        private readonly HashSet<string> _kernels = new();

        internal KernelSourceIndex()
        {
            var texts = KernelSources.Files.Select(KernelSources.Read).Concat(KernelSources.Headers.Values);
            foreach (var raw in texts)
            {
                string text = Regex.Replace(raw, @"__launch_bounds__\s*\([^)]*\)", ""); // else it reads as the function's name
                // Each "__global__ … name(" or "__device__ … name(" whose parameter list is followed by a body.
                foreach (Match m in Regex.Matches(text, @"__(global|device)__[^;{}]*?\b([A-Za-z_]\w*)\s*\("))
                {
                    int open = m.Index + m.Length - 1, close = Matching(text, open, '(', ')');
                    if (close < 0) continue;
                    int brace = close + 1;
                    while (brace < text.Length && char.IsWhiteSpace(text[brace])) brace++;
                    if (brace >= text.Length || text[brace] != '{') continue; // a declaration or a call
                    int end = Matching(text, brace, '{', '}');
                    if (end < 0) continue;
                    string name = m.Groups[2].Value;
                    if (!_bodies.TryGetValue(name, out var list)) _bodies[name] = list = new();
                    list.Add(text.Substring(brace, end - brace + 1));
                    if (m.Groups[1].Value == "global") _kernels.Add(name);
                }
            }
        }

        internal bool IsKernel(string name) => _kernels.Contains(name);

        /// <summary>Whether <paramref name="name"/>'s body, or a function it calls (four levels deep), waits.</summary>
        internal bool ReachesWait(string name, int depth = 0)
        {
            if (depth > 4 || !_bodies.TryGetValue(name, out var bodies)) return false;
            foreach (var body in bodies)
            {
                if (body.Contains("PDL_ENTRY()") || body.Contains("pdl_wait()")) return true;
                foreach (Match call in Regex.Matches(body, @"\b([A-Za-z_]\w*)\s*(<[^;(){}]*>)?\s*\("))
                {
                    string callee = call.Groups[1].Value;
                    if (callee != name && _bodies.ContainsKey(callee) && ReachesWait(callee, depth + 1)) return true;
                }
            }
            return false;
        }

        private static int Matching(string text, int open, char opener, char closer)
        {
            int depth = 0;
            for (int i = open; i < text.Length; i++)
            {
                if (text[i] == opener) depth++;
                else if (text[i] == closer && --depth == 0) return i;
            }
            return -1;
        }
    }
}
