using Parrot.Tensors.Cuda;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Tests;

/// <summary>
/// Evaluates a <see cref="CudnnGraphSpec"/> in float64 on the CPU, with the operations' meaning as cuDNN's backend
/// documents it (and cudnn-frontend relies on): pointwise ops broadcast operands over size-1 dimensions, GEN_INDEX
/// gives the index along its axis, BINARY_SELECT is t ? x : b, reductions sum or max x over the dimensions where y
/// is smaller (a size-1 dimension, or groups of consecutive heads), matmul batch dimensions of a or b divide c's
/// (each entry serving a consecutive group: grouped-query heads), a reshape reads x's memory through y's dims and
/// strides, and bound (non-virtual) tensors read and write memory through their strides. Along the way it checks the
/// graph is well formed: each input defined before use, each tensor written once, shapes that fit.
/// No cuDNN involved: this proves the graphs compute attention, not that cuDNN accepts them.
/// </summary>
internal sealed class CudnnGraphInterpreter
{
    private readonly Dictionary<long, double[]> _values = [];     // logical row-major contents, by uid
    private readonly Dictionary<long, double[]> _memory;          // bound tensors' memory, by uid

    /// <param name="memory">Flat memory of each bound tensor (inputs filled, outputs sized), by uid.</param>
    /// <param name="scale">The value of the by-value attention scale.</param>
    internal CudnnGraphInterpreter(CudnnGraphSpec g, Dictionary<long, double[]> memory, double scale)
    {
        _memory = memory;
        foreach (var t in g.Tensors.Where(t => t.ByValue))
            _values[t.Uid] = [t.Uid == CudnnSdpaGraphs.UidScale ? scale : g.Constants[t.Uid]];
        var written = new HashSet<long>();
        foreach (var t in g.Tensors.Where(t => !t.Virtual && !t.ByValue)) if (Produced(g, t.Uid) is null) _values[t.Uid] = Read(t);
        foreach (var op in g.Ops)
        {
            var y = Output(op);
            if (!written.Add(y.Uid) || _values.ContainsKey(y.Uid))
                throw new InvalidOperationException($"{op.Name}: {y.Name} written twice or is an input");
            _values[y.Uid] = op switch
            {
                CudnnPointwiseSpec p => Pointwise(p),
                CudnnReductionSpec r => Reduction(r),
                CudnnMatmulSpec m => Matmul(m),
                CudnnReshapeSpec r => Reshape(r),
                _ => throw new InvalidOperationException(op.Name),
            };
            if (!y.Virtual) Write(y, _values[y.Uid]);
        }
    }

    private static CudnnOpSpec? Produced(CudnnGraphSpec g, long uid) => g.Ops.FirstOrDefault(o => Output(o).Uid == uid);

    private static CudnnTensorSpec Output(CudnnOpSpec op) => op switch
    {
        CudnnPointwiseSpec p => p.Y, CudnnReductionSpec r => r.Y, CudnnMatmulSpec m => m.C, CudnnReshapeSpec r => r.Y,
        _ => throw new InvalidOperationException(op.Name),
    };

    private double[] Get(CudnnTensorSpec t, string op) =>
        _values.TryGetValue(t.Uid, out var v) ? v : throw new InvalidOperationException($"{op}: input {t.Name} (uid {t.Uid}) used before it is defined");

    private static long Count(long[] dims) => dims.Aggregate(1L, (a, b) => a * b);

    private static IEnumerable<long[]> Indices(long[] dims)
    {
        var i = new long[dims.Length];
        for (long n = 0, total = Count(dims); n < total; n++)
        {
            yield return i;
            for (int d = dims.Length - 1; d >= 0; d--) { if (++i[d] < dims[d]) break; i[d] = 0; }
        }
    }

    private static long Offset(long[] index, long[] strides)
    {
        long o = 0;
        for (int d = 0; d < index.Length; d++) o += index[d] * strides[d];
        return o;
    }

    /// <summary>The packed position in <paramref name="dims"/> of <paramref name="index"/> mapped down (broadcast or grouped).</summary>
    private static long Map(long[] index, long[] from, long[] to, string what)
    {
        long o = 0;
        for (int d = 0; d < index.Length; d++)
        {
            if (to[d] != 1 && from[d] % to[d] != 0) throw new InvalidOperationException($"{what}: dim {d} of size {to[d]} does not divide {from[d]}");
            o = o * to[d] + index[d] * to[d] / from[d];
        }
        return o;
    }

    private double[] Read(CudnnTensorSpec t)
    {
        var mem = _memory[t.Uid];
        var v = new double[Count(t.Dims)];
        long n = 0;
        foreach (var i in Indices(t.Dims)) v[n++] = mem[Offset(i, t.Strides)];
        return v;
    }

