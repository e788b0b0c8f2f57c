using System.Runtime.InteropServices;

namespace Parrot.Tensors.Cuda;

/// <summary>
/// The <c>Layout</c> struct of native/prelude.cuh, passed to kernels by value: an iteration shape (at most
/// <see cref="MaxRank"/> dims) and, per operand (at most <see cref="MaxOperands"/>; operand 0 is the output),
/// the element strides over it. Dims of size 1 are dropped and neighbouring dims that every operand walks
/// contiguously are merged, so most layouts reach the kernel with rank 1 or 2.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct KernelLayout
{
    internal const int MaxRank = 8;
    internal const int MaxOperands = 4;

    internal long Rank;
    internal fixed long Size[MaxRank];
    internal fixed long Stride[MaxOperands * MaxRank];

    /// <summary>Builds the layout of <paramref name="shape"/> walked by operands with <paramref name="strides"/>.</summary>
    internal static KernelLayout Create(string op, ReadOnlySpan<int> shape, params long[][] strides)
    {
        if (strides.Length > MaxOperands) throw new ArgumentException($"{op}: at most {MaxOperands} operands per kernel layout");
        var dims = new List<(long Size, long[] Strides)>();
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 1) continue;
            var s = new long[strides.Length];
            for (int k = 0; k < strides.Length; k++) s[k] = strides[k][d];
            if (dims.Count > 0)
            {
                var (ps, pst) = dims[^1];
                bool merge = true;
                for (int k = 0; k < s.Length; k++) merge &= pst[k] == s[k] * shape[d];
                if (merge) { dims[^1] = (ps * shape[d], s); continue; }
            }
            dims.Add((shape[d], s));
        }
        if (dims.Count > MaxRank)
            throw new NotSupportedException($"{op}: the CUDA backend handles at most {MaxRank} non-mergeable dimensions, this layout has {dims.Count}; make the tensor contiguous first");
        var L = new KernelLayout { Rank = dims.Count };
        for (int d = 0; d < dims.Count; d++)
        {
            L.Size[d] = dims[d].Size;
            for (int k = 0; k < strides.Length; k++) L.Stride[k * MaxRank + d] = dims[d].Strides[k];
        }
        return L;
    }
}
