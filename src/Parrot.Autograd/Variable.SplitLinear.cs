using Parrot.Tensors;

namespace Parrot.Autograd;

public sealed partial class Variable
{
    /// <summary>
    /// Several Linear layers on one input as one matrix product: x [..., K] times weights Wᵢ [nᵢ, K] (PyTorch's layout)
    /// plus biases bᵢ [nᵢ] (all or none) gives one output [..., nᵢ] per weight, each x·Wᵢᵀ + bᵢ. The weights are joined
    /// along their rows, as a view when they are consecutive row blocks of one buffer (<see cref="Tensor.ConcatView"/>:
    /// Attention's packed q/k/v projections), else as a copy; the outputs are views of the one product [..., Σnᵢ].
    /// Backward is one product for x's gradient and one for the joined weights' (each weight gets its rows), instead of one
    /// of each per weight: the outputs' gradients are gathered into one buffer as they arrive, with no zero-filled
    /// full-size gradient per output (what a Narrow of the product would cost). x, the weights and biases share one
    /// float dtype and device.
    /// </summary>
    public static Variable[] SplitLinear(Variable x, Variable[] weights, Variable[]? biases = null)
    {
        const string op = "SplitLinear";
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Length == 0) throw new ArgumentException($"{op}: needs at least one weight");
        if (biases is not null && biases.Length != weights.Length)
            throw new ArgumentException($"{op}: {biases.Length} biases for {weights.Length} weights (give one per weight, or none)");
        if (x.Rank == 0) throw new ArgumentException($"{op}: input {x.Value.ShapeString()} must have a feature dimension");
        int k = x.Shape[^1];
        var sizes = new int[weights.Length];
        for (int i = 0; i < weights.Length; i++)
        {
            var w = weights[i] ?? throw new ArgumentNullException(nameof(weights), $"{op}: weight {i} is null");
            if (w.Rank != 2 || w.Shape[1] != k || w.Shape[0] == 0)
                throw new ArgumentException($"{op}: weight {i} {w.Value.ShapeString()} must be [n > 0, {k}] for input {x.Value.ShapeString()}");
            CheckOperand(w, "weight", i);
            sizes[i] = w.Shape[0];
            if (biases is null) continue;
            var b = biases[i] ?? throw new ArgumentNullException(nameof(biases), $"{op}: bias {i} is null");
            if (b.Rank != 1 || b.Shape[0] != sizes[i])
                throw new ArgumentException($"{op}: bias {i} {b.Value.ShapeString()} must be [{sizes[i]}] like weight {i} {w.Value.ShapeString()}");
            CheckOperand(b, "bias", i);
        }

        var lead = x.Shape[..^1].ToArray();
        long rowCount = 1; // not -1: with K = 0 the rows could not be inferred from zero elements
        foreach (var d in lead) rowCount *= d;
        int rows = checked((int)rowCount), n = sizes.Sum();
        var outShape = lead.Append(n).ToArray();

        var ws = weights.Select(w => w.Value).ToArray();
        using var joinedW = Tensor.ConcatView(0, ws) ?? Tensor.Concat(0, ws);
        using var joinedB = biases is null ? null : Tensor.ConcatView(0, biases.Select(b => b.Value).ToArray()) ?? Tensor.Concat(0, biases.Select(b => b.Value).ToArray());
        using var x2 = x.Value.Reshape(rows, k);
        Tensor y;
        using (var wt = joinedW.Transpose())
        using (var product = joinedB is null ? x2.MatMul(wt) : Tensor.MatMulBias(x2, wt, joinedB))
            y = product.Reshape(outShape);

        var parts = new Tensor[sizes.Length];
        for (int i = 0, at = 0; i < sizes.Length; at += sizes[i], i++) parts[i] = y.Narrow(-1, at, sizes[i]);
        Variable[] inputs = biases is null ? [x, .. weights] : [x, .. weights, .. biases];
        if (Graph.IsGradDisabled || !inputs.Any(v => v.RequiresGrad))
        {
            y.Dispose(); // the parts hold the storage
            return parts.Select(p => new Variable(p)).ToArray();
        }

        var gather = new GradientGather(sizes, outShape, y.DType, y.Device);
        var whole = Graph.Record(op, y, inputs, (node, g) => gather.Backward(node, g, rows, k, biases is not null), x2, joinedW);
        var outputs = parts.Select((p, i) => Graph.Record(op + ".Part", p, [whole], (_, g) => [gather.Add(i, g)])).ToArray();
        for (int i = 0; i < outputs.Length; i++)
        {
            int part = i;
            outputs[i].OfferGradientTarget(() => gather.Claim(part));
        }
        return outputs;

