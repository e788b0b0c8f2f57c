using Parrot.Tensors;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Naive references and input makers for the indexing, joining, RoPE and .npy tests: plain loops over
/// C-order arrays, written independently of the kernels.
/// </summary>
internal static class IndexRef
{
    /// <summary>Seeded random values of any dtype (floats normal, integers spread over their range, bools half true).</summary>
    public static Tensor Random(int[] shape, DType dtype, ulong seed)
    {
        switch (dtype)
        {
            case DType.F32 or DType.F64 or DType.BF16 or DType.F16:
                return Tensor.Normal(shape, seed, 0, 1, dtype);
            case DType.Bool:
            {
                using var u = Tensor.Uniform(shape, seed);
                return u.Apply(BinaryOp.Gt, 0.5);
            }
            default:
            {
                (double lo, double hi) = dtype == DType.U8 ? (0.0, 256.0) : (-1000.0, 1000.0);
                using var u = Tensor.Uniform(shape, seed, lo, hi, DType.F64);
                return u.To(dtype);
            }
        }
    }

    /// <summary>Random indices in [0, n) of the given shape and integer dtype.</summary>
    public static Tensor RandomIndex(int[] shape, int n, ulong seed, DType dtype)
    {
        using var u = Tensor.Uniform(shape, seed, 0, n, DType.F64);
        return u.To(dtype);
    }

    /// <summary>
    /// A view holding the same values as <paramref name="source"/> with another memory layout:
    /// "contiguous" (the source), "transposed" (strides in reverse order) or "stepped" (every other
    /// element of a larger buffer along the last axis).
    /// </summary>
    public static Tensor Layout(Tensor source, string layout)
    {
        if (layout == "contiguous" || source.Rank == 0) return source;
        if (layout == "transposed" && source.Rank >= 2)
        {
            var reverse = Enumerable.Range(0, source.Rank).Reverse().ToArray();
            using var flipped = source.Permute(reverse);
            using var stored = flipped.Clone();
            return stored.Permute(reverse);
        }
        var shape = source.Shape.ToArray();
        shape[^1] = shape[^1] * 2 + 1;
        using var big = Tensor.Zeros(shape, source.DType);
        var view = big.Slice(-1, 1, null, 2);
        view.CopyFrom(source);
        return view;
    }

    public static int[] Unravel(long flat, int[] shape)
    {
        var index = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            index[d] = (int)(flat % shape[d]);
            flat /= shape[d];
        }
        return index;
    }

    public static long Ravel(int[] index, int[] shape)
    {
        long flat = 0;
        for (int d = 0; d < shape.Length; d++) flat = flat * shape[d] + index[d];
        return flat;
    }

    public static string Text(int[] shape) => "[" + string.Join(", ", shape) + "]";

    public static long Count(int[] shape) => shape.Aggregate(1L, (a, b) => a * b);

    public static double[] IndexSelect(double[] x, int[] shape, int axis, long[] index)
    {
        var outShape = (int[])shape.Clone();
        outShape[axis] = index.Length;
        var y = new double[Count(outShape)];
        for (long p = 0; p < y.Length; p++)
        {
            var at = Unravel(p, outShape);
            at[axis] = (int)index[at[axis]];
            y[p] = x[Ravel(at, shape)];
        }
        return y;
    }

    public static double[] Gather(double[] x, int[] shape, int axis, long[] index, int[] indexShape)
    {
        var y = new double[Count(indexShape)];
        for (long p = 0; p < y.Length; p++)
        {
            var at = Unravel(p, indexShape);
            at[axis] = (int)index[p];
            y[p] = x[Ravel(at, shape)];
        }
        return y;
    }

    public static double[] ScatterAddFloat64(double[] dst, int[] shape, double[] src, int[] srcShape, long[] index, int[] indexShape, int axis)
    {
        var y = (double[])dst.Clone();
        for (long p = 0; p < index.Length; p++)
        {
            var at = Unravel(p, indexShape);
            double v = src[Ravel(at, srcShape)];
            at[axis] = (int)index[p];
            y[Ravel(at, shape)] += v;
        }
        return y;
    }

    /// <summary>
    /// scatter_add done one addition at a time in the storage type's own arithmetic, visiting the
    /// index in C order, which gives each destination its contributions in ascending order along the axis.
    /// </summary>
    public static Tensor ScatterAddInOrder(DType dtype, Tensor dst, Tensor src, Tensor index, int axis)
    {
        var shape = dst.Shape.ToArray();
        var srcShape = src.Shape.ToArray();
        var indexShape = index.Shape.ToArray();
        var idx = index.ToLongArray();
        switch (dtype)
        {
            case DType.F32: return Tensor.FromArray(Run(dst.ToArray<float>(), src.ToArray<float>(), (a, b) => a + b), shape);
            case DType.F64: return Tensor.FromArray(Run(dst.ToArray<double>(), src.ToArray<double>(), (a, b) => a + b), shape);
            case DType.F16: return Tensor.FromArray(Run(dst.ToArray<Half>(), src.ToArray<Half>(), (a, b) => (Half)((float)a + (float)b)), shape);
            case DType.BF16:
                return Tensor.FromBFloat16Bits(Run(dst.ToBFloat16Bits(), src.ToBFloat16Bits(),
                    (a, b) => BFloat16.FromFloat(BFloat16.ToFloat(a) + BFloat16.ToFloat(b))), shape);
            case DType.I32: return Tensor.FromArray(Run(dst.ToArray<int>(), src.ToArray<int>(), (a, b) => unchecked(a + b)), shape);
            case DType.I64: return Tensor.FromArray(Run(dst.ToArray<long>(), src.ToArray<long>(), (a, b) => unchecked(a + b)), shape);
            case DType.U8: return Tensor.FromArray(Run(dst.ToArray<byte>(), src.ToArray<byte>(), (a, b) => unchecked((byte)(a + b))), shape);
            default: throw new ArgumentException(dtype.ToString());
        }

        T[] Run<T>(T[] d, T[] s, Func<T, T, T> add)
        {
            for (long p = 0; p < idx.Length; p++)
            {
                var at = Unravel(p, indexShape);
                T v = s[Ravel(at, srcShape)];
                at[axis] = (int)idx[p];
                long target = Ravel(at, shape);
                d[target] = add(d[target], v);
            }
            return d;
        }
    }

    /// <summary>Values as doubles: exact for every dtype we compare this way.</summary>
    public static double[] Bits(Tensor t) => t.ToDoubleArray();
}
