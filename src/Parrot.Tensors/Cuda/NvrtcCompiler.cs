using System.Runtime.InteropServices;
using System.Text;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>Compiles CUDA C++ with NVRTC to PTX (for a virtual architecture) or CUBIN (for a real one).</summary>
internal static unsafe class NvrtcCompiler
{
    /// <summary>A compiled image: PTX text (NUL-terminated) or a CUBIN, and the compiler's log.</summary>
    internal sealed record Result(byte[] Image, bool IsCubin, string Log);

    /// <summary>Options every kernel is compiled with, besides the architecture.</summary>
    internal static readonly string[] BaseOptions = ["--std=c++17", "--fmad=true", "-default-device"];

    /// <summary>True when libnvrtc loads; otherwise <paramref name="why"/> says what was searched.</summary>
    internal static bool IsAvailable(out string why) => CudaLibrary.TryLoad(CudaLibrary.Nvrtc, out _, out why);

    /// <summary>NVRTC's version, e.g. (11, 8).</summary>
    internal static (int Major, int Minor) Version
    {
        get { Nvrtc.Check(Nvrtc.nvrtcVersion(out int a, out int b), "nvrtcVersion"); return (a, b); }
    }

    /// <summary>The real architectures (e.g. 80, 90) this NVRTC can build CUBINs for.</summary>
    internal static int[] SupportedArchs()
    {
        Nvrtc.Check(Nvrtc.nvrtcGetNumSupportedArchs(out int n), "nvrtcGetNumSupportedArchs");
        var a = new int[n];
        fixed (int* p = a) Nvrtc.Check(Nvrtc.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        return a;
    }

    /// <summary>
    /// Compiles <paramref name="source"/> for <paramref name="arch"/> ("compute_90" gives PTX, "sm_90" a CUBIN).
    /// A compile error throws <see cref="CudaException"/> with the log; warnings are returned in the log.
    /// </summary>
    internal static Result Compile(string name, string source, IReadOnlyDictionary<string, string> headers, string arch, IEnumerable<string>? extraOptions = null)
    {
        var options = BaseOptions.Append($"--gpu-architecture={arch}").Concat(extraOptions ?? []).ToArray();
        var pins = new List<nint>();
        try
        {
            byte* Utf8(string s)
            {
                var bytes = Encoding.UTF8.GetBytes(s + "\0");
                var p = (byte*)NativeMemory.Alloc((nuint)bytes.Length);
                bytes.CopyTo(new Span<byte>(p, bytes.Length));
                pins.Add((nint)p);
                return p;
            }
            var headerTexts = headers.Values.ToArray();
            var headerNames = headers.Keys.ToArray();
            byte** hs = stackalloc byte*[Math.Max(1, headerTexts.Length)];
            byte** hn = stackalloc byte*[Math.Max(1, headerTexts.Length)];
            for (int i = 0; i < headerTexts.Length; i++) { hs[i] = Utf8(headerTexts[i]); hn[i] = Utf8(headerNames[i]); }
            byte** opts = stackalloc byte*[options.Length];
            for (int i = 0; i < options.Length; i++) opts[i] = Utf8(options[i]);

            Nvrtc.Check(Nvrtc.nvrtcCreateProgram(out nint program, Utf8(source), Utf8(name), headerTexts.Length, hs, hn), $"nvrtcCreateProgram({name})");
            try
            {
                int rc = Nvrtc.nvrtcCompileProgram(program, options.Length, opts);
                string log = ReadLog(program);
                if (rc != Nvrtc.Success)
                    throw new CudaException($"nvrtcCompileProgram({name}, {arch}) failed: {Nvrtc.Describe(rc)}\n{log}", rc);
                bool cubin = arch.StartsWith("sm_", StringComparison.Ordinal);
                byte[] image;
                if (cubin)
                {
                    Nvrtc.Check(Nvrtc.nvrtcGetCUBINSize(program, out nuint size), "nvrtcGetCUBINSize");
                    image = new byte[(int)size];
                    fixed (byte* p = image) Nvrtc.Check(Nvrtc.nvrtcGetCUBIN(program, p), "nvrtcGetCUBIN");
                }
                else
                {
                    Nvrtc.Check(Nvrtc.nvrtcGetPTXSize(program, out nuint size), "nvrtcGetPTXSize");
                    image = new byte[(int)size]; // includes the terminating NUL cuModuleLoadData needs
                    fixed (byte* p = image) Nvrtc.Check(Nvrtc.nvrtcGetPTX(program, p), "nvrtcGetPTX");
                }
                return new Result(image, cubin, log);
            }
            finally
            {
                Nvrtc.nvrtcDestroyProgram(ref program);
            }
        }
        finally
        {
            foreach (var p in pins) NativeMemory.Free((void*)p);
        }
    }

    private static string ReadLog(nint program)
    {
        if (Nvrtc.nvrtcGetProgramLogSize(program, out nuint size) != Nvrtc.Success || size <= 1) return "";
        var buf = new byte[(int)size];
        fixed (byte* p = buf) if (Nvrtc.nvrtcGetProgramLog(program, p) != Nvrtc.Success) return "";
        return Encoding.UTF8.GetString(buf, 0, buf.Length - 1).Trim();
    }
}