        void CheckOperand(Variable v, string what, int i)
        {
            if (v.DType != x.DType || !v.DType.IsFloat())
                throw new ArgumentException($"{op}: {what} {i} is {v.DType.Name()}, the input {x.DType.Name()}; they must share one float dtype");
            if (v.Value.Device != x.Value.Device)
                throw new ArgumentException($"{op}: {what} {i} is on {v.Value.Device}, the input on {x.Value.Device}");
        }
    }

    /// <summary>
    /// Collects the output gradients of <see cref="SplitLinear"/> into one [..., Σnᵢ] buffer and runs the joint backward.
    /// Every output is a consumer of the joint product, so the graph runs each output's rule (if a gradient reached it)
    /// before the product's: the first output to run hands the buffer to the graph as the product's gradient; each
    /// writes its region, unless its gradient already is that region: each output offers its region as the place for
    /// its gradient (<see cref="Node.GradientTarget"/>), so the rule making it (attention's dv, RoPE's backward for q
    /// and k, seen through the head split's views) writes it there and nothing is copied. The buffer is made at the
    /// first claim or arrival. The product's rule zero-fills the regions of outputs that got no gradient and releases it.
    /// </summary>
    private sealed class GradientGather(int[] sizes, int[] shape, DType dtype, Device device)
    {
        private readonly bool[] _filled = new bool[sizes.Length], _claimed = new bool[sizes.Length];
        private bool _handedOut;
        private Tensor? _buffer;

        /// <summary>Part <paramref name="part"/>'s region for the rule making its gradient: once per backward, else null.</summary>
        public Tensor? Claim(int part)
        {
            if (_claimed[part]) return null;
            _claimed[part] = true;
            return Region(part);
        }

        public Tensor? Add(int part, Tensor g)
        {
            using (var region = Region(part))
            {
                bool inPlace = ReferenceEquals(g.Storage, region.Storage) && g.Offset == region.Offset
                               && g.Shape.SequenceEqual(region.Shape) && g.Strides.SequenceEqual(region.Strides);
                if (!inPlace) region.CopyFrom(g);
            }
            _filled[part] = true;
            if (_handedOut) return null;
            _handedOut = true;
            return _buffer!.Alias();
        }

        public Tensor?[] Backward(Node node, Tensor g, int rows, int k, bool hasBias)
        {
            try
            {
                for (int i = 0; i < sizes.Length; i++)
                    if (!_filled[i]) { using var r = g.Narrow(-1, Start(i), sizes[i]); r.Fill(0); }
                var x2 = node.Saved(0);
                var w = node.Saved(1);
                int parts = sizes.Length, n = sizes.Sum();
                var grads = new Tensor?[node.Inputs.Count];
                using var g2 = g.Reshape(rows, n);
                if (node.NeedsGrad(0))
                    using (var dx = g2.MatMul(w)) grads[0] = dx.Reshape(node.Inputs[0].Shape.ToArray());
                if (Enumerable.Range(1, parts).Any(node.NeedsGrad))
                {
                    // (gᵀ·x): W-shaped and contiguous, so each weight's rows are a contiguous view.
                    using var gt = g2.Transpose();
                    using var dw = gt.MatMul(x2);
                    for (int i = 0; i < parts; i++)
                        if (node.NeedsGrad(1 + i)) grads[1 + i] = dw.Narrow(0, Start(i), sizes[i]);
                }
                if (hasBias && Enumerable.Range(1 + parts, parts).Any(node.NeedsGrad))
                {
                    using var db = g2.Sum(0);
                    for (int i = 0; i < parts; i++)
                        if (node.NeedsGrad(1 + parts + i)) grads[1 + parts + i] = db.Narrow(0, Start(i), sizes[i]);
                }
                return grads;
            }
            finally
            {
                _buffer?.Dispose();
                _buffer = null;
                _handedOut = false;
                Array.Clear(_filled);
                Array.Clear(_claimed);
            }
        }

        private Tensor Region(int part)
        {
            _buffer ??= TensorScope.Detach(Tensor.Empty(shape, dtype, device));
            return _buffer.Narrow(-1, Start(part), sizes[part]);
        }

        private int Start(int part)
        {
            int s = 0;
            for (int i = 0; i < part; i++) s += sizes[i];
            return s;
        }
    }
}
