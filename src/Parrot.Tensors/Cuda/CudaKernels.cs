using System.Runtime.InteropServices;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// Loads the modules of native/*.cu on first use (through <see cref="KernelCache"/>: NVRTC or a fatbin) and
/// launches their kernels on the context's stream. A launch error is reported naming the kernel.
/// </summary>
internal sealed unsafe class CudaKernels
{
    private readonly CudaContext _context;
    private readonly Dictionary<string, nint> _modules = new();
    private readonly Dictionary<(string, string), nint> _functions = new();
    private readonly Lock _gate = new();

    internal CudaKernels(CudaContext context)
    {
        _context = context;
        // On unless PARROT_PDL=0 (ProgrammaticPossible asks NVRTC's version for the kernel target: 0, so off, without NVRTC).
        ProgrammaticLaunches = ProgrammaticRequested(Environment.GetEnvironmentVariable("PARROT_PDL")) && ProgrammaticPossible;
    }

    /// <summary>The kernel <paramref name="name"/> of file <paramref name="file"/> ("softmax.cu").</summary>
    internal nint Function(string file, string name)
    {
        lock (_gate)
        {
            if (_functions.TryGetValue((file, name), out nint f)) return f;
            _context.MakeCurrent();
            if (!_modules.TryGetValue(file, out nint module))
            {
                byte[] image = KernelCache.Image(file, _context.Major, _context.Minor);
                fixed (byte* p = image) Driver.Check(Driver.cuModuleLoadData(out module, p), $"cuModuleLoadData({file})");
                _modules[file] = module;
            }
            Driver.Check(Driver.cuModuleGetFunction(out f, module, name), $"cuModuleGetFunction({file}: {name})");
            _functions[(file, name)] = f;
            return f;
        }
    }

    private readonly Dictionary<(string, string), uint> _dynamicShared = new();

    /// <summary>Lets kernel <paramref name="name"/> launch with up to <paramref name="bytes"/> of dynamic shared memory: above
    /// 48 KiB a kernel needs cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES) first. Set once per kernel (and again only for more).</summary>
    internal void AllowDynamicShared(string file, string name, uint bytes)
    {
        if (bytes <= 48 * 1024) return;
        nint f = Function(file, name);
        lock (_gate)
        {
            if (_dynamicShared.TryGetValue((file, name), out uint set) && set >= bytes) return;
            _context.MakeCurrent();
            Driver.Check(Driver.cuFuncSetAttribute(f, Driver.FuncAttrMaxDynamicSharedSizeBytes, (int)bytes), $"cuFuncSetAttribute({name}, max dynamic shared {bytes})");
            _dynamicShared[(file, name)] = bytes;
        }
    }

    private readonly Dictionary<(string, string, uint, uint), int> _resident = new();

    /// <summary>
    /// How many blocks of <paramref name="block"/> threads and <paramref name="sharedBytes"/> of dynamic shared memory
    /// one SM holds at once for kernel <paramref name="name"/> (its registers and shared memory decide): the CUDA
    /// occupancy calculator, asked once per kernel and size. Host-only, so it may run during a graph capture.
    /// </summary>
    internal int ResidentBlocks(string file, string name, uint block, uint sharedBytes)
    {
        nint f = Function(file, name);
        lock (_gate)
        {
            if (_resident.TryGetValue((file, name, block, sharedBytes), out int n)) return n;
            _context.MakeCurrent();
            Driver.Check(Driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(out n, f, (int)block, sharedBytes), $"cuOccupancyMaxActiveBlocksPerMultiprocessor({name})");
            _resident[(file, name, block, sharedBytes)] = n;
            return n;
        }
    }

    /// <summary>Blocks for a grid-stride loop over <paramref name="n"/> elements of 256-thread blocks.</summary>
    internal uint GridFor(long n, int block = 256) =>
        (uint)Math.Clamp((n + block - 1) / block, 1, (long)_context.MultiprocessorCount * 32);

    /// <summary>Blocks for one-block-per-row kernels (they loop when rows exceed the grid).</summary>
    internal static uint RowGrid(long rows) => (uint)Math.Clamp(rows, 1, 1 << 20);

