using System.Numerics;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public unsafe void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor lossPerRow)
    {
        if (logits.Rank != 2 || !logits.DType.IsFloat())
            throw new ArgumentException($"CrossEntropy: logits must be a float matrix [N, C], got {logits.ShapeString()} {logits.DType.Name()}");
        int n = logits.Shape[0], classes = logits.Shape[1];
        if (targets.Rank != 1 || targets.Shape[0] != n || targets.DType != DType.I64)
            throw new ArgumentException($"CrossEntropy: targets must be int64 [{n}], got {targets.ShapeString()} {targets.DType.Name()} for logits {logits.ShapeString()}");
        if (lossPerRow.Rank != 1 || lossPerRow.Shape[0] != n || lossPerRow.DType is not (DType.F32 or DType.F64))
            throw new ArgumentException($"CrossEntropy: the per-row loss must be float32 or float64 [{n}], got {lossPerRow.ShapeString()} {lossPerRow.DType.Name()}");

        // Validate every target before computing anything, on this thread, so a bad label is a clear exception.
        long* t = (long*)targets.Storage.Pointer + targets.Offset;
        long ts = targets.Strides[0];
        for (int i = 0; i < n; i++)
        {
            long v = t[i * ts];
            if (v != ignoreIndex && (v < 0 || v >= classes))
                throw new ArgumentOutOfRangeException(nameof(targets), $"CrossEntropy: target {v} at row {i} is out of range for {classes} classes (ignore index {ignoreIndex})");
        }
        var rows = new RowSet([n], [[logits.Strides[0]], [ts], [lossPerRow.Strides[0]]], [logits.Offset, targets.Offset, lossPerRow.Offset]);
        if (logits.DType == DType.F64) new CrossEntropyRows<double>(logits, targets, ignoreIndex, lossPerRow, rows, DType.F64).Run();
        else new CrossEntropyRows<float>(logits, targets, ignoreIndex, lossPerRow, rows, DType.F32).Run();
    }

    /// <summary>loss = max + ln Σ exp(x - max) - x[target], with the sum in float64.</summary>
    private sealed unsafe class CrossEntropyRows<T>(Tensor logits, Tensor targets, int ignoreIndex, Tensor loss, RowSet rows, DType natural)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        private readonly nint _x = logits.Storage.Pointer, _t = targets.Storage.Pointer, _l = loss.Storage.Pointer;
        private readonly DType _xt = logits.DType, _lt = loss.DType;
        private readonly long _xs = logits.Strides[1];
        private readonly int _c = logits.Shape[1];

        public void Run() => RowSet.Parallel(rows.Count, 4L * _c, (start, end) =>
        {
            bool direct = _xt == natural && _xs == 1;
            using var buffer = new NativeBuffer(direct ? 0 : _c * (long)sizeof(T));
            Span<long> off = stackalloc long[3];
            for (long r = start; r < end; r++)
            {
                rows.Offsets(r, off);
                long target = ((long*)_t)[off[1]];
                double value = 0;
                if (target != ignoreIndex)
                {
                    nint xa = RowIO.Address(_x, _xt, off[0]);
                    T* xp = direct ? (T*)xa : buffer.As<T>();
                    if (!direct) RowIO.Load(xa, _xt, _xs, _c, xp);
                    T max = ReduceMath.Extreme(xp, _c, max: true);
                    double sum = typeof(T) == typeof(float)
                        ? ReduceMath.SumExp((float*)xp, _c, float.CreateTruncating(max))
                        : ReduceMath.SumExp((double*)xp, _c, double.CreateTruncating(max));
                    value = double.CreateTruncating(max) + Math.Log(sum) - double.CreateTruncating(xp[target]);
                }
                RowIO.Store(&value, RowIO.Address(_l, _lt, off[2]), _lt, 1, 1);
            }
        });
    }
}
