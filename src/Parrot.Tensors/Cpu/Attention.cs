namespace Parrot.Tensors.Cpu;

public sealed partial class CpuBackend
{
    /// <inheritdoc/>
    public void Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, int queryOffset, double scale, Tensor output, Tensor? logSumExp)
    {
        var problem = new AttentionProblem(q, k, v, mask, causal, queryOffset, scale, output, logSumExp);
        if (problem.Rows == 0) return;
        if (q.DType == DType.F64) AttentionF64.Run(problem);
        else AttentionF32.Run(problem);
    }

    /// <inheritdoc/>
    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor o, Tensor dO, Tensor logSumExp, Tensor? mask, bool causal, int queryOffset, double scale,
        Tensor? dq, Tensor? dk, Tensor? dv) =>
        Tensor.AttentionBackwardComposite(q, k, v, o, dO, logSumExp, mask, causal, queryOffset, scale, dq, dk, dv);
}

/// <summary>
/// One attention call as the kernels read it: the sizes, and for every operand its storage pointer, dtype,
/// element offset and strides, so that views (a KV cache's prefix, transposed heads, a broadcast mask) are
/// read in place. Construction checks what the backend contract promises, so a bad call fails loudly
/// instead of reading out of bounds.
/// </summary>
internal sealed class AttentionProblem
{
    public int B { get; }
    public int H { get; }
    public int KvHeads { get; }
    public int T { get; }
    public int S { get; }
    public int D { get; }
    public int Dv { get; }
    /// <summary>Query heads per kv head.</summary>
    public int Group => H / KvHeads;
    public bool Causal { get; }
    public int QueryOffset { get; }
    public double Scale { get; }
    /// <summary>Query rows, B·H·T.</summary>
    public long Rows => (long)B * H * T;

    public Operand Q { get; }
    public Operand K { get; }
    public Operand V { get; }
    public Operand? Mask { get; }
    public Operand Output { get; }
    public Operand? LogSumExp { get; }

    public AttentionProblem(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, int queryOffset, double scale, Tensor output, Tensor? lse)
    {
        const string op = "Attention";
        foreach (var t in new[] { q, k, v, output }) t.EnsureAlive(op);
        mask?.EnsureAlive(op);
        lse?.EnsureAlive(op);
        string shapes = $"q {q.ShapeString()}, k {k.ShapeString()}, v {v.ShapeString()}, output {output.ShapeString()}";
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4 || output.Rank != 4)
            throw new ArgumentException($"{op}: operands must be [B, heads, seq, dim]; got {shapes}");
        B = q.Dim(0); H = q.Dim(1); T = q.Dim(2); D = q.Dim(3);
        KvHeads = k.Dim(1); S = k.Dim(2); Dv = v.Dim(3);
        bool ok = k.Dim(0) == B && v.Dim(0) == B && k.Dim(3) == D && v.Dim(1) == KvHeads && v.Dim(2) == S
            && KvHeads > 0 && H % KvHeads == 0
            && output.Dim(0) == B && output.Dim(1) == H && output.Dim(2) == T && output.Dim(3) == Dv;
        if (!ok) throw new ArgumentException($"{op}: incompatible shapes {shapes}");
        if (!q.DType.IsFloat() || k.DType != q.DType || v.DType != q.DType || output.DType != q.DType)
            throw new ArgumentException($"{op}: q, k, v and output must share one float dtype; got {q.DType.Name()}, {k.DType.Name()}, {v.DType.Name()}, {output.DType.Name()}");
        if (mask is not null && (mask.Rank != 4 || mask.Dim(0) != B || mask.Dim(1) != H || mask.Dim(2) != T || mask.Dim(3) != S || !mask.DType.IsFloat()))
            throw new ArgumentException($"{op}: the mask {mask.ShapeString()} {mask.DType.Name()} must be a float tensor broadcast to [{B}, {H}, {T}, {S}]");
        var lseType = q.DType == DType.F64 ? DType.F64 : DType.F32;
        if (lse is not null && (lse.Rank != 3 || lse.Dim(0) != B || lse.Dim(1) != H || lse.Dim(2) != T || lse.DType != lseType))
            throw new ArgumentException($"{op}: the log-sum-exp {lse.ShapeString()} {lse.DType.Name()} must be [{B}, {H}, {T}] {lseType.Name()}");
        if (queryOffset < 0) throw new ArgumentOutOfRangeException(nameof(queryOffset), $"{op}: the query offset {queryOffset} must not be negative");
        if (!double.IsFinite(scale)) throw new ArgumentOutOfRangeException(nameof(scale), $"{op}: the scale {scale} must be finite");
        Causal = causal; QueryOffset = queryOffset; Scale = scale;
        Q = new Operand(q); K = new Operand(k); V = new Operand(v); Output = new Operand(output);
        Mask = mask is null ? null : new Operand(mask);
        LogSumExp = lse is null ? null : new Operand(lse);
    }

    /// <summary>Keys [0, end) that row (query index <paramref name="i"/>) may see, before the additive mask.</summary>
    public int VisibleKeys(int i) => Causal ? (int)Math.Clamp((long)QueryOffset + i + 1, 0, S) : S;

    /// <summary>Where a tensor's elements are: element [i0, i1, ...] is at Pointer + (Offset + Σ i·stride)·size.</summary>
    internal readonly struct Operand(Tensor t)
    {
        public nint Pointer { get; } = t.Storage.Pointer;
        public DType DType { get; } = t.DType;
        public long Offset { get; } = t.Offset;
        public long S0 { get; } = t.Strides[0];
        public long S1 { get; } = t.Strides[1];
        public long S2 { get; } = t.Strides[2];
        /// <summary>Stride of the last dim (the fourth; unused for the rank-3 log-sum-exp).</summary>
        public long S3 { get; } = t.Rank > 3 ? t.Strides[3] : 0;

        /// <summary>Address of element [a, b, c, 0].</summary>
        public nint At(long a, long b, long c) => Pointer + (nint)((Offset + a * S0 + b * S1 + c * S2) * DType.SizeOf());
    }
}
