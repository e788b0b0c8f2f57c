using System.Globalization;
using Parrot.Autograd;
using Parrot.Nn.Optim;
using Parrot.Tensors;
using Parrot.Tensors.Distributed;

namespace Parrot.Nn.Distributed;

/// <summary>
/// Data-parallel training over a <see cref="ProcessGroup"/>: every rank holds the whole model, runs its share of the
/// batch, and the gradients are combined in buckets before one optimizer step.
/// <list type="bullet">
/// <item>ZeRO 0 (plain data parallel): the gradients are all-reduced bucket by bucket (each bucket's collective is
/// started as soon as it is packed, in the order backward produces gradients: last parameters first), and every rank
/// takes the same optimizer step.</item>
/// <item>ZeRO 1: the same all-reduce, but the optimizer state is sharded: each bucket is cut into WorldSize equal
/// pieces, rank r keeps AdamW's moments (and bf16 masters) for piece r only, updates those parameter elements, and
/// the updated parameters are all-gathered.</item>
/// <item>ZeRO 2: gradients sharded too: each bucket is reduce-scattered, so a rank holds only its piece of the
/// reduced gradient (the full local gradients are freed); the global norm is the sum of the pieces' squared norms.</item>
/// </list>
/// A world of one with ZeRO 0 runs exactly the single-process code (no packing, <see cref="GradClip.ClipGradNorm"/>).
/// Parameters that got no gradient on a rank count as zeros, so every rank takes part in every bucket.
/// </summary>
public sealed class DataParallel : IDisposable
{
    private readonly List<Bucket> _buckets = [];
    private readonly List<Piece> _pieces = [];
    private readonly Func<IReadOnlyList<Variable>, Optimizer> _createOptimizer;
    private readonly DType _commType;
    private readonly Dictionary<Variable, List<int>> _bucketsOf = new(ReferenceEqualityComparer.Instance);
    private int[] _waiting = [];
    private PendingCollective?[] _inFlight = [];

    /// <summary>The process group.</summary>
    public ProcessGroup Group { get; }
    /// <summary>0, 1 or 2.</summary>
    public int ZeroStage { get; }
    /// <summary>The parameters trained (every rank lists the same, in the same order).</summary>
    public IReadOnlyList<Variable> Parameters { get; }
    /// <summary>The optimizer this rank steps: over <see cref="Parameters"/> (ZeRO 0) or over views of its own pieces (ZeRO 1/2).</summary>
    public Optimizer Optimizer { get; }
    /// <summary>Number of gradient buckets.</summary>
    public int BucketCount => _buckets.Count;
    /// <summary>Buckets whose reduction the last <see cref="Backward"/> started before backward had finished.</summary>
    public int BucketsStartedInBackward { get; private set; }

