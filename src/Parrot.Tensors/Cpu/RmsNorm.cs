using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void RmsNorm(Tensor x, Tensor weight, double eps, Tensor y)
    {
        if (!x.DType.IsFloat() || x.Rank == 0 || !x.Shape.SequenceEqual(y.Shape) || !y.DType.IsFloat())
            throw new ArgumentException($"RmsNorm: input {x.ShapeString()} {x.DType.Name()} and output {y.ShapeString()} {y.DType.Name()} must share a shape of rank ≥ 1 and float dtypes");
        int d = x.Shape[^1];
        CheckVector("RmsNorm", "weight", weight, d);
        var rows = RowSet.LastAxis(x, y);
        if (rows.Count == 0 || d == 0) return;
        if (x.DType == DType.F64) new RmsNormRows(x, weight, eps, y, rows).RunDouble();
        else new RmsNormRows(x, weight, eps, y, rows).RunFloat();
    }

    /// <summary>
    /// Hugging Face Qwen2RMSNorm, step by step: in float32 v = Σx²/D (summed in float64, rounded to float32,
    /// then divided in float32 as torch's mean does), r = 1 / √(v + eps) with a correctly rounded square root
    /// and division (torch's CPU rsqrt), h = x · r; h goes back to the input dtype (a bf16 rounding for bf16
    /// models: this is the step that makes bf16 results match HF to the bit), and y = weight · h in float32,
    /// rounded once to y's dtype.
    /// </summary>
    private sealed unsafe class RmsNormRows(Tensor x, Tensor weight, double eps, Tensor y, RowSet rows)
    {
        private readonly nint _x = x.Storage.Pointer, _y = y.Storage.Pointer;
        private readonly DType _xt = x.DType, _yt = y.DType;
        private readonly long _xs = x.Strides[^1], _ys = y.Strides[^1];
        private readonly int _n = x.Shape[^1];

        public void RunFloat()
        {
            using var w = LoadVector(weight, _n, 1f);
            nint wp = w.Pointer;
            float epsF = (float)eps;
            RowSet.Parallel(rows.Count, 4L * _n, (start, end) =>
            {
                bool directX = _xt == DType.F32 && _xs == 1, directY = _yt == DType.F32 && _ys == 1;
                using var buffer = new NativeBuffer(_n * 6L); // n floats for h, n halves for the round trip
                float* hbuf = buffer.As<float>();
                ushort* half = (ushort*)(hbuf + _n);
                Span<long> off = stackalloc long[2];
                for (long r = start; r < end; r++)
                {
                    rows.Offsets(r, off);
                    nint xa = RowIO.Address(_x, _xt, off[0]), ya = RowIO.Address(_y, _yt, off[1]);
                    float* xp = directX ? (float*)xa : hbuf;
                    float* hp = directY ? (float*)ya : hbuf;
                    if (!directX) RowIO.Load(xa, _xt, _xs, _n, xp);
                    FloatRow(xp, hp, (float*)wp, _n, epsF, _xt, half);
                    if (!directY) RowIO.Store(hp, ya, _yt, _ys, _n);
                }
            });
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void FloatRow(float* x, float* h, float* w, int n, float eps, DType inputType, ushort* half)
        {
            float variance = (float)ReduceMath.SumSquaredDeviations(x, n, 0f) / n;
            float rstd = 1f / MathF.Sqrt(variance + eps);
            var hs = new Span<float>(h, n);
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(x, n), rstd, hs);
            if (inputType == DType.BF16)
            {
                BFloat16.FromFloat(h, half, n);
                BFloat16.ToFloat(half, h, n);
            }
            else if (inputType == DType.F16)
            {
                var hh = new Span<Half>(half, n);
                TensorPrimitives.ConvertToHalf(hs, hh);
                TensorPrimitives.ConvertToSingle(hh, hs);
            }
            TensorPrimitives.Multiply(hs, new ReadOnlySpan<float>(w, n), hs);
        }

        public void RunDouble()
        {
            using var w = LoadVector(weight, _n, 1.0);
            nint wp = w.Pointer;
            RowSet.Parallel(rows.Count, 4L * _n, (start, end) =>
            {
                bool directX = _xs == 1, directY = _yt == DType.F64 && _ys == 1;
                using var buffer = new NativeBuffer(_n * 8L);
                Span<long> off = stackalloc long[2];
                for (long r = start; r < end; r++)
                {
                    rows.Offsets(r, off);
                    nint xa = RowIO.Address(_x, _xt, off[0]), ya = RowIO.Address(_y, _yt, off[1]);
                    double* xp = directX ? (double*)xa : buffer.As<double>();
                    double* hp = directY ? (double*)ya : buffer.As<double>();
                    if (!directX) RowIO.Load(xa, _xt, _xs, _n, xp);
                    double rstd = 1.0 / Math.Sqrt(ReduceMath.SumSquaredDeviations(xp, _n, 0.0) / _n + eps);
                    var hs = new Span<double>(hp, _n);
                    TensorPrimitives.Multiply(new ReadOnlySpan<double>(xp, _n), rstd, hs);
                    TensorPrimitives.Multiply(hs, new ReadOnlySpan<double>((double*)wp, _n), hs);
                    if (!directY) RowIO.Store(hp, ya, _yt, _ys, _n);
                }
            });
        }
    }
}