    /// <summary>Launches <paramref name="name"/> of <paramref name="file"/>; <paramref name="args"/> holds the parameters in order.</summary>
    internal void Launch(string file, string name, uint grid, uint block, KernelArgs args, uint sharedBytes = 0, uint gridY = 1)
    {
        nint f = Function(file, name);
        _context.MakeCurrent();
        void** ptrs = stackalloc void*[args.Count];
        args.Fill(ptrs);
        var mark = _context.Profiler.Begin(name);
        bool programmatic = ProgrammaticLaunches && _constantWeightScopes > 0 && ProgrammaticKernels.Contains(name);
        int rc = programmatic
            ? LaunchProgrammatic(f, grid, gridY, block, sharedBytes, ptrs)
            : Driver.cuLaunchKernel(f, grid, gridY, 1, block, 1, 1, sharedBytes, _context.Stream, ptrs, null);
        if (rc != Driver.Success) Driver.Check(rc, programmatic ? $"cuLaunchKernelEx({name}, programmatic)" : $"cuLaunchKernel({name})"); // built only on failure
        _context.Profiler.End(mark);
    }

    /// <summary>
    /// The kernels launched with programmatic stream serialisation when <see cref="ProgrammaticLaunches"/> is on and the
    /// launching thread is inside a <see cref="ConstantWeightScope"/>: each calls pdl_wait() (native/prelude.cuh) before
    /// it reads what earlier work wrote and before it writes, so it may start while its predecessor runs — except gemv's
    /// transposed operand (W), which gemv.cu reads before its wait: the decode step's gain, and why the scope exists
    /// (inside it W must be a weight nobody writes; a product of two activations, x·yᵀ with y made by a kernel still in
    /// flight, would read stale values). A test (ProgrammaticLaunchTests) checks that every kernel named here reaches
    /// pdl_wait in its source.
    /// </summary>
    internal static readonly HashSet<string> ProgrammaticKernels =
    [
        "gemv_bf16_1", "gemv_bf16_2", "gemv_bf16_3", "gemv_bf16_4", "gemv_f32_1", "gemv_f32_2", "gemv_f32_3", "gemv_f32_4",
        "swiglu_gemv_bf16_1", "swiglu_gemv_bf16_2", "swiglu_gemv_bf16_3", "swiglu_gemv_bf16_4",
        "swiglu_gemv_f32_1", "swiglu_gemv_f32_2", "swiglu_gemv_f32_3", "swiglu_gemv_f32_4",
        "gemv_lean_bf16_1", "gemv_lean_bf16_2", "gemv_lean_bf16_3", "gemv_lean_bf16_4",
        "swiglu_gemv_lean_bf16_1", "swiglu_gemv_lean_bf16_2", "swiglu_gemv_lean_bf16_3", "swiglu_gemv_lean_bf16_4",
        "add_rms_norm_gemv_lean_bf16_1", "add_rms_norm_gemv_lean_bf16_2", "add_rms_norm_gemv_lean_bf16_3", "add_rms_norm_gemv_lean_bf16_4",
        "add_rms_norm_swiglu_gemv_lean_bf16_1", "add_rms_norm_swiglu_gemv_lean_bf16_2", "add_rms_norm_swiglu_gemv_lean_bf16_3", "add_rms_norm_swiglu_gemv_lean_bf16_4",
        "add_rms_norm_gemv_bf16_1", "add_rms_norm_gemv_bf16_2", "add_rms_norm_gemv_bf16_3", "add_rms_norm_gemv_bf16_4",
        "add_rms_norm_gemv_f32_1", "add_rms_norm_gemv_f32_2", "add_rms_norm_gemv_f32_3", "add_rms_norm_gemv_f32_4",
        "add_rms_norm_swiglu_gemv_bf16_1", "add_rms_norm_swiglu_gemv_bf16_2", "add_rms_norm_swiglu_gemv_bf16_3", "add_rms_norm_swiglu_gemv_bf16_4",
        "add_rms_norm_swiglu_gemv_f32_1", "add_rms_norm_swiglu_gemv_f32_2", "add_rms_norm_swiglu_gemv_f32_3", "add_rms_norm_swiglu_gemv_f32_4",
        "rms_norm", "add_rms_norm", "rope_kv_append", "rope_kv_append_at",
        "attention_decode_forward_bf16", "attention_decode_forward_f32", "attention_decode_at_bf16", "attention_decode_at_f32",
        "attention_decode_rope_bf16", "attention_decode_rope_f32",
        "attention_decode_mma_d64", "attention_decode_mma_d128", "attention_decode_mma_at_d64", "attention_decode_mma_at_d128",
        "attention_decode_mma_rope_d64", "attention_decode_mma_rope_d128",
    ];

    /// <summary>
    /// Whether <see cref="ProgrammaticKernels"/> launch with programmatic stream serialisation inside a
    /// <see cref="ConstantWeightScope"/>. On where <see cref="ProgrammaticSupported"/> (graph capture keeps programmatic
    /// edges from CUDA 12.3) unless PARROT_PDL=0: timed on an H200 (2026-11-27 22:47), the Qwen2-7B decode step from a
    /// CUDA graph took 4.50 ms/token with it and 4.61 without (the fusions off; 5.38–5.43 vs 5.54–5.56 with them on),
    /// and the selftest's programmatic rows gave the plain launches' bits.
    /// </summary>
    internal bool ProgrammaticLaunches { get; set; }