    /// <summary>
    /// Bucket size in elements: <c>PARROT_DIST_BUCKET_MB</c> MiB of float32 when set, else 25 MiB (PyTorch DDP's default).
    /// </summary>
    public static long DefaultBucketElements()
    {
        var v = Environment.GetEnvironmentVariable("PARROT_DIST_BUCKET_MB");
        double mib = 25;
        if (!string.IsNullOrWhiteSpace(v) && (!double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out mib) || !(mib > 0) || double.IsInfinity(mib)))
            throw new ArgumentException($"PARROT_DIST_BUCKET_MB must be a positive number of MiB, got '{v}'");
        return Math.Max(1, (long)(mib * (1 << 20) / 4));
    }

    /// <summary>
    /// Sets up buckets and, for ZeRO 1/2, this rank's pieces; <paramref name="createOptimizer"/> builds the optimizer
    /// over the variables it is given (the parameters, or the pieces). Call <see cref="BroadcastParameters"/> before
    /// training when the ranks' initial weights could differ.
    /// </summary>
    public DataParallel(ProcessGroup group, IReadOnlyList<Variable> parameters, int zeroStage, Func<IReadOnlyList<Variable>, Optimizer> createOptimizer, long? bucketElements = null)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(createOptimizer);
        if (zeroStage is < 0 or > 2) throw new ArgumentOutOfRangeException(nameof(zeroStage), zeroStage, "ZeRO stage must be 0, 1 or 2");
        if (parameters.Count == 0) throw new ArgumentException("data parallel: no parameters to train");
        Group = group; ZeroStage = zeroStage; Parameters = parameters; _createOptimizer = createOptimizer;
        _commType = parameters.All(p => p.DType == DType.F64) ? DType.F64 : DType.F32;
        long cap = bucketElements ?? DefaultBucketElements();
        if (cap <= 0) throw new ArgumentOutOfRangeException(nameof(bucketElements), cap, "bucket size must be positive");

        // Buckets in reverse parameter order (the order backward finishes gradients); a parameter larger than a
        // bucket is split across buckets, so each collective stays below the cap.
        int n = group.WorldSize;
        var current = new List<Segment>();
        long filled = 0;
        for (int i = parameters.Count - 1; i >= 0; i--)
        {
            var p = parameters[i];
            if (!p.Value.IsContiguous) throw new ArgumentException($"data parallel: parameter {p.Describe()} is not contiguous");
            for (long done = 0; done < p.Value.Count;)
            {
                long take = Math.Min(p.Value.Count - done, cap - filled);
                current.Add(new Segment(p, done, filled, take));
                done += take; filled += take;
                if (filled == cap) { _buckets.Add(new Bucket(current, filled, n, _commType, zeroStage == 2)); current = []; filled = 0; }
            }
        }
        if (filled > 0) _buckets.Add(new Bucket(current, filled, n, _commType, zeroStage == 2));
        for (int b = 0; b < _buckets.Count; b++)
            foreach (var s in _buckets[b].Segments)
            {
                if (!_bucketsOf.TryGetValue(s.Parameter, out var list)) _bucketsOf[s.Parameter] = list = [];
                if (!list.Contains(b)) list.Add(b);
            }
        _waiting = new int[_buckets.Count];
        _inFlight = new PendingCollective?[_buckets.Count];

        if (zeroStage == 0) Optimizer = createOptimizer(parameters);
        else
        {
            foreach (var b in _buckets)
            {
                long lo = (long)group.Rank * b.Shard, hi = lo + b.Shard;
                foreach (var s in b.Segments)
                {
                    long a = Math.Max(lo, s.BucketOffset), e = Math.Min(hi, s.BucketOffset + s.Length);
                    if (a >= e) continue;
                    long paramOffset = s.ParamOffset + (a - s.BucketOffset);
                    var view = TensorScope.Detach(FlatView(s.Parameter.Value, paramOffset, e - a));
                    var piece = new Variable(view, requiresGrad: true, name: $"{s.Parameter.Name}[{paramOffset}:{paramOffset + e - a}]");
                    _pieces.Add(new Piece(piece, s.Parameter, paramOffset, b, a - lo, e - a));
                }
            }
            if (_pieces.Count == 0)
                throw new ArgumentException($"ZeRO-{zeroStage}: rank {group.Rank} of {n} owns no parameter element (the model has fewer elements than ranks per bucket)");
            Optimizer = createOptimizer(_pieces.Select(p => p.Variable).ToList());
        }
    }

    private static Tensor FlatView(Tensor t, long offset, long length)
    {
        using var flat = t.Reshape(-1);
        return flat.Narrow(0, checked((int)offset), checked((int)length));
    }

    /// <summary>Makes every rank's parameters equal to rank <paramref name="root"/>'s.</summary>
    public void BroadcastParameters(int root = 0)
    {
        if (Group.WorldSize == 1) return;
        using var ng = Graph.NoGrad();
        foreach (var b in _buckets)
        {
            using var scope = TensorScope.Begin();
            b.Pack(s => s.Parameter.Value);
            Group.Broadcast(b.Flat, root);
            b.Unpack();
        }
    }

    /// <summary>Clears every gradient (the parameters' and the pieces').</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters) p.ZeroGrad();
        Optimizer.ZeroGrad();
    }

    /// <summary>
    /// Back-propagates <paramref name="loss"/>, the step's last micro-batch (earlier micro-batches call
    /// <c>loss.Backward()</c> and communicate nothing), and starts each bucket's reduction as soon as backward has
    /// finished every gradient in it, so communication runs while backward computes the rest;
    /// <see cref="ReduceGradients"/> then starts what is left and waits. A world of one with ZeRO 0 is plain backward.
    /// </summary>
    public void Backward(Variable loss)
    {
        ArgumentNullException.ThrowIfNull(loss);
        BucketsStartedInBackward = 0;
        if (Group.WorldSize == 1 && ZeroStage == 0)
        {
            loss.Backward();
            return;
        }
        for (int b = 0; b < _buckets.Count; b++)
        {
            if (_inFlight[b] is not null) throw new InvalidOperationException("DataParallel.Backward: the previous step's reductions were not completed (call ReduceGradients)");
            _waiting[b] = 0;
        }
        foreach (var list in _bucketsOf.Values) foreach (int b in list) _waiting[b]++;
        Graph.Backward(loss, null, OnLeafGradient);
    }

    private void OnLeafGradient(Variable leaf)
    {
        if (!_bucketsOf.TryGetValue(leaf, out var list)) return;
        foreach (int b in list)
            if (--_waiting[b] == 0)
            {
                StartBucket(b);
                BucketsStartedInBackward++;
            }
        // MPI progresses non-blocking collectives inside its calls: poll the ones in flight.
        foreach (var p in _inFlight) p?.Test();
    }

    private void StartBucket(int b)
    {
        using var ng = Graph.NoGrad();
        using var scope = TensorScope.Begin();
        var bucket = _buckets[b];
        bucket.Pack(s => s.Parameter.Grad);
        _inFlight[b] = ZeroStage == 2 ? Group.StartReduceScatter(bucket.Flat, bucket.OwnGrad!) : Group.StartAllReduce(bucket.Flat);
    }

    /// <summary>
    /// Sums the gradients over ranks and multiplies them by <paramref name="scale"/> (1/WorldSize when each rank's
    /// loss is a mean over an equal share; 1/(global count) when each rank back-propagated a sum), then clips the
    /// global norm to <paramref name="maxNorm"/> as <see cref="GradClip.ClipGradNorm"/> does. Returns the norm before
    /// clipping (the same on every rank). Call once per optimizer step, after the last micro-batch's backward.
    /// </summary>
    public double ReduceGradients(double scale, double maxNorm = double.PositiveInfinity)
    {
        using var ng = Graph.NoGrad();
        // A world of one: the scale and the clipping in one pass over the gradients (on CUDA a few launches per 64 of them).
        if (Group.WorldSize == 1 && ZeroStage == 0) return GradClip.ScaleAndClipGradNorm(Parameters, scale, maxNorm);

        for (int b = 0; b < _buckets.Count; b++)
            if (_inFlight[b] is null) StartBucket(b);
        for (int b = 0; b < _buckets.Count; b++)
        {
            _inFlight[b]!.Wait();
            _inFlight[b] = null;
        }

        if (ZeroStage < 2)
        {
            foreach (var b in _buckets)
            {
                using var scope = TensorScope.Begin();
                if (scale != 1) Scale(b.Flat, scale);
                foreach (var s in b.Segments) EnsureGrad(s.Parameter);
                b.Unpack(s => s.Parameter.Grad!);
            }
            return GradClip.ClipGradNorm(Parameters, maxNorm);
        }

        // ZeRO-2: only this rank's reduced pieces are kept.
        foreach (var p in Parameters) p.ZeroGrad();
        // This rank's share of the squared norm, each bucket's sum stored in float32 as GradClip's (not in the gradients'
        // dtype: an f16 sum overflows past 65504); on CUDA a few launches and one read for all buckets, not one per bucket.
        double local = GradClip.ScaleAndSumOfSquares(_buckets.Select(b => b.OwnGrad!).ToList(), scale);
        double norm = Math.Sqrt(Group.AllReduce(local));
        if (double.IsFinite(norm) && !double.IsPositiveInfinity(maxNorm))
        {
            double coef = maxNorm / (norm + 1e-6);
            if (coef < 1)
                foreach (var b in _buckets) Scale(b.OwnGrad!, coef);
        }
        return norm;
    }

    /// <summary>
    /// One optimizer step with the reduced gradients: ZeRO 0 steps every parameter; ZeRO 1/2 step this rank's pieces
    /// and all-gather the updated parameters.
    /// </summary>
    public void Step()
    {
        if (ZeroStage == 0)
        {
            Optimizer.Step();
            return;
        }
        using (var ng = Graph.NoGrad())
        using (var scope = TensorScope.Begin())
        {
            foreach (var piece in _pieces)
            {
                piece.Variable.ZeroGrad();
                Tensor grad = ZeroStage == 2
                    ? piece.Bucket.OwnGrad!.Narrow(0, (int)piece.ShardOffset, (int)piece.Length)
                    : FlatView(piece.Parameter.Grad ?? throw new InvalidOperationException($"ZeRO-1: {piece.Parameter.Describe()} has no gradient; call ReduceGradients first"), piece.ParamOffset, piece.Length);
                piece.Variable.Backward(grad);
            }
        }
        Optimizer.Step();
        var pending = new List<PendingCollective>(_buckets.Count);
        using (var scope = TensorScope.Begin())
        {
            foreach (var b in _buckets)
            {
                var own = b.Flat.Narrow(0, checked((int)(Group.Rank * b.Shard)), checked((int)b.Shard));
                foreach (var piece in _pieces.Where(q => q.Bucket == b))
                    own.Narrow(0, (int)piece.ShardOffset, (int)piece.Length).CopyFrom(piece.Variable.Value);
                pending.Add(Group.StartAllGather(own, b.Flat));
            }
            PendingCollective.WaitAll(pending);
        }
        using (var ng = Graph.NoGrad())
            foreach (var b in _buckets)
            {
                using var scope = TensorScope.Begin();
                b.Unpack();
            }
    }

    /// <summary>
    /// The optimizer over all of <see cref="Parameters"/> with the whole state, for a checkpoint: ZeRO 0 returns
    /// <see cref="Optimizer"/> itself; ZeRO 1/2 gather every rank's moments (and masters) into a new optimizer the
    /// caller disposes. Collective: every rank must call it.
    /// </summary>
    public Optimizer GatherOptimizer()
    {
        if (ZeroStage == 0) return Optimizer;
        var full = _createOptimizer(Parameters);
        full.LearningRate = Optimizer.LearningRate;
        full.StepCount = Optimizer.StepCount;
        var slots = Slots(Optimizer);
        var gathered = new Dictionary<Variable, Tensor[]>(ReferenceEqualityComparer.Instance);
        foreach (var p in Parameters)
            gathered[p] = slots.Select(_ => TensorScope.Detach(Tensor.Zeros(p.Shape, p.DType == DType.F64 ? DType.F64 : DType.F32, p.Value.Device))).ToArray();
        try
        {
            for (int k = 0; k < slots.Length; k++)
                foreach (var b in _buckets)
                {
                    using var scope = TensorScope.Begin();
                    var own = b.Flat.Narrow(0, checked((int)(Group.Rank * b.Shard)), checked((int)b.Shard));
                    own.Fill(0);
                    foreach (var piece in _pieces.Where(q => q.Bucket == b))
                        if (SlotTensor(Optimizer, piece.Variable, k) is Tensor t)
                            own.Narrow(0, (int)piece.ShardOffset, (int)piece.Length).CopyFrom(t);
                    Group.AllGather(own, b.Flat);
                    foreach (var s in b.Segments)
                        FlatView(gathered[s.Parameter][k], s.ParamOffset, s.Length).CopyFrom(b.Flat.Narrow(0, (int)s.BucketOffset, (int)s.Length));
                }
            foreach (var p in Parameters) SetSlots(full, p, gathered[p]);
        }
        finally
        {
            foreach (var ts in gathered.Values) foreach (var t in ts) t.Dispose();
        }
        return full;
    }

    /// <summary>Takes this rank's share of a whole optimizer state (read from a checkpoint by every rank); ZeRO 0 needs no call.</summary>
    public void ScatterOptimizer(Optimizer full)
    {
        ArgumentNullException.ThrowIfNull(full);
        if (ZeroStage == 0) return;
        Optimizer.StepCount = full.StepCount;
        Optimizer.LearningRate = full.LearningRate;
        int slots = Slots(full).Length;
        using var scope = TensorScope.Begin();
        foreach (var piece in _pieces)
        {
            var parts = new Tensor[slots];
            bool any = true;
            for (int k = 0; k < slots; k++)
            {
                if (SlotTensor(full, piece.Parameter, k) is not Tensor t) { any = false; break; }
                parts[k] = FlatView(t, piece.ParamOffset, piece.Length);
            }
            if (any) SetSlots(Optimizer, piece.Variable, parts);
        }
    }

    /// <summary>Bytes this rank holds for the parameters, the gradients after reduction, the optimizer state and the communication buffers.</summary>
    public DataParallelMemory Memory()
    {
        long param = Parameters.Sum(p => p.Value.Count * p.Value.ElementSize);
        long grads = ZeroStage == 2 ? _buckets.Sum(b => b.Shard * b.Flat.ElementSize) : Parameters.Sum(p => p.Value.Count * p.Value.ElementSize);
        long state = 0;
        int slots = Slots(Optimizer).Length;
        foreach (var v in Optimizer.Parameters)
            for (int k = 0; k < slots; k++)
                if (SlotTensor(Optimizer, v, k) is Tensor t && !ReferenceEquals(t, v.Value)) state += t.Count * t.ElementSize;
        long comm = _buckets.Sum(b => b.Flat.Count * b.Flat.ElementSize + (b.OwnGrad?.Count * b.OwnGrad?.ElementSize ?? 0));
        return new DataParallelMemory(param, grads, state, comm);
    }

    private static void Scale(Tensor t, double factor)
    {
        using var scaled = t * factor;
        t.CopyFrom(scaled);
    }

    private static void EnsureGrad(Variable p)
    {
        if (p.Grad is not null || !p.RequiresGrad) return;
        // A leaf's own backward with a zero seed creates its gradient tensor (owned by the variable).
        using var zero = Tensor.Zeros(p.Shape, p.DType, p.Value.Device);
        p.Backward(zero);
    }

    private static string[] Slots(Optimizer o) => o switch
    {
        AdamW => ["m", "v"],
        MixedPrecisionAdamW => ["master", "m", "v"],
        _ => throw new NotSupportedException($"ZeRO shards AdamW and MixedPrecisionAdamW state, not {o.GetType().Name}"),
    };

    private static Tensor? SlotTensor(Optimizer o, Variable p, int k) => o switch
    {
        AdamW a => a.State(p) is var (m, v) ? (k == 0 ? m : v) : null,
        MixedPrecisionAdamW mp => k switch { 0 => mp.Master(p), 1 => mp.Moments(p).M, _ => mp.Moments(p).V },
        _ => null,
    };

    private static void SetSlots(Optimizer o, Variable p, Tensor[] parts)
    {
        switch (o)
        {
            case AdamW a: a.SetState(p, Shaped(parts[0], p), Shaped(parts[1], p)); break;
            case MixedPrecisionAdamW mp: mp.SetState(p, Shaped(parts[0], p), Shaped(parts[1], p), Shaped(parts[2], p)); break;
        }
    }

    private static Tensor Shaped(Tensor t, Variable p) => t.Shape.SequenceEqual(p.Shape) ? t : t.Reshape(p.Shape.ToArray());

    /// <summary>Frees the optimizer, the communication buffers and the piece views.</summary>
    public void Dispose()
    {
        Optimizer.Dispose();
        foreach (var b in _buckets) b.Dispose();
        foreach (var p in _pieces) p.Variable.Value.Dispose();
    }

    /// <summary>Elements [ParamOffset, +Length) of a parameter at [BucketOffset, +Length) of a bucket.</summary>
    private sealed record Segment(Variable Parameter, long ParamOffset, long BucketOffset, long Length);

    /// <summary>This rank's piece of a bucket: a view of a parameter, at ShardOffset within the rank's shard.</summary>
    private sealed record Piece(Variable Variable, Variable Parameter, long ParamOffset, Bucket Bucket, long ShardOffset, long Length);

    private sealed class Bucket : IDisposable
    {
        public List<Segment> Segments { get; }
        /// <summary>Elements per rank: the bucket padded to a multiple of the world size, divided by it.</summary>
        public long Shard { get; }
        /// <summary>The packed bucket (padded), reused every step.</summary>
        public Tensor Flat { get; }
        /// <summary>ZeRO-2: this rank's reduced piece of the gradient.</summary>
        public Tensor? OwnGrad { get; }

        public Bucket(List<Segment> segments, long length, int worldSize, DType type, bool shardGradients)
        {
            Segments = segments;
            Shard = (length + worldSize - 1) / worldSize;
            var device = segments[0].Parameter.Value.Device;
            Flat = TensorScope.Detach(Tensor.Zeros([checked((int)(Shard * worldSize))], type, device));
            OwnGrad = shardGradients ? TensorScope.Detach(Tensor.Zeros([checked((int)Shard)], type, device)) : null;
        }

        /// <summary>Copies each segment's source (zeros where it is null) into <see cref="Flat"/>.</summary>
        public void Pack(Func<Segment, Tensor?> source)
        {
            foreach (var s in Segments)
            {
                var dst = Flat.Narrow(0, (int)s.BucketOffset, (int)s.Length);
                if (source(s) is Tensor t) dst.CopyFrom(FlatView(t, s.ParamOffset, s.Length));
                else dst.Fill(0);
            }
        }

        /// <summary>Copies <see cref="Flat"/> back into each segment's target (the parameter values by default).</summary>
        public void Unpack(Func<Segment, Tensor>? target = null)
        {
            foreach (var s in Segments)
                FlatView(target?.Invoke(s) ?? s.Parameter.Value, s.ParamOffset, s.Length).CopyFrom(Flat.Narrow(0, (int)s.BucketOffset, (int)s.Length));
        }

        public void Dispose() { Flat.Dispose(); OwnGrad?.Dispose(); }
    }
}

