namespace Parrot.Tensors.Cpu;

/// <summary>
/// float64 attention, one query row at a time: scores over the visible keys, the exact two-pass softmax, the
/// weighted sum of values. It exists for gradient checking and as the plain statement of what the blocked
/// float32 kernel (<see cref="AttentionF32"/>) computes, so it favours clarity over speed.
/// </summary>
internal static unsafe class AttentionF64
{
    public static void Run(AttentionProblem p)
    {
        long rows = p.Rows;
        RowSet.Parallel(rows, (long)p.S * (p.D + p.Dv), (start, end) =>
        {
            var q = new double[p.D];
            var kRow = new double[p.D];
            var vRow = new double[p.Dv];
            var s = new double[p.S];
            var m = new double[p.S];
            var o = new double[p.Dv];
            for (long r = start; r < end; r++)
            {
                int i = (int)(r % p.T), h = (int)(r / p.T % p.H), b = (int)(r / p.T / p.H);
                int hk = h / p.Group;
                Load(p.Q.At(b, h, i), p.Q, p.D, q);
                int visible = p.VisibleKeys(i);
                if (p.Mask is { } mask) Load(mask.At(b, h, i), mask, p.S, m);
                double max = double.NegativeInfinity;
                for (int j = 0; j < visible; j++)
                {
                    Load(p.K.At(b, hk, j), p.K, p.D, kRow);
                    double dot = 0;
                    for (int d = 0; d < p.D; d++) dot += q[d] * kRow[d];
                    s[j] = dot * p.Scale + (p.Mask is null ? 0 : m[j]);
                    // NaN must win, as in the composite softmax.
                    if (s[j] > max || double.IsNaN(s[j])) max = double.IsNaN(max) ? max : s[j];
                }
                double sum = 0;
                Array.Clear(o);
                // A row that sees no key has max = −∞: every exp is NaN, as softmax gives.
                for (int j = 0; j < visible; j++)
                {
                    double e = Math.Exp(s[j] - max);
                    sum += e;
                    Load(p.V.At(b, hk, j), p.V, p.Dv, vRow);
                    for (int c = 0; c < p.Dv; c++) o[c] += e * vRow[c];
                }
                if (visible == 0 || max == double.NegativeInfinity) sum = double.NaN;
                for (int c = 0; c < p.Dv; c++) o[c] /= sum;
                fixed (double* op = o) RowIO.Store(op, p.Output.At(b, h, i), DType.F64, p.Output.S3, p.Dv);
                if (p.LogSumExp is { } lse)
                    *(double*)lse.At(b, h, i) = double.IsNaN(sum) && !HasNaN(s, visible) ? double.NegativeInfinity : max + Math.Log(sum);
            }
        });
    }

    private static void Load(nint src, AttentionProblem.Operand x, int n, double[] dst)
    {
        fixed (double* d = dst) RowIO.Load(src, x.DType, x.S3, n, d);
    }

    private static bool HasNaN(double[] s, int n)
    {
        for (int j = 0; j < n; j++) if (double.IsNaN(s[j])) return true;
        return false;
    }
}
