using System.Globalization;
using System.Text;
using Parrot.Tensors.Cuda.Interop;

namespace Parrot.Tensors.Cuda;

/// <summary>Which causal mask the cuDNN graph applies.</summary>
internal enum CudnnSdpaMask
{
    /// <summary>No mask: every query sees every key.</summary>
    None,
    /// <summary>Query i sees keys 0..i (query offset 0).</summary>
    TopLeft,
    /// <summary>Query i sees keys 0..i + S − T (the KV-cache case, query offset S − T, S &gt; T).</summary>
    BottomRight,
}

/// <summary>
/// One cuDNN SDPA call as the plan cache sees it: forward or backward, data type, sizes, mask, whether the forward
/// writes the log-sum-exp, every operand's strides, and for a backward whether dQ is computed deterministically.
/// Equal problems share one execution plan; the attention scale is not part of it (the graphs take it as a by-value
/// scalar at each call). Deterministic (backward only): the graph without the float32 dQ accumulator (dS·K written
/// straight into dQ), which cudnn-frontend builds for <c>set_deterministic_algorithm(true)</c> and cuDNN runs on its
/// "dP workspace" engine (no atomic adds, the same bits run to run); false: the accumulator graph, whose engine adds
/// each key block's share of dQ atomically. The forward ignores it (one graph, deterministic either way).
/// </summary>
internal sealed record CudnnSdpaProblem(bool Backward, DType DType, int B, int H, int Hkv, int T, int S, int D, int Dv, CudnnSdpaMask Mask, bool Stats,
    long[] Q, long[] K, long[] V, long[] O, long[] Lse, long[]? DOut = null, long[]? Dq = null, long[]? Dk = null, long[]? Dv_ = null,
    bool Deterministic = false)
{
    /// <summary>
    /// The plan cache's key: everything above as a value (the stride arrays spelled out), a backward's dQ algorithm
    /// included so that a deterministic and an atomic plan never stand in for each other.
    /// </summary>
    internal string Key
    {
        get
        {
            var sb = new StringBuilder();
            sb.Append(CultureInfo.InvariantCulture, $"{(Backward ? "bwd" : "fwd")} {DType.Name()} B{B} H{H} Hkv{Hkv} T{T} S{S} D{D} Dv{Dv} {Mask} stats={Stats}");
            if (Backward) sb.Append(Deterministic ? " dq=deterministic" : " dq=atomic");
            void Add(string n, long[]? s) { if (s is not null) sb.Append(CultureInfo.InvariantCulture, $" {n}[{string.Join(',', s)}]"); }
            Add("q", Q); Add("k", K); Add("v", V); Add("o", O); Add("lse", Lse); Add("do", DOut); Add("dq", Dq); Add("dk", Dk); Add("dv", Dv_);
            return sb.ToString();
        }
    }

    /// <summary>What the graph is, for messages: "forward", "deterministic backward" or "backward (atomic dQ)".</summary>
    internal string What => !Backward ? "forward" : Deterministic ? "deterministic backward" : "backward (atomic dQ)";

    /// <summary>cudnnDataType_t of the operands.</summary>
    internal int CudnnType => DType == DType.BF16 ? Cudnn.DataType.BFloat16 : Cudnn.DataType.Half;

    /// <summary>The largest head dim cuDNN 9's SDPA forward (256) and backward (128) engines take (cudnn-frontend's checks).</summary>
    internal static int MaxHeadDim(bool backward) => backward ? 128 : 256;

    /// <summary>
    /// Why cuDNN's SDPA cannot take these sizes, dtypes and mask, or null when it can; <paramref name="mask"/> gets the
    /// graph's mask. bf16/f16 in and out, head dims multiples of 8 up to <see cref="MaxHeadDim"/>, H a multiple of
    /// Hkv, no additive mask, causal with query offset 0 (top-left) or S − T with S &gt; T (bottom-right).
    /// </summary>
    internal static string? Check(bool backward, DType dtype, DType outputDType, int h, int hkv, int t, int s, int d, int dv,
        bool hasMask, bool causal, int queryOffset, out CudnnSdpaMask mask)
    {
        mask = CudnnSdpaMask.None;
        if (dtype != DType.BF16 && dtype != DType.F16) return $"cuDNN SDPA takes bf16 or f16, not {dtype.Name()}";
        if (outputDType != dtype) return $"output dtype {outputDType.Name()} differs from the inputs' {dtype.Name()}";
        int max = MaxHeadDim(backward);
        if (d % 8 != 0 || dv % 8 != 0 || d > max || dv > max) return $"head dims {d}/{dv}: cuDNN SDPA {(backward ? "backward" : "forward")} takes multiples of 8 up to {max}";
        if (hkv <= 0 || h % hkv != 0) return $"{h} query heads are not a multiple of {hkv} kv heads";
        if (t <= 0 || s <= 0) return "no query or no key";
        if (hasMask) return "an additive (padding) mask: the graphs built here apply only causal masks";
        if (!causal) return null;
        if (queryOffset == 0) { mask = CudnnSdpaMask.TopLeft; return null; }
        if (queryOffset == s - t && s > t) { mask = CudnnSdpaMask.BottomRight; return null; }
        return $"causal with query offset {queryOffset} (cuDNN's masks are offset 0 or S − T = {s - t})";
    }

    /// <summary>
    /// Why cuDNN cannot read a [B, H, rows, D] operand in place, or null: unit head-dim stride, a non-zero row stride,
    /// the other strides multiples of 16 bytes (the tensors are declared 16-byte aligned, and Hopper's engines load
    /// rows by TMA), and 16-byte aligned data.
    /// </summary>
    internal static string? CheckLayout(string name, ReadOnlySpan<long> strides, nint data, int elementSize)
    {
        if (strides.Length != 4) return $"{name}: rank {strides.Length}, not 4";
        if (strides[3] != 1) return $"{name}: head-dim stride {strides[3]}, cuDNN needs 1";
        if (strides[2] == 0) return $"{name}: a broadcast row (stride 0)";
        long unit = 16 / elementSize;
        for (int i = 0; i < 3; i++)
            if (strides[i] < 0 || strides[i] % unit != 0) return $"{name}: stride {strides[i]} of dim {i} is not a multiple of 16 bytes";
        if (data % 16 != 0) return $"{name}: data not 16-byte aligned";
        return null;
    }

    /// <summary>Why a float32 [B, H, T] log-sum-exp cannot be cuDNN's stats tensor ([B, H, T, 1], packed), or null.</summary>
    internal static string? CheckStats(DType dtype, ReadOnlySpan<long> strides, int h, int t, nint data)
    {
        if (dtype != DType.F32) return $"log-sum-exp in {dtype.Name()}, cuDNN writes float32";
        if (strides.Length != 3 || strides[2] != 1 || strides[1] != t || strides[0] != (long)h * t) return "log-sum-exp not packed [B, H, T]";
        if (data % 16 != 0) return "log-sum-exp not 16-byte aligned";
        return null;
    }
}
