using System.Numerics;
using System.Numerics.Tensors;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public unsafe void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor lossPerRow, Tensor? logSumExp)
    {
        if (logits.Rank != 2 || !logits.DType.IsFloat())
            throw new ArgumentException($"CrossEntropy: logits must be a float matrix [N, C], got {logits.ShapeString()} {logits.DType.Name()}");
        int n = logits.Shape[0], classes = logits.Shape[1];
        if (targets.Rank != 1 || targets.Shape[0] != n || targets.DType != DType.I64)
            throw new ArgumentException($"CrossEntropy: targets must be int64 [{n}], got {targets.ShapeString()} {targets.DType.Name()} for logits {logits.ShapeString()}");
        if (lossPerRow.Rank != 1 || lossPerRow.Shape[0] != n || lossPerRow.DType is not (DType.F32 or DType.F64))
            throw new ArgumentException($"CrossEntropy: the per-row loss must be float32 or float64 [{n}], got {lossPerRow.ShapeString()} {lossPerRow.DType.Name()}");
        CheckRowVector("CrossEntropy", "logSumExp", logSumExp, n);

        // Validate every target before computing anything, on this thread, so a bad label is a clear exception.
        long* t = (long*)targets.Storage.Pointer + targets.Offset;
        long ts = targets.Strides[0];
        for (int i = 0; i < n; i++)
        {
            long v = t[i * ts];
            if (v != ignoreIndex && (v < 0 || v >= classes))
                throw new ArgumentOutOfRangeException(nameof(targets), $"CrossEntropy: target {v} at row {i} is out of range for {classes} classes (ignore index {ignoreIndex})");
        }
        var rows = new RowSet([n], [[logits.Strides[0]], [ts], [lossPerRow.Strides[0]], [logSumExp?.Strides[0] ?? 0]],
            [logits.Offset, targets.Offset, lossPerRow.Offset, logSumExp?.Offset ?? 0]);
        if (logits.DType == DType.F64) new CrossEntropyRows<double>(logits, targets, ignoreIndex, lossPerRow, logSumExp, rows, DType.F64).Run();
        else new CrossEntropyRows<float>(logits, targets, ignoreIndex, lossPerRow, logSumExp, rows, DType.F32).Run();
    }

    /// <summary>A per-row vector: null, or F32/F64 [n].</summary>
    private static void CheckRowVector(string op, string name, Tensor? v, int n)
    {
        if (v is not null && (v.Rank != 1 || v.Shape[0] != n || v.DType is not (DType.F32 or DType.F64)))
            throw new ArgumentException($"{op}: {name} must be float32 or float64 [{n}], got {v.ShapeString()} {v.DType.Name()}");
    }

    /// <inheritdoc/>
    public unsafe void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor logSumExp, Tensor dloss, Tensor dlogits)
    {
        if (logits.Rank != 2 || !logits.DType.IsFloat() || !logits.Shape.SequenceEqual(dlogits.Shape) || dlogits.DType != logits.DType)
            throw new ArgumentException($"CrossEntropyBackward: logits {logits.ShapeString()} {logits.DType.Name()} and dlogits {dlogits.ShapeString()} {dlogits.DType.Name()} must be float matrices [N, C] of one shape and dtype");
        int n = logits.Shape[0], classes = logits.Shape[1];
        if (targets.Rank != 1 || targets.Shape[0] != n || targets.DType != DType.I64)
            throw new ArgumentException($"CrossEntropyBackward: targets must be int64 [{n}], got {targets.ShapeString()} {targets.DType.Name()}");
        CheckRowVector("CrossEntropyBackward", "logSumExp", logSumExp, n);
        CheckRowVector("CrossEntropyBackward", "dloss", dloss, n);
        var rows = new RowSet([n], [[logits.Strides[0]], [targets.Strides[0]], [logSumExp.Strides[0]], [dloss.Strides[0]], [dlogits.Strides[0]]],
            [logits.Offset, targets.Offset, logSumExp.Offset, dloss.Offset, dlogits.Offset]);
        if (n == 0 || classes == 0) return;
        if (logits.DType == DType.F64) new CrossEntropyBackwardRows<double>(logits, targets, ignoreIndex, logSumExp, dloss, dlogits, rows, DType.F64).Run();
        else new CrossEntropyBackwardRows<float>(logits, targets, ignoreIndex, logSumExp, dloss, dlogits, rows, DType.F32).Run();
    }

    /// <summary>dlogits = (exp(x − lse) − onehot)·dloss per row, one pass; ignored rows get zeros.</summary>
    private sealed unsafe class CrossEntropyBackwardRows<T>(Tensor logits, Tensor targets, int ignoreIndex, Tensor lse, Tensor dloss, Tensor dlogits, RowSet rows, DType natural)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private readonly nint _x = logits.Storage.Pointer, _t = targets.Storage.Pointer, _l = lse.Storage.Pointer, _g = dloss.Storage.Pointer, _d = dlogits.Storage.Pointer;
        private readonly DType _xt = logits.DType, _lt = lse.DType, _gt = dloss.DType;
        private readonly long _xs = logits.Strides[1], _ds = dlogits.Strides[1];
        private readonly int _c = logits.Shape[1];

        public void Run() => RowSet.Parallel(rows.Count, 6L * _c, (start, end) =>
        {
            bool directX = _xt == natural && _xs == 1, directD = _xt == natural && _ds == 1;
            using var buffer = new NativeBuffer(2L * _c * sizeof(T));
            T* xb = buffer.As<T>(), db = xb + _c;
            Span<long> off = stackalloc long[5];
            for (long r = start; r < end; r++)
            {
                rows.Offsets(r, off);
                long target = ((long*)_t)[off[1]];
                nint da = RowIO.Address(_d, _xt, off[4]);
                T* dp = directD ? (T*)da : db;
                var ds = new Span<T>(dp, _c);
                if (target == ignoreIndex) ds.Clear();
                else
                {
                    if ((ulong)target >= (ulong)_c)
                        throw new ArgumentOutOfRangeException(nameof(targets), $"CrossEntropyBackward: target {target} at row {r} is out of range for {_c} classes");
                    nint xa = RowIO.Address(_x, _xt, off[0]);
                    T* xp = directX ? (T*)xa : xb;
                    if (!directX) RowIO.Load(xa, _xt, _xs, _c, xp);
                    T l = RowIO.ReadOne<T>(RowIO.Address(_l, _lt, off[2]), _lt), g = RowIO.ReadOne<T>(RowIO.Address(_g, _gt, off[3]), _gt);
                    TensorPrimitives.Subtract(new ReadOnlySpan<T>(xp, _c), l, ds);
                    Transcendentals.Exp(ds, ds);
                    TensorPrimitives.Multiply(ds, g, ds);
                    ds[(int)target] -= g;
                }
                if (!directD) RowIO.Store(dp, da, _xt, _ds, _c);
            }
        });
    }

    /// <summary>loss = max + ln Σ exp(x - max) - x[target], with the sum in float64.</summary>
    private sealed unsafe class CrossEntropyRows<T>(Tensor logits, Tensor targets, int ignoreIndex, Tensor loss, Tensor? lse, RowSet rows, DType natural)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private readonly nint _x = logits.Storage.Pointer, _t = targets.Storage.Pointer, _l = loss.Storage.Pointer, _s = lse?.Storage.Pointer ?? 0;
        private readonly DType _xt = logits.DType, _lt = loss.DType, _st = lse?.DType ?? DType.F32;
        private readonly long _xs = logits.Strides[1];
        private readonly int _c = logits.Shape[1];

        public void Run() => RowSet.Parallel(rows.Count, 4L * _c, (start, end) =>
        {
            bool direct = _xt == natural && _xs == 1;
            using var buffer = new NativeBuffer(direct ? 0 : _c * (long)sizeof(T));
            Span<long> off = stackalloc long[4];
            for (long r = start; r < end; r++)
            {
                rows.Offsets(r, off);
                long target = ((long*)_t)[off[1]];
                double value = 0;
                if (target != ignoreIndex || _s != 0)
                {
                    nint xa = RowIO.Address(_x, _xt, off[0]);
                    T* xp = direct ? (T*)xa : buffer.As<T>();
                    if (!direct) RowIO.Load(xa, _xt, _xs, _c, xp);
                    T max = ReduceMath.Extreme(xp, _c, max: true);
                    double sum = typeof(T) == typeof(float)
                        ? ReduceMath.SumExp((float*)xp, _c, float.CreateTruncating(max))
                        : ReduceMath.SumExp((double*)xp, _c, double.CreateTruncating(max));
                    double logSumExp = double.CreateTruncating(max) + Math.Log(sum);
                    if (target != ignoreIndex) value = logSumExp - double.CreateTruncating(xp[target]);
                    if (_s != 0) RowIO.Store(&logSumExp, RowIO.Address(_s, _st, off[3]), _st, 1, 1);
                }
                RowIO.Store(&value, RowIO.Address(_l, _lt, off[2]), _lt, 1, 1);
            }
        });
    }
}