    private void Write(CudnnTensorSpec t, double[] v)
    {
        var mem = _memory[t.Uid];
        long n = 0;
        foreach (var i in Indices(t.Dims)) mem[Offset(i, t.Strides)] = v[n++];
    }

    private double[] Pointwise(CudnnPointwiseSpec p)
    {
        if (!p.X.Dims.SequenceEqual(p.Y.Dims)) throw new InvalidOperationException($"{p.Name}: x and y dims differ");
        double[] x = Get(p.X, p.Name), b = p.B is null ? [] : Get(p.B, p.Name), t = p.T is null ? [] : Get(p.T, p.Name);
        var y = new double[x.Length];
        long n = 0;
        foreach (var i in Indices(p.Y.Dims))
        {
            double xv = x[n], bv = p.B is null ? 0 : b[Map(i, p.Y.Dims, p.B.Dims, p.Name)], tv = p.T is null ? 0 : t[Map(i, p.Y.Dims, p.T.Dims, p.Name)];
            y[n++] = p.Mode switch
            {
                Cudnn.PointwiseMode.Add => xv + bv,
                Cudnn.PointwiseMode.Sub => xv - bv,
                Cudnn.PointwiseMode.Mul => xv * bv,
                Cudnn.PointwiseMode.Div => xv / bv,
                Cudnn.PointwiseMode.Exp => Math.Exp(xv),
                Cudnn.PointwiseMode.Log => Math.Log(xv),
                Cudnn.PointwiseMode.Identity => xv,
                Cudnn.PointwiseMode.CmpGe => xv >= bv ? 1 : 0,
                Cudnn.PointwiseMode.GenIndex => i[p.Axis],
                Cudnn.PointwiseMode.BinarySelect => tv != 0 ? xv : bv,
                _ => throw new InvalidOperationException($"{p.Name}: mode {p.Mode}"),
            };
        }
        return y;
    }

    private double[] Reduction(CudnnReductionSpec r)
    {
        var x = Get(r.X, r.Name);
        bool max = r.Operator == Cudnn.ReduceOp.Max;
        var y = Enumerable.Repeat(max ? double.NegativeInfinity : 0, (int)Count(r.Y.Dims)).ToArray();
        long n = 0;
        foreach (var i in Indices(r.X.Dims))
        {
            long o = Map(i, r.X.Dims, r.Y.Dims, r.Name);
            y[o] = max ? Math.Max(y[o], x[n]) : y[o] + x[n];
            n++;
        }
        return y;
    }

    private double[] Matmul(CudnnMatmulSpec m)
    {
        double[] a = Get(m.A, m.Name), b = Get(m.B, m.Name);
        long[] ad = m.A.Dims, bd = m.B.Dims, cd = m.C.Dims;
        int r = cd.Length;
        long M = cd[r - 2], N = cd[r - 1], K = ad[r - 1];
        if (ad[r - 2] != M || bd[r - 2] != K || bd[r - 1] != N) throw new InvalidOperationException($"{m.Name}: [{string.Join(',', ad)}]·[{string.Join(',', bd)}] ≠ [{string.Join(',', cd)}]");
        var c = new double[Count(cd)];
        long n = 0;
        var ai = new long[r];
        var bi = new long[r];
        foreach (var i in Indices(cd))
        {
            for (int d = 0; d < r - 2; d++) { ai[d] = i[d] * ad[d] / cd[d]; bi[d] = i[d] * bd[d] / cd[d]; }
            double sum = 0;
            for (long k = 0; k < K; k++)
            {
                ai[r - 2] = i[r - 2]; ai[r - 1] = k; bi[r - 2] = k; bi[r - 1] = i[r - 1];
                sum += a[Packed(ai, ad)] * b[Packed(bi, bd)];
            }
            c[n++] = sum;
        }
        return c;
    }

    private static long Packed(long[] index, long[] dims)
    {
        long o = 0;
        for (int d = 0; d < dims.Length; d++) o = o * dims[d] + index[d];
        return o;
    }

    private double[] Reshape(CudnnReshapeSpec r)
    {
        var x = Get(r.X, r.Name);
        if (Count(r.X.Dims) != Count(r.Y.Dims)) throw new InvalidOperationException($"{r.Name}: element counts differ");
        long size = 0;
        foreach (var i in Indices(r.X.Dims)) size = Math.Max(size, Offset(i, r.X.Strides) + 1);
        var mem = new double[size];
        long n = 0;
        foreach (var i in Indices(r.X.Dims)) mem[Offset(i, r.X.Strides)] = x[n++];
        var y = new double[x.Length];
        n = 0;
        foreach (var i in Indices(r.Y.Dims)) y[n++] = mem[Offset(i, r.Y.Strides)];
        return y;
    }
}
