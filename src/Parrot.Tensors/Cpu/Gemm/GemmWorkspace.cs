using System.Collections.Concurrent;

namespace Parrot.Tensors.Cpu.Gemm;

/// <summary>
/// One thread's pack buffers for the float32 GEMM. Each thread that takes part in a product rents its own,
/// so threads never share or wait on a buffer. Workspaces are pooled for the life of the process: a product
/// needs a few MiB of panels, and allocating (and faulting in) them per call would cost more than small
/// products themselves.
/// </summary>
internal sealed unsafe class GemmWorkspace
{
    private static readonly ConcurrentBag<GemmWorkspace> Pool = new();

    /// <summary>Scratch above this size is freed when the workspace returns to the pool rather than kept.</summary>
    private const long KeepScratchBytes = 32L << 20;

    /// <summary>The packed block of A: <see cref="PackedSgemm.MC"/> rows (padded) of <see cref="PackedSgemm.KC"/> floats.</summary>
    public float* PackA { get; }

    /// <summary>The packed panel of B: <see cref="PackedSgemm.KC"/> × <see cref="PackedSgemm.NC"/> floats.</summary>
    public float* PackB { get; }

    private float* _scratch;
    private long _scratchBytes;

    private GemmWorkspace()
    {
        PackA = (float*)HugePageMemory.Allocate((long)PackedSgemm.MC * PackedSgemm.KC * sizeof(float), out _);
        PackB = (float*)HugePageMemory.Allocate((long)PackedSgemm.KC * PackedSgemm.NC * sizeof(float), out _);
    }

    /// <summary>A workspace for the calling thread's exclusive use until <see cref="Return"/>.</summary>
    public static GemmWorkspace Rent() => Pool.TryTake(out var ws) ? ws : new GemmWorkspace();

    /// <summary>Gives the workspace back to the pool.</summary>
    public static void Return(GemmWorkspace ws)
    {
        if (ws._scratchBytes > KeepScratchBytes)
        {
            HugePageMemory.Free(ws._scratch);
            ws._scratch = null;
            ws._scratchBytes = 0;
        }
        Pool.Add(ws);
    }

    /// <summary>A scratch buffer of at least <paramref name="floats"/> floats (contents undefined), valid until the next call.</summary>
    public float* Scratch(long floats)
    {
        long bytes = floats * sizeof(float);
        if (bytes > _scratchBytes)
        {
            if (_scratch != null) HugePageMemory.Free(_scratch);
            _scratch = (float*)HugePageMemory.Allocate(bytes, out long got);
            _scratchBytes = got;
        }
        return _scratch;
    }
}
