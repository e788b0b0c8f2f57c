using System.Diagnostics;
using Parrot.Autograd;
using Parrot.Tensors;
using Parrot.Tensors.Cpu;

// Backward of one op through autograd, float32, one thread; median of the timed repetitions.
CpuParallel.Workers = int.Parse(args.Length > 0 ? args[0] : "1");
int reps = 21;
double Time(string name, Func<Variable[], Variable> f, params Tensor[] inputs)
{
    var times = new List<double>();
    for (int i = 0; i < reps + 2; i++)
    {
        using var scope = TensorScope.Begin();
        var vs = inputs.Select(t => new Variable(t, true)).ToArray();
        var y = f(vs);
        var seed = Tensor.Ones(y.Shape);
        var sw = Stopwatch.StartNew();
        y.Backward(seed);
        if (i >= 2) times.Add(sw.Elapsed.TotalMilliseconds);
    }
    times.Sort();
    double m = times[times.Count / 2];
    Console.WriteLine($"{name,-40} {m,9:F2} ms");
    return m;
}
var x = Tensor.Normal([2048, 896], 1);
var w = Tensor.Normal([896], 2, 1, 0.1);
var b = Tensor.Normal([896], 3);
var logits = Tensor.Normal([1024, 32000], 4);
var rng = new Random(5);
var targets = Tensor.FromArray(Enumerable.Range(0, 1024).Select(_ => (long)rng.Next(32000)).ToArray(), 1024);
var emb = Tensor.Normal([32000, 896], 6, 0, 0.02);
var ids = Tensor.FromArray(Enumerable.Range(0, 2048).Select(_ => (long)rng.Next(32000)).ToArray(), 2048);
var gate = Tensor.Normal([2048, 4864], 7);
var up = Tensor.Normal([2048, 4864], 8);
var sm = Tensor.Normal([256, 2048], 9);
Time("rmsnorm [2048,896]", v => v[0].RmsNorm(v[1]), x, w);
Time("layernorm [2048,896]", v => v[0].LayerNorm(v[1], v[2]), x, w, b);
Time("softmax [256,2048]", v => v[0].Softmax(-1), sm);
Time("log-softmax [256,2048]", v => v[0].LogSoftmax(-1), sm);
Time("cross-entropy [1024,32000]", v => Variable.CrossEntropy(v[0], targets), logits);
Time("embedding 2048 ids, [32000,896]", v => Variable.Embedding(v[0], ids), emb);
#if AFTER
Time("swiglu [2048,4864]", v => Variable.SwiGlu(v[0], v[1]), gate, up);
#else
Time("swiglu [2048,4864]", v => v[0].Silu() * v[1], gate, up);
#endif
