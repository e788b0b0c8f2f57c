using Parrot.Tensors;

namespace Parrot.Autograd;

/// <summary>
/// Checks backward rules against central finite differences in float64. The objective is a fixed random
/// projection L = Σ w·f(x), so every output element's gradient is exercised; for each element of each
/// input, (L(x+ε) − L(x−ε)) / 2ε is compared with the analytic dL/dx.
/// </summary>
public static class GradCheck
{
    /// <summary>The largest disagreement found, and where.</summary>
    public sealed record Result(double MaxAbsError, double MaxRelError, string Worst);

    /// <summary>
    /// Compares analytic and numeric gradients of <paramref name="f"/> at <paramref name="inputs"/> (F64 CPU
    /// tensors; any strides except broadcast zeros). Throws with a description of the worst element when
    /// |analytic − numeric| &gt; atol + rtol·|numeric| anywhere.
    /// </summary>
    public static Result Check(Func<Variable[], Variable> f, Tensor[] inputs, double eps = 1e-6, double atol = 1e-7, double rtol = 1e-5, ulong seed = 1234)
    {
        ArgumentNullException.ThrowIfNull(f);
        ArgumentNullException.ThrowIfNull(inputs);
        foreach (var x in inputs)
        {
            if (x.DType != DType.F64) throw new ArgumentException($"GradCheck: inputs must be float64, got {x.DType.Name()} {x.ShapeString()}");
            if (x.Strides.ToArray().Where((s, d) => x.Shape[d] > 1).Any(s => s == 0)) throw new ArgumentException($"GradCheck: input {x.ShapeString()} is broadcast (stride 0); pass a materialised tensor");
        }

        using var scope = TensorScope.Begin();
        var vars = inputs.Select(x => new Variable(x, requiresGrad: true)).ToArray();
        var y = f(vars);
        var w = Tensor.Uniform(y.Shape, seed, -1, 1, DType.F64);
        if (!y.RequiresGrad) throw new ArgumentException("GradCheck: the function's output does not depend on its inputs");
        y.Backward(w.To(y.DType));
        var analytic = vars.Select(v => v.Grad?.ToDoubleArray() ?? new double[v.Value.Count]).ToArray();
        foreach (var v in vars) v.ZeroGrad();
        var wd = w.ToDoubleArray();

        double Objective()
        {
            using var s = TensorScope.Begin();
            using var ng = Graph.NoGrad();
            var out_ = f(inputs.Select(x => new Variable(x)).ToArray()).Value.ToDoubleArray();
            double l = 0;
            for (int i = 0; i < out_.Length; i++) l += wd[i] * out_[i];
            return l;
        }

        double maxAbs = 0, maxRel = 0;
        string worst = "none";
        for (int k = 0; k < inputs.Length; k++)
        {
            var x = inputs[k];
            var shape = x.Shape.ToArray();
            var strides = x.Strides.ToArray();
            for (long e = 0; e < x.Count; e++)
            {
                long off = x.Offset, rem = e;
                for (int d = shape.Length - 1; d >= 0; d--) { off += rem % shape[d] * strides[d]; rem /= shape[d]; }
                double numeric;
                unsafe
                {
                    double* p = (double*)x.Storage.Pointer + off;
                    double orig = *p;
                    *p = orig + eps; double lp = Objective();
                    *p = orig - eps; double lm = Objective();
                    *p = orig;
                    numeric = (lp - lm) / (2 * eps);
                }
                double a = analytic[k][e];
                double err = Math.Abs(a - numeric);
                double rel = err / Math.Max(Math.Abs(numeric), 1e-12);
                if (err > maxAbs) { maxAbs = err; worst = $"input {k} {x.ShapeString()} element {e}: analytic {a:R}, numeric {numeric:R}"; }
                maxRel = Math.Max(maxRel, Math.Min(rel, err));
                if (err > atol + rtol * Math.Abs(numeric))
                    throw new GradCheckException($"GradCheck failed at input {k} {x.ShapeString()} element {e}: analytic {a:R}, numeric {numeric:R}, |diff| {err:E3}");
            }
        }
        return new Result(maxAbs, maxRel, worst);
    }
}

/// <summary>A backward rule disagreed with finite differences.</summary>
public sealed class GradCheckException(string message) : Exception(message);