/// <summary>Bytes one rank holds in data-parallel training.</summary>
/// <param name="Parameters">The model's trained parameters (whole on every rank: ZeRO 1/2 do not shard them).</param>
/// <param name="Gradients">Gradients kept after the reduction (whole for ZeRO 0/1, this rank's pieces for ZeRO 2).</param>
/// <param name="OptimizerState">AdamW moments (and bf16 masters) this rank keeps (a 1/WorldSize share for ZeRO 1/2).</param>
/// <param name="CommunicationBuffers">The packed buckets (and ZeRO-2's reduced pieces).</param>
public sealed record DataParallelMemory(long Parameters, long Gradients, long OptimizerState, long CommunicationBuffers)
{
    /// <summary>The sum.</summary>
    public long Total => Parameters + Gradients + OptimizerState + CommunicationBuffers;

    /// <summary>"params 1.2 MiB, grads ..., optimizer ..., buffers ..., total ...".</summary>
    public override string ToString()
    {
        static string M(long b) => (b / 1048576.0).ToString("F2", CultureInfo.InvariantCulture) + " MiB";
        return $"params {M(Parameters)}, grads {M(Gradients)}, optimizer {M(OptimizerState)}, buffers {M(CommunicationBuffers)}, total {M(Total)}";
    }
}
