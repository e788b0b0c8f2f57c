using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

/// <summary>Reading and bounds-checking the ids of an index tensor, shared by the index kernels (Gather, IndexCopy, ScatterAdd).</summary>
public sealed partial class CpuBackend
{
    /// <summary>
    /// The id at <paramref name="p"/> of an int64 or int32 index tensor (the front-ends accept no other index dtype).
    /// The typeof test is resolved when the JIT specialises the caller for TI, so this costs one load.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe long ReadIndex<TI>(TI* p) where TI : unmanaged => typeof(TI) == typeof(long) ? *(long*)p : *(int*)p;

    /// <summary>
    /// The kernels' last line of defence: the front-ends validate indices with a helpful message, but a
    /// direct backend caller must still never make us read or write outside a tensor.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static long Checked(long i, int size)
    {
        if ((ulong)i >= (ulong)size) ThrowIndex(i, size);
        return i;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ThrowIndex(long i, int size) =>
        throw new IndexOutOfRangeException($"index {i} is out of range for a dimension of size {size}");
}