    /// <summary>Whether the environment allows programmatic launches: unless PARROT_PDL=0.</summary>
    internal static bool ProgrammaticRequested(string? env) => env?.Trim() != "0";

    /// <summary>
    /// Supported: compute capability 9.0+, a CUDA 12.3+ driver, and kernels built for an architecture of 90 or more
    /// (<paramref name="kernelArch"/>: below that pdl_wait compiles to nothing, and a programmatic launch would race).
    /// </summary>
    internal static bool ProgrammaticSupported(int major, int driverVersion, int kernelArch) => major >= 9 && driverVersion >= 12030 && kernelArch >= 90;

    /// <summary>Whether programmatic launches can be turned on for this device and these kernels.</summary>
    internal bool ProgrammaticPossible => ProgrammaticSupported(_context.Major, _context.DriverVersion, KernelCache.KernelArch(_context.Major, _context.Minor));

    [ThreadStatic] private static int _constantWeightScopes;

    /// <summary>Whether this thread is inside a <see cref="ConstantWeightScope"/>.</summary>
    internal static bool InConstantWeightScope => _constantWeightScopes > 0;

    /// <summary>
    /// Marks work queued by this thread until disposed as work in which every gemv's transposed operand is a weight that
    /// nothing inside writes (a decode step: the products are Linear layers); only there do <see cref="ProgrammaticKernels"/>
    /// launch programmatically. Nested scopes count.
    /// </summary>
    internal static IDisposable ConstantWeightScope()
    {
        _constantWeightScopes++;
        return new ScopeExit();
    }

    private sealed class ScopeExit : IDisposable
    {
        private bool _done;

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _constantWeightScopes--;
        }
    }

    private int LaunchProgrammatic(nint f, uint grid, uint gridY, uint block, uint sharedBytes, void** ptrs)
    {
        Driver.LaunchAttribute attribute = default;
        attribute.Id = Driver.LaunchAttributeProgrammaticStreamSerialization;
        attribute.Value = 1;
        Driver.LaunchConfig config = new()
        {
            GridX = grid, GridY = gridY, GridZ = 1, BlockX = block, BlockY = 1, BlockZ = 1, SharedBytes = sharedBytes,
            Stream = _context.Stream, Attributes = &attribute, AttributeCount = 1,
        };
        return Driver.cuLaunchKernelEx(&config, f, ptrs, null);
    }
}

/// <summary>Kernel parameters packed by value into one native buffer, in launch order.</summary>
internal sealed unsafe class KernelArgs : IDisposable
{
    private const int Capacity = 4096, MaxParameters = 64;
    // Buffers are reused per thread: a decode step packs ~570 launches, and two native allocations each added up.
    [ThreadStatic] private static Stack<nint>? _spare;
    private byte* _buffer = Rent();
    private Offsets _offsets; // inline: one allocation per launch, not two
    private int _count, _used;

    [System.Runtime.CompilerServices.InlineArray(MaxParameters)]
    private struct Offsets { private int _first; }

    internal int Count => _count;

    private static byte* Rent() => _spare is { Count: > 0 } s ? (byte*)s.Pop() : (byte*)NativeMemory.AlignedAlloc(Capacity, 16);

    /// <summary>Appends a parameter, aligned to its natural alignment (at most 8 bytes).</summary>
    internal KernelArgs Add<T>(T value) where T : unmanaged
    {
        int align = Math.Min(sizeof(T), 8);
        if (align is not (1 or 2 or 4 or 8)) align = 8;
        _used = (_used + align - 1) / align * align;
        if (_used + sizeof(T) > Capacity) throw new InvalidOperationException("kernel parameters exceed 4 KiB");
        if (_count == MaxParameters) throw new InvalidOperationException($"more than {MaxParameters} kernel parameters");
        *(T*)(_buffer + _used) = value;
        _offsets[_count++] = _used;
        _used += sizeof(T);
        return this;
    }

    /// <summary>Appends a device pointer (a tensor's first element).</summary>
    internal KernelArgs Ptr(Tensor? t) => Add(t is null ? 0UL : (ulong)t.DataPointer);

    internal void Fill(void** ptrs)
    {
        for (int i = 0; i < _count; i++) ptrs[i] = _buffer + _offsets[i];
    }

    public void Dispose()
    {
        if (_buffer is null) return;
        var spare = _spare ??= new Stack<nint>();
        if (spare.Count < 16) spare.Push((nint)_buffer);
        else NativeMemory.AlignedFree(_buffer);
        _buffer = null;
    }
}
