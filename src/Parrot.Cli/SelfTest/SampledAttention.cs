namespace Parrot.Cli.SelfTest;

/// <summary>
/// A float64 reference for causal attention (query offset 0) at shapes too large for the CPU backend's references,
/// on samples: for the last batch row and the last kv head's query heads, the output, log-sum-exp and dq of query rows
/// 0, 1, T/3 and T − 1, and dk and dv (summed over the group's query heads) of keys 0, T/3 and T − 1. The dk/dv samples
/// need every row's log-sum-exp and delta = Σ_j P·dP of those heads, so the constructor walks every (query, visible key)
/// pair of the group once (in parallel over the rows): G·T²/2·D·3 multiply-adds, about a second for one head at T 2048,
/// D 128. Inputs are the device tensors read back as float32, contiguous [B, H, T, D] / [B, Hkv, T, D].
/// </summary>
internal sealed class SampledAttention
{
    private readonly int _h, _hkv, _t, _d, _b, _hk, _g;
    private readonly int[] _rows, _keys;
    private readonly double[] _o, _lse, _dq, _dk, _dv; // the reference values at the samples, in the order Errors reads them

    internal SampledAttention(float[] q, float[] k, float[] v, float[] dO, int B, int H, int Hkv, int T, int D, double scale)
    {
        (_h, _hkv, _t, _d) = (H, Hkv, T, D);
        _b = B - 1;
        _hk = Hkv - 1;
        _g = H / Hkv;
        _rows = [0, 1, T / 3, T - 1];
        _keys = [0, T / 3, T - 1];
        var o = new List<double>();
        var lseOut = new List<double>();
        var dq = new List<double>();
        var dk = new double[_keys.Length * D];
        var dv = new double[_keys.Length * D];
        long kBase = ((long)_b * Hkv + _hk) * T * D;
        for (int hg = 0; hg < _g; hg++)
        {
            int h = _hk * _g + hg;
            long qBase = ((long)_b * H + h) * T * D;
            var lse = new double[T];
            var delta = new double[T];
            Parallel.For(0, T, t =>
            {
                // Scores of row t over its visible keys 0..t, then its log-sum-exp, and delta = Σ_j P_tj (dO_t · v_j).
                var s = new double[t + 1];
                double m = double.NegativeInfinity;
                for (int j = 0; j <= t; j++)
                {
                    s[j] = scale * Dot(q, qBase + (long)t * D, k, kBase + (long)j * D, D);
                    m = Math.Max(m, s[j]);
                }
                double z = 0;
                for (int j = 0; j <= t; j++) z += Math.Exp(s[j] - m);
                double l = m + Math.Log(z), dl = 0;
                for (int j = 0; j <= t; j++) dl += Math.Exp(s[j] - l) * Dot(dO, qBase + (long)t * D, v, kBase + (long)j * D, D);
                lse[t] = l;
                delta[t] = dl;
            });
            foreach (int t in _rows)
            {
                var orow = new double[D];
                var dqrow = new double[D];
                for (int j = 0; j <= t; j++)
                {
                    double p = Math.Exp(scale * Dot(q, qBase + (long)t * D, k, kBase + (long)j * D, D) - lse[t]);
                    double ds = p * (Dot(dO, qBase + (long)t * D, v, kBase + (long)j * D, D) - delta[t]);
                    for (int d = 0; d < D; d++)
                    {
                        orow[d] += p * v[kBase + (long)j * D + d];
                        dqrow[d] += scale * ds * k[kBase + (long)j * D + d];
                    }
                }
                o.AddRange(orow);
                dq.AddRange(dqrow);
                lseOut.Add(lse[t]);
            }
            for (int i = 0; i < _keys.Length; i++)
            {
                int j = _keys[i];
                for (int t = j; t < T; t++) // the queries that see key j
                {
                    double p = Math.Exp(scale * Dot(q, qBase + (long)t * D, k, kBase + (long)j * D, D) - lse[t]);
                    double ds = p * (Dot(dO, qBase + (long)t * D, v, kBase + (long)j * D, D) - delta[t]);
                    for (int d = 0; d < D; d++)
                    {
                        dk[i * D + d] += scale * ds * q[qBase + (long)t * D + d];
                        dv[i * D + d] += p * dO[qBase + (long)t * D + d];
                    }
                }
            }
        }
        (_o, _lse, _dq, _dk, _dv) = (o.ToArray(), lseOut.ToArray(), dq.ToArray(), dk, dv);
    }

    /// <summary>‖got − ref‖ / ‖ref‖ at the samples for o, lse, dq, dk and dv (device results read back, contiguous).</summary>
    internal (string What, double Error)[] Errors(float[] o, float[] lse, float[] dq, float[] dk, float[] dv)
    {
        var go = new List<double>();
        var gl = new List<double>();
        var gq = new List<double>();
        for (int hg = 0; hg < _g; hg++)
        {
            int h = _hk * _g + hg;
            foreach (int t in _rows)
            {
                long row = (((long)_b * _h + h) * _t + t) * _d;
                for (int d = 0; d < _d; d++)
                {
                    go.Add(o[row + d]);
                    gq.Add(dq[row + d]);
                }
                gl.Add(lse[((long)_b * _h + h) * _t + t]);
            }
        }
        var gk = new List<double>();
        var gv = new List<double>();
        foreach (int j in _keys)
        {
            long row = (((long)_b * _hkv + _hk) * _t + j) * _d;
            for (int d = 0; d < _d; d++)
            {
                gk.Add(dk[row + d]);
                gv.Add(dv[row + d]);
            }
        }
        return
        [
            ("o", SelfTestRunner.Error([.. go], _o)), ("lse", SelfTestRunner.Error([.. gl], _lse)), ("dq", SelfTestRunner.Error([.. gq], _dq)),
            ("dk", SelfTestRunner.Error([.. gk], _dk)), ("dv", SelfTestRunner.Error([.. gv], _dv)),
        ];
    }

    private static double Dot(float[] a, long ai, float[] b, long bi, int n)
    {
        double s = 0;
        for (int i = 0; i < n; i++) s += (double)a[ai + i] * b[bi + i];
        return s;
    }
}
