using BenchmarkDotNet.Attributes;
using Parrot.Tensors;

namespace Parrot.Bench;

/// <summary>
/// The indexing and joining family and RoPE on the shapes the Qwen2 decoder uses; bench/indexing_peer.py
/// times numpy on the same shapes. Outputs are preallocated where the op has an in-place or backend
/// form, so the figures compare kernels rather than the allocator.
/// </summary>
[MemoryDiagnoser]
public class IndexingBenchmarks
{
    private Tensor _weight = null!, _ids = null!, _rows = null!;
    private Tensor _x = null!, _columns = null!, _picked = null!;
    private Tensor _g = null!, _gatherIndex = null!, _gathered = null!;
    private Tensor _grads = null!, _expandedIds = null!, _table = null!;
    private Tensor _a = null!, _b = null!;
    private Tensor _q = null!, _cos = null!, _sin = null!, _cosFull = null!, _sinFull = null!, _rotated = null!;

    [GlobalSetup]
    public void Setup()
    {
        _weight = Tensor.Normal([32000, 896], 1);
        using (var u = Tensor.Uniform([4096], 2, 0, 32000, DType.F64)) _ids = u.To(DType.I64);
        _rows = Tensor.Empty([4096, 896]);
        _x = Tensor.Normal([4096, 1024], 3);
        using (var u = Tensor.Uniform([512], 4, 0, 1024, DType.F64)) _columns = u.To(DType.I64);
        _picked = Tensor.Empty([4096, 512]);
        _g = Tensor.Normal([1024, 1024], 5);
        using (var u = Tensor.Uniform([1024, 1024], 6, 0, 1024, DType.F64)) _gatherIndex = u.To(DType.I64);
        _gathered = Tensor.Empty([1024, 1024]);
        _grads = Tensor.Normal([4096, 896], 7);
        using (var col = _ids.Unsqueeze(1)) _expandedIds = col.Expand(4096, 896);
        _table = Tensor.Zeros([32000, 896]);
        _a = Tensor.Normal([2048, 2048], 8);
        _b = Tensor.Normal([2048, 2048], 9);
        _q = Tensor.Normal([1, 14, 2048, 64], 10);
        (_cos, _sin) = Tensor.RopeTables(0, 2048, 64, 1_000_000.0);
        _cosFull = _cos.Expand(1, 14, 2048, 64);
        _sinFull = _sin.Expand(1, 14, 2048, 64);
        _rotated = Tensor.Empty([1, 14, 2048, 64]);
    }

    [Benchmark(Description = "embedding 32000x896, 4096 ids")]
    public void Embedding() => _weight.Backend.IndexSelect(_weight, 0, _ids, _rows);

    [Benchmark(Description = "index_select axis 1, 4096x1024 -> 512")]
    public void IndexSelectColumns() => _x.Backend.IndexSelect(_x, 1, _columns, _picked);

    [Benchmark(Description = "gather axis 1, 1024x1024")]
    public void Gather() => _g.Backend.Gather(_g, 1, _gatherIndex, _gathered);

    [Benchmark(Description = "scatter_add embedding backward 4096x896 -> 32000x896")]
    public void ScatterAdd() => _table.ScatterAddInPlace(0, _expandedIds, _grads);

    [Benchmark(Description = "concat axis 1, 2 x 2048x2048")]
    public void Concat() { using var y = Tensor.Concat(1, _a, _b); }

    [Benchmark(Description = "rope f32 1x14x2048x64")]
    public void Rope() => _q.Backend.Rope(_q, _cosFull, _sinFull, _rotated);

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var t in new[] { _weight, _ids, _rows, _x, _columns, _picked, _g, _gatherIndex, _gathered, _grads, _expandedIds, _table, _a, _b, _q, _cos, _sin, _cosFull, _sinFull, _rotated })
            t.Dispose();
    }
}
