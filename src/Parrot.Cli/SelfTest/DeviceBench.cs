using System.Globalization;
using System.Text;
using System.Text.Json;
using Parrot.Tensors;
using Parrot.Tensors.Cuda;

namespace Parrot.Cli.SelfTest;

/// <summary>
/// `parrot selftest --device cuda --bench FILE`: device timings (CUDA events, median of 10 after 3 warm-ups)
/// of the figures issue #7 compares with PyTorch: bf16 GEMM 4096³ and 8192³, a device-to-device copy, the Qwen2-7B
/// batch-1 decode products (matrix-vector kernel and cuBLASLt, GB/s of weights; the fused SwiGLU and the packed q/k/v
/// products beside the products they replace), and
/// attention forward, and forward + backward, at sequence 2048, head dims 128 and 64, bf16, on our tensor-core kernels
/// (cuDNN's attention, the default, off for these rows; the forward on each kernel: "attention fwd m128", "... per-dim")
/// and (rows "... FMA") on the FMA flash kernels beside them (reported as not implemented where a kernel is missing),
/// Qwen2-0.5B's grouped-head attention at its training shape, and one decode step's attention at caches of 160, 4096
/// and 32768 keys (rows "attention decode", "... tiled" beside them); the attention rows also through cuDNN's fused
/// SDPA ("attention fwd cuDNN", "attention fwd+bwd cuDNN").
/// </summary>
internal static class DeviceBench
{
    internal sealed record Result(string Name, string Shape, double Milliseconds, double Rate, string Unit, string Note);

    /// <summary>The groups <c>selftest --bench-group</c> runs alone (bench/cuda-on-device-decode.sh's A/B rows).</summary>
    internal static readonly string[] Groups = ["decode-attention", "decode-gemv"];

    /// <param name="progress">Called with the rows so far after each row (the caller saves them).</param>
    /// <param name="group">One of <see cref="Groups"/> alone; null: every row.</param>
    internal static List<Result> Run(CudaBackend cuda, Device device, TextWriter log, Action<IReadOnlyList<Result>>? progress = null, string? group = null)
    {
        var results = new List<Result>();
        void Add(Result r)
        {
            results.Add(r);
            progress?.Invoke(results);
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bench {r.Name,-22} {r.Shape,-28} {r.Milliseconds,10:F3} ms {r.Rate,10:F1} {r.Unit} {r.Note}"));
        }
        if (group is not null)
        {
            if (group == Groups[0])
            {
                Decode(cuda, device, Add);
                DecodeRope(cuda, device, Add); // the fused RoPE + append + attention beside it, both kernels
            }
            else if (group == Groups[1])
            {
                double copy = CopyRate(CopyMilliseconds(cuda, device));
                DecodeProducts(cuda, device, copy, Add);
                DecodeSwiGlu(cuda, device, copy, Add);
                DecodeQkv(cuda, device, copy, Add);
            }
            else throw new ArgumentException($"--bench-group: no group '{group}' (there is: {string.Join(", ", Groups)})");
            return results;
        }

        double copyMs = CopyMilliseconds(cuda, device);
        Add(new("copy d2d", "1 GiB f32", copyMs, CopyRate(copyMs), "GB/s", "read + write"));
        foreach (int n in new[] { 4096, 8192 })
        {
            using var a = Tensor.Normal([n, n], 1, 0, 1, DType.BF16, device);
            using var b = Tensor.Normal([n, n], 2, 0, 1, DType.BF16, device);
            using var c = Tensor.Empty([n, n], DType.BF16, device);
            double ms = cuda.MedianMilliseconds(() => cuda.MatMul(a, b, c));
            Add(new("gemm bf16", $"{n}x{n}x{n}", ms, 2.0 * n * n * (double)n / (ms * 1e-3) / 1e12, "TFLOP/s", "cuBLASLt, fp32 accumulate"));
        }
        DecodeProducts(cuda, device, results.Count > 0 ? results[0].Rate : double.NaN, Add);
        DecodeSwiGlu(cuda, device, results.Count > 0 ? results[0].Rate : double.NaN, Add);
        DecodeQkv(cuda, device, results.Count > 0 ? results[0].Rate : double.NaN, Add);
        SelfTestGradClipCases.Bench(cuda, device, Add);
        SelfTestScatterCases.Bench(cuda, device, Add);
        // The attention rows time our kernels with cuDNN's attention off (it is the default for bf16 where installed);
        // the "cuDNN" rows force it. The switch goes back to what it was afterwards.
        bool cudnn = cuda.CudnnAttention;
        cuda.CudnnAttention = false;
        try { OurAttention(cuda, device, Add); }
        finally { cuda.CudnnAttention = cudnn; }
        return results;
    }

    /// <summary>
    /// Attention forward, and forward + backward, at sequence 2048, head dims 128 and 64 (B4 H16, causal, bf16) on our
    /// kernels (with the forward kernels' variants, the FMA kernels and cuDNN beside them), Qwen2-0.5B's grouped heads
    /// at its training shape, and the decode step's attention; <see cref="CudaBackend.CudnnAttention"/> is off meanwhile.
    /// </summary>
    private static void OurAttention(CudaBackend cuda, Device device, Action<Result> add)
    {
        void Add(Result r) => add(r);
        // The "FMA" rows switch the tensor cores off for a moment; the switch goes back to what it was (off under
        // PARROT_TENSOR_CORE_ATTENTION=0, and then the plain rows say so instead of claiming tensor cores).
        bool tensorCores = cuda.TensorCoreAttention;
        string path = tensorCores ? "tensor cores" : "FMA: tensor cores off (PARROT_TENSOR_CORE_ATTENTION=0)";
        foreach (int D in new[] { 128, 64 }) // 64: the head dim of Qwen2-0.5B
        {
            const int B = 4, H = 16, T = 2048;
            using var q = Tensor.Normal([B, H, T, D], 3, 0, 1, DType.BF16, device);
            using var k = Tensor.Normal([B, H, T, D], 4, 0, 1, DType.BF16, device);
            using var v = Tensor.Normal([B, H, T, D], 5, 0, 1, DType.BF16, device);
            using var o = Tensor.Empty([B, H, T, D], DType.BF16, device);
            double flops = 4.0 * B * H * (double)T * T * D / 2; // causal: half of the two products
            try
            {
                double ms = cuda.MedianMilliseconds(() => cuda.Attention(q, k, v, null, true, 0, 1 / Math.Sqrt(D), o, null));
                Add(new("attention fwd causal", $"B{B} H{H} T{T} D{D}", ms, flops / (ms * 1e-3) / 1e12, "TFLOP/s", tensorCores ? "tensor cores (attention_mma.cu)" : path));
                if (tensorCores) ForwardVariants(cuda, $"B{B} H{H} T{T} D{D}", D, flops, () => cuda.Attention(q, k, v, null, true, 0, 1 / Math.Sqrt(D), o, null), Add);
                // The FMA flash kernel on the same operands: the tensor-core kernel's gain, measured in the same run.
                cuda.TensorCoreAttention = false;
                try
                {
                    double fma = cuda.MedianMilliseconds(() => cuda.Attention(q, k, v, null, true, 0, 1 / Math.Sqrt(D), o, null));
                    Add(new("attention fwd FMA", $"B{B} H{H} T{T} D{D}", fma, flops / (fma * 1e-3) / 1e12, "TFLOP/s", "attention_flash_forward, for comparison"));
                }
                finally
                {
                    cuda.TensorCoreAttention = tensorCores;
                }
            }
            catch (NotSupportedException e)
            {
                Add(new("attention fwd causal", $"B{B} H{H} T{T} D{D}", double.NaN, double.NaN, "TFLOP/s", "not implemented: " + e.Message.Split('\n')[0]));
            }
            using var dO = Tensor.Normal([B, H, T, D], 6, 0, 1, DType.BF16, device);
            using var lse = Tensor.Empty([B, H, T], DType.F32, device);
            using var dq = Tensor.Empty([B, H, T, D], DType.BF16, device);
            using var dk = Tensor.Empty([B, H, T, D], DType.BF16, device);
            using var dv = Tensor.Empty([B, H, T, D], DType.BF16, device);
            try
            {
                void Step()
                {
                    cuda.Attention(q, k, v, null, true, 0, 1 / Math.Sqrt(D), o, lse);
                    cuda.AttentionBackward(q, k, v, o, dO, lse, null, true, 0, 1 / Math.Sqrt(D), dq, dk, dv);
                }
                double ms = cuda.MedianMilliseconds(Step);
                Add(new("attention fwd+bwd", $"B{B} H{H} T{T} D{D}", ms, 3.5 * flops / (ms * 1e-3) / 1e12, "TFLOP/s", path + " (fwd+bwd = 3.5x fwd flops)"));
                cuda.TensorCoreAttention = false;
                try
                {
                    double fma = cuda.MedianMilliseconds(Step);
                    Add(new("attention fwd+bwd FMA", $"B{B} H{H} T{T} D{D}", fma, 3.5 * flops / (fma * 1e-3) / 1e12, "TFLOP/s", "attention_flash_* kernels, for comparison"));
                }
                finally
                {
                    cuda.TensorCoreAttention = tensorCores;
                }
            }
            catch (NotSupportedException e)
            {
                Add(new("attention fwd+bwd", $"B{B} H{H} T{T} D{D}", double.NaN, double.NaN, "TFLOP/s", "not implemented: " + e.Message.Split('\n')[0]));
            }
            if (D == 128) CudnnAttention(cuda, q, k, v, o, lse, dO, dq, dk, dv, flops, Add); // the headline shape only: each cuDNN plan costs seconds to build
        }
        GroupedAttentionStep(cuda, device, Add);
        Decode(cuda, device, Add);
        DecodeRope(cuda, device, Add);
    }

    /// <summary>
    /// The tensor-core forward on each kernel: the per-head-dim kernel (PARROT_ATTENTION_FWD=per-dim; head dim 80's) and,
    /// for head dims 64 and 128, the 128-row kernel (<see cref="CudaBackend.AttentionForwardM128"/>, the default): rows
    /// "attention fwd per-dim" and "attention fwd m128", the switch back to what it was afterwards.
    /// </summary>
    private static void ForwardVariants(CudaBackend cuda, string shape, int D, double flops, Action forward, Action<Result> add)
    {
        bool was = cuda.AttentionForwardM128;
        try
        {
            foreach (bool m128 in D is 64 or 128 ? new[] { false, true } : [false])
            {
                cuda.AttentionForwardM128 = m128;
                double ms = cuda.MedianMilliseconds(forward);
                add(new(m128 ? "attention fwd m128" : "attention fwd per-dim", shape, ms, flops / (ms * 1e-3) / 1e12, "TFLOP/s",
                    m128 ? $"attention_mma_forward_m128_d{D} (128 query rows a block, 2 m16 tiles a warp)" : $"attention_mma_forward_d{D} (64 query rows a block)"));
            }
        }
        finally
        {
            cuda.AttentionForwardM128 = was;
        }
    }

    /// <summary>
    /// Qwen2-0.5B's attention (14 query heads over 2 kv heads, head dim 64) at `bench train`'s batch 8 × 512, forward +
    /// backward on our kernels (row "attention fwd+bwd"; the grouped heads are where a dK/dV kernel with a block per kv
    /// head had 7 times fewer blocks than the dq kernel) and on cuDNN ("attention fwd+bwd cuDNN", atomic dQ, and
    /// "attention fwd+bwd cuDNN deterministic").
    /// </summary>
    private static void GroupedAttentionStep(CudaBackend cuda, Device device, Action<Result> add)
    {
        if (!cuda.TensorCoreAttention) return;
        const int B = 8, H = 14, Hkv = 2, T = 512, D = 64;
        using var q = Tensor.Normal([B, H, T, D], 13, 0, 1, DType.BF16, device);
        using var k = Tensor.Normal([B, Hkv, T, D], 14, 0, 1, DType.BF16, device);
        using var v = Tensor.Normal([B, Hkv, T, D], 15, 0, 1, DType.BF16, device);
        using var dO = Tensor.Normal([B, H, T, D], 16, 0, 1, DType.BF16, device);
        using var o = Tensor.Empty([B, H, T, D], DType.BF16, device);
        using var lse = Tensor.Empty([B, H, T], DType.F32, device);
        using var dq = Tensor.Empty([B, H, T, D], DType.BF16, device);
        using var dk = Tensor.Empty([B, Hkv, T, D], DType.BF16, device);
        using var dv = Tensor.Empty([B, Hkv, T, D], DType.BF16, device);
        void Step()
        {
            cuda.Attention(q, k, v, null, true, 0, 1 / Math.Sqrt(D), o, lse);
            cuda.AttentionBackward(q, k, v, o, dO, lse, null, true, 0, 1 / Math.Sqrt(D), dq, dk, dv);
        }
        double flops = 4.0 * B * H * (double)T * T * D / 2;
        double ms = cuda.MedianMilliseconds(Step);
        add(new("attention fwd+bwd", $"B{B} H{H} Hkv{Hkv} T{T} D{D}", ms, 3.5 * flops / (ms * 1e-3) / 1e12, "TFLOP/s",
            $"tensor cores: attention_mma_forward_{(cuda.AttentionForwardM128 ? "m128_" : "")}d64, dq, attention_mma_dkdv2.cu (split per query head + reduce)"));
        CudnnAttention(cuda, q, k, v, o, lse, dO, dq, dk, dv, flops, add, forward: false);
    }

    /// <summary>
    /// The attention rows again through cuDNN's fused SDPA (CudaBackend.Cudnn.cs, forced for these timings): rows
    /// "attention fwd cuDNN", "attention fwd+bwd cuDNN" (the backward's atomic dQ graph, as measured on the H200 and as
    /// PyTorch's cuDNN rows of the same name run it) and "attention fwd+bwd cuDNN deterministic" (the default backward,
    /// <see cref="CudaBackend.CudnnDeterministic"/>: no PyTorch row pairs with it) beside ours and PyTorch's flash rows
    /// (head dim 128; with <paramref name="forward"/> false only the fwd+bwd rows, as for Qwen2-0.5B's shape). Where
    /// cuDNN is missing, too old or refuses the graph the row says why (rate n/a) and the benchmark goes on.
    /// </summary>
    private static void CudnnAttention(CudaBackend cuda, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor dO, Tensor dq, Tensor dk, Tensor dv,
        double flops, Action<Result> add, bool forward = true)
    {
        int B = q.Shape[0], H = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1];
        string shape = Hkv == H ? $"B{B} H{H} T{T} D{D}" : $"B{B} H{H} Hkv{Hkv} T{T} D{D}";
        double scale = 1 / Math.Sqrt(D);
        var was = (cuda.CudnnAttentionRequired, cuda.CudnnDeterministic);
        cuda.CudnnAttentionRequired = true;
        void Step()
        {
            cuda.Attention(q, k, v, null, true, 0, scale, o, lse);
            cuda.AttentionBackward(q, k, v, o, dO, lse, null, true, 0, scale, dq, dk, dv);
        }
        try
        {
            foreach (var (name, factor, deterministic, step) in new (string, double, bool, Action)[]
            {
                ("attention fwd cuDNN", 1.0, false, () => cuda.Attention(q, k, v, null, true, 0, scale, o, null)),
                ("attention fwd+bwd cuDNN", 3.5, false, Step),
                ("attention fwd+bwd cuDNN deterministic", 3.5, true, Step),
            })
            {
                if (!forward && factor == 1.0) continue;
                cuda.CudnnDeterministic = deterministic;
                try
                {
                    double ms = cuda.MedianMilliseconds(step);
                    add(new(name, shape, ms, factor * flops / (ms * 1e-3) / 1e12, "TFLOP/s",
                        $"cuDNN fused SDPA ({cuda.CudnnAttentionPlan})" + (factor > 1 ? ", fwd+bwd = 3.5x fwd flops" : "")));
                }
                catch (Exception e) when (e is NotSupportedException or CudaException)
                {
                    add(new(name, shape, double.NaN, double.NaN, "TFLOP/s", "not run: " + e.Message.Split('\n')[0]));
                }
            }
        }
        finally
        {
            (cuda.CudnnAttentionRequired, cuda.CudnnDeterministic) = was;
        }
    }

    /// <summary>The time of a device-to-device copy of 1 GiB of float32 (read + write).</summary>
    private static double CopyMilliseconds(CudaBackend cuda, Device device)
    {
        long n = 256L << 20; // 1 GiB of float32
        using var src = Tensor.Zeros([(int)n], DType.F32, device);
        using var dst = Tensor.Empty([(int)n], DType.F32, device);
        src.Fill(1.25);
        return cuda.MedianMilliseconds(() => cuda.Copy(src, dst));
    }

    /// <summary>The copy bandwidth in GB/s of <see cref="CopyMilliseconds"/>' copy (bytes read + written / time): the decode rows' yardstick.</summary>
    private static double CopyRate(double copyMilliseconds) => 2.0 * (256L << 20) * 4 / (copyMilliseconds * 1e-3) / 1e9;

    /// <summary>
    /// The Qwen2-7B decode products (batch 1, bf16): x [1, K] · Wᵀ with W a row-major [N, K] weight, on the gemv
    /// kernel (native/gemv.cu) and, in the row after, on cuBLASLt (<see cref="CudaBackend.GemvKernel"/> off for a
    /// moment). Rate: W's bytes / time, in GB/s; the note gives the fraction of the copy row's bandwidth. Each timing
    /// runs the product over copies of W filling ≥ 256 MiB (more than the L2 cache) and reports the time per product,
    /// so weights come from memory as in a real decode step (a 3.7 MB weight read back to back would sit in L2).
    /// </summary>
    internal static void DecodeProducts(CudaBackend cuda, Device device, double copyRate, Action<Result> add)
    {
        bool on = cuda.GemvKernel;
        foreach (var (n, k, what) in new[] { (18944, 3584, "gate/up"), (3584, 18944, "down"), (3584, 3584, "q/o"), (512, 3584, "k/v"), (152064, 3584, "lm_head") })
        {
            long bytes = 2L * n * k;
            int copies = (int)Math.Max(1, ((256L << 20) + bytes - 1) / bytes);
            using var all = Tensor.Normal([copies * n, k], 7, 0, 0.02, DType.BF16, device);
            var weights = Enumerable.Range(0, copies).Select(i => { using var w = all.Narrow(0, i * n, n); return w.Transpose(0, 1); }).ToArray();
            using var x = Tensor.Normal([1, k], 8, 0, 1, DType.BF16, device);
            using var y = Tensor.Empty([1, n], DType.BF16, device);
            string shape = $"m1 N{n} K{k}";
            try
            {
                double Time() => cuda.MedianMilliseconds(() => { foreach (var w in weights) cuda.MatMul(x, w, y); }) / copies;
                string Note(double gbs, string path) => string.Create(CultureInfo.InvariantCulture, $"{what}, {path}, {gbs / copyRate:F2} of copy");
                double ms = Time();
                double rate = bytes / (ms * 1e-3) / 1e9;
                add(new("decode gemv bf16", shape, ms, rate, "GB/s", Note(rate, on ? "gemv.cu" : "cuBLASLt: gemv off (PARROT_CUDA_GEMV=0)")));
                // The other form of the kernel (CudaBackend.GemvLean: x per step, fewer registers), beside it.
                if (on)
                {
                    bool lean = cuda.GemvLean;
                    cuda.GemvLean = !lean;
                    try
                    {
                        double lm = Time();
                        double lr = bytes / (lm * 1e-3) / 1e9;
                        add(new(!lean ? "decode gemv lean" : "decode gemv plain", shape, lm, lr, "GB/s",
                            Note(lr, !lean ? "gemv_lean_bf16 (x per step; PARROT_GEMV_LEAN=1)" : "gemv_bf16 (PARROT_GEMV_LEAN off)")));
                    }
                    finally { cuda.GemvLean = lean; }
                }
                // Other targets of the K split (PARROT_GEMV_WARPS_PER_SM), where they change this shape's split.
                int target = cuda.GemvWarpsPerSm;
                var splits = new HashSet<int> { cuda.GemvSplitFor(n, k, true) };
                foreach (int other in new[] { 32, 64, 128 })
                {
                    int kw = cuda.GemvSplitFor(n, k, true, other);
                    if (!on || !splits.Add(kw)) continue;
                    cuda.GemvWarpsPerSm = other;
                    try
                    {
                        double t = Time();
                        double r = bytes / (t * 1e-3) / 1e9;
                        add(new($"decode gemv split {kw}", shape, t, r, "GB/s", Note(r, $"gemv.cu, K over {kw} warps (PARROT_GEMV_WARPS_PER_SM={other})")));
                    }
                    finally { cuda.GemvWarpsPerSm = target; }
                }
                cuda.GemvKernel = false;
                try
                {
                    double lt = Time();
                    double ltRate = bytes / (lt * 1e-3) / 1e9;
                    add(new("decode gemv cuBLASLt", shape, lt, ltRate, "GB/s", Note(ltRate, "cuBLASLt, for comparison")));
                }
                finally
                {
                    cuda.GemvKernel = on;
                }
            }
            finally
            {
                foreach (var w in weights) w.Dispose();
            }
        }
    }

    /// <summary>
    /// The gate and up products of Qwen2-7B's MLP in decode and the SwiGLU between them (batch 1, bf16, N 18944, K 3584):
    /// "decode swiglu gemv" is the fused kernel (<see cref="CudaBackend.SwiGluLinear"/>, one launch), "decode swiglu
    /// unfused" the two gemv products and SwiGlu it replaces (three launches). Rate: both weights' bytes / time, to
    /// compare with the gate/up row of <see cref="DecodeProducts"/> (one weight). Weights from memory as there.
    /// </summary>
    internal static void DecodeSwiGlu(CudaBackend cuda, Device device, double copyRate, Action<Result> add)
    {
        const int n = 18944, k = 3584;
        long bytes = 2L * 2 * n * k; // two bf16 weights
        int copies = (int)Math.Max(1, ((256L << 20) + bytes - 1) / bytes);
        using var all = Tensor.Normal([copies * 2 * n, k], 9, 0, 0.02, DType.BF16, device);
        var weights = Enumerable.Range(0, 2 * copies).Select(i => all.Narrow(0, i * n, n)).ToArray();
        using var x = Tensor.Normal([1, k], 10, 0, 1, DType.BF16, device);
        using var y = Tensor.Empty([1, n], DType.BF16, device);
        using var g = Tensor.Empty([1, n], DType.BF16, device);
        using var u = Tensor.Empty([1, n], DType.BF16, device);
        const string shape = "m1 N18944 K3584 x2";
        string Note(double gbs, string path) => string.Create(CultureInfo.InvariantCulture, $"gate+up+swiglu, {path}, {gbs / copyRate:F2} of copy");
        try
        {
            bool fused = true;
            double ms = cuda.MedianMilliseconds(() => { for (int i = 0; i < copies; i++) fused &= cuda.SwiGluLinear(x, weights[2 * i], weights[2 * i + 1], y); }) / copies;
            double rate = bytes / (ms * 1e-3) / 1e9;
            add(new("decode swiglu gemv", shape, ms, rate, "GB/s", Note(rate, fused ? "gemv.cu swiglu_gemv, 1 launch" : "NOT FUSED (gemv off or ineligible)")));
            // The other form of the kernel (CudaBackend.GemvLean: x per step, fewer registers), beside it.
            bool lean = cuda.GemvLean;
            cuda.GemvLean = !lean;
            try
            {
                double lm = cuda.MedianMilliseconds(() => { for (int i = 0; i < copies; i++) cuda.SwiGluLinear(x, weights[2 * i], weights[2 * i + 1], y); }) / copies;
                double lr = bytes / (lm * 1e-3) / 1e9;
                add(new(!lean ? "decode swiglu gemv lean" : "decode swiglu gemv plain", shape, lm, lr, "GB/s",
                    Note(lr, !lean ? "swiglu_gemv_lean_bf16 (x per step; PARROT_GEMV_LEAN=1)" : "swiglu_gemv_bf16 (PARROT_GEMV_LEAN off)")));
            }
            finally { cuda.GemvLean = lean; }
            double un = cuda.MedianMilliseconds(() =>
            {
                for (int i = 0; i < copies; i++)
                {
                    using var gT = weights[2 * i].Transpose(0, 1);
                    using var uT = weights[2 * i + 1].Transpose(0, 1);
                    cuda.MatMul(x, gT, g);
                    cuda.MatMul(x, uT, u);
                    cuda.SwiGlu(g, u, y);
                }
            }) / copies;
            double unRate = bytes / (un * 1e-3) / 1e9;
            add(new("decode swiglu unfused", shape, un, unRate, "GB/s", Note(unRate, "gemv, gemv, swiglu_forward: 3 launches, for comparison")));
        }
        finally
        {
            foreach (var w in weights) w.Dispose();
        }
    }

    /// <summary>
    /// The q, k and v products of Qwen2-7B's attention in decode (batch 1, bf16, K 3584, with biases): "decode qkv packed"
    /// is one product over the packed [3584 + 512 + 512, 3584] weight (what Attention runs since its q/k/v weights are
    /// row views of one buffer; one gemv launch), "decode qkv apart" the three products it replaced (three launches, the
    /// k and v ones launch-bound). Rate: the three weights' bytes / time; weights from memory as in
    /// <see cref="DecodeProducts"/>.
    /// </summary>
    internal static void DecodeQkv(CudaBackend cuda, Device device, double copyRate, Action<Result> add)
    {
        const int k = 3584, nq = 3584, nkv = 512, n = nq + 2 * nkv;
        long bytes = 2L * n * k;
        int copies = (int)Math.Max(1, ((256L << 20) + bytes - 1) / bytes);
        using var all = Tensor.Normal([copies * n, k], 11, 0, 0.02, DType.BF16, device);
        using var allBias = Tensor.Normal([copies * n], 12, 0, 0.02, DType.BF16, device);
        using var x = Tensor.Normal([1, k], 13, 0, 1, DType.BF16, device);
        using var y = Tensor.Empty([1, n], DType.BF16, device);
        var packed = new List<(Tensor W, Tensor B)>();
        var apart = new List<(Tensor W, Tensor B, Tensor Y)>();
        try
        {
            for (int c = 0; c < copies; c++)
            {
                using (var w = all.Narrow(0, c * n, n)) packed.Add((w.Transpose(0, 1), allBias.Narrow(0, c * n, n)));
                int at = 0;
                foreach (int rows in new[] { nq, nkv, nkv })
                {
                    using (var w = all.Narrow(0, c * n + at, rows)) apart.Add((w.Transpose(0, 1), allBias.Narrow(0, c * n + at, rows), y.Narrow(1, at, rows)));
                    at += rows;
                }
            }
            const string shape = "m1 N3584+512+512 K3584";
            string Note(double gbs, string path) => string.Create(CultureInfo.InvariantCulture, $"q/k/v + bias, {path}, {gbs / copyRate:F2} of copy");
            double ms = cuda.MedianMilliseconds(() => { foreach (var (w, b) in packed) cuda.MatMulEpilogue(x, w, y, b, gelu: false); }) / copies;
            double rate = bytes / (ms * 1e-3) / 1e9;
            add(new("decode qkv packed", shape, ms, rate, "GB/s", Note(rate, cuda.GemvKernel ? "one gemv launch" : "cuBLASLt (gemv off)")));
            double un = cuda.MedianMilliseconds(() => { foreach (var (w, b, yp) in apart) cuda.MatMulEpilogue(x, w, yp, b, gelu: false); }) / copies;
            double unRate = bytes / (un * 1e-3) / 1e9;
            add(new("decode qkv apart", shape, un, unRate, "GB/s", Note(unRate, "three products, for comparison")));
        }
        finally
        {
            foreach (var (w, b) in packed) { w.Dispose(); b.Dispose(); }
            foreach (var (w, b, yp) in apart) { w.Dispose(); b.Dispose(); yp.Dispose(); }
        }
    }

    /// <summary>
    /// The tensor-core decode kernel's rows (attention_decode_mma.cu, forced on with threshold 1 key whatever
    /// PARROT_DECODE_MMA says): one call between events and a CUDA graph's device time, as the FMA kernel's rows.
    /// </summary>
    private static void DecodeMmaRows(CudaBackend cuda, Action step, Func<double> graphed, Action<string, double, string> row)
    {
        (bool mma, int minKeys) = (cuda.DecodeMma, cuda.DecodeMmaMinKeys);
        (cuda.DecodeMma, cuda.DecodeMmaMinKeys) = (true, 1);
        try
        {
            const string what = "attention_decode_mma.cu (mma.sync, ranges of ≥ 64 keys for two blocks per SM)";
            row("attention decode tensor cores", cuda.MedianMilliseconds(step), $"{what}, one call between events (host launch cost included)");
            row("attention decode tensor cores graph", graphed(), $"{what}, 20 calls in a CUDA graph: device time a call");
        }
        finally { (cuda.DecodeMma, cuda.DecodeMmaMinKeys) = (mma, minKeys); }
    }

    /// <summary>
    /// One decode step of Qwen2-7B's attention (issue #7): B1, 28 query heads, 4 kv heads, head dim 128, bf16, one
    /// query row at the last position of a cache of S keys (causal, offset S − 1: it sees every key). The rate is the
    /// K and V bytes read per second (the bound of this op). Rows: "attention decode" (one call between two events: the
    /// host's launch cost included, as an eager step pays it) and "attention decode graph" (20 calls captured in a CUDA
    /// graph, the replay's time / 20: the device time, as the static step pays it); "attention decode min keys N" other
    /// range sizes (16, 32, 64, 128, 256 less the default) (<see cref="CudaBackend.DecodeMinKeys"/>, graph timing); "attention decode tiled" the same call with
    /// the decode kernel off (<see cref="CudaBackend.DecodeAttention"/>), for the ratio. At 4096 and 32768 keys also
    /// "attention decode tensor cores" and "... graph" (<see cref="CudaBackend.DecodeMma"/> forced on):
    /// the A/B of the FMA kernel's rows, with torch's SDPA row beside them (bench/torch_peer.py).
    /// </summary>
    private static void Decode(CudaBackend cuda, Device device, Action<Result> add)
    {
        bool mma = cuda.DecodeMma;
        cuda.DecodeMma = false; // the FMA kernel's rows; the tensor-core rows force it on below
        try { DecodeRows(cuda, device, add); }
        finally { cuda.DecodeMma = mma; }
    }

    private static void DecodeRows(CudaBackend cuda, Device device, Action<Result> add)
    {
        bool decode = cuda.DecodeAttention;
        int minKeys = cuda.DecodeMinKeys;
        foreach (int S in new[] { 160, 4096, 32768 })
        {
            const int B = 1, H = 28, Hkv = 4, D = 128, Calls = 20;
            using var q = Tensor.Normal([B, H, 1, D], 7, 0, 1, DType.BF16, device);
            using var k = Tensor.Normal([B, Hkv, S, D], 8, 0, 1, DType.BF16, device);
            using var v = Tensor.Normal([B, Hkv, S, D], 9, 0, 1, DType.BF16, device);
            using var o = Tensor.Empty([B, H, 1, D], DType.BF16, device);
            double bytes = 2.0 * B * Hkv * S * D * 2;
            string shape = $"B{B} H{H} Hkv{Hkv} T1 S{S} D{D}";
            void Step() => cuda.Attention(q, k, v, null, true, S - 1, 1 / Math.Sqrt(D), o, null);
            double Graphed()
            {
                Step(); // compiled, scratch sized, before the capture
                using var graph = cuda.Capture(() => { for (int i = 0; i < Calls; i++) Step(); });
                return cuda.MedianMilliseconds(graph.Replay) / Calls;
            }
            void Row(string name, double ms, string note) => add(new(name, shape, ms, bytes / (ms * 1e-3) / 1e9, "GB/s", note));
            try
            {
                if (!decode)
                {
                    Row("attention decode", cuda.MedianMilliseconds(Step), "decode kernel off (PARROT_DECODE_ATTENTION=0)");
                }
                else
                {
                    string what = $"attention_decode.cu (≥ {minKeys} keys a range, one launch)";
                    Row("attention decode", cuda.MedianMilliseconds(Step), $"{what}, one call between events (host launch cost included)");
                    Row("attention decode graph", Graphed(), $"{what}, {Calls} calls in a CUDA graph: device time a call");
                    if (S >= 4096) DecodeMmaRows(cuda, Step, Graphed, Row);
                    if (S <= 4096)
                        foreach (int n in new[] { 16, 32, 64, 128, 256 }.Where(n => n != minKeys)) // the default's row is above
                        {
                            cuda.DecodeMinKeys = n;
                            Row($"attention decode min keys {n}", Graphed(), $"attention_decode.cu, ≥ {n} keys a range, graph timing");
                        }
                }
            }
            finally
            {
                cuda.DecodeMinKeys = minKeys;
            }
            cuda.DecodeAttention = false;
            try
            {
                double tiled = cuda.MedianMilliseconds(Step);
                Row("attention decode tiled", tiled, (cuda.TensorCoreAttention ? "attention_mma.cu" : "attention_flash_forward") + ", for comparison");
            }
            finally
            {
                cuda.DecodeAttention = decode;
            }
        }
    }

    /// <summary>
    /// A decode layer's RoPE, KV-cache append and attention at Qwen2-7B's shape (B1, 28/4 heads, D128, bf16, q/k/v
    /// column views of one packed projection, the new key at S − 1 of the cache), 20 steps in a CUDA graph, device time
    /// a step: "decode rope+attention fused" (<see cref="Tensor.RopeAppendAttend"/> in one launch,
    /// attention_decode_rope_bf16) and "decode rope+attention apart" (<see cref="CudaBackend.DecodeRopeFused"/> off:
    /// rope_kv_append then attention_decode_forward_bf16), the same bits; the rate is the K and V bytes read. At 4096
    /// and 32768 keys also "decode rope+attention fused, tensor cores" / "… apart, tensor cores" (the tensor-core decode
    /// kernel forced on, threshold 1 key: attention_decode_mma_rope_d128 against rope_kv_append + attention_decode_mma_d128).
    /// The FMA rows run with <see cref="CudaBackend.DecodeMma"/> off whatever PARROT_DECODE_MMA says.
    /// </summary>
    private static void DecodeRope(CudaBackend cuda, Device device, Action<Result> add)
    {
        (bool fused, bool mma, int mmaMinKeys) = (cuda.DecodeRopeFused, cuda.DecodeMma, cuda.DecodeMmaMinKeys);
        foreach (int S in new[] { 160, 4096, 32768 })
        foreach (bool tc in new[] { false, true })
        {
            if (tc ? S < 4096 : S > 4096) continue;
            const int H = 28, Hkv = 4, D = 128, Calls = 20;
            using var packed = Tensor.Normal([1, 1, (H + 2 * Hkv) * D], 10, 0, 1, DType.BF16, device);
            using var q = packed.Narrow(2, 0, H * D).Reshape(1, 1, H, D).Transpose(1, 2);
            using var k = packed.Narrow(2, H * D, Hkv * D).Reshape(1, 1, Hkv, D).Transpose(1, 2);
            using var v = packed.Narrow(2, (H + Hkv) * D, Hkv * D).Reshape(1, 1, Hkv, D).Transpose(1, 2);
            using var kc = Tensor.Normal([1, Hkv, S + 8, D], 11, 0, 1, DType.BF16, device);
            using var vc = Tensor.Normal([1, Hkv, S + 8, D], 12, 0, 1, DType.BF16, device);
            using var kAll = kc.Narrow(2, 0, S);
            using var vAll = vc.Narrow(2, 0, S);
            var (cos, sin) = Tensor.RopeTables(S - 1, 1, D, 1_000_000.0, device);
            using (cos) using (sin)
            {
                void Step() { using var o = Tensor.RopeAppendAttend(q, k, v, cos, sin, kAll, vAll, causal: true); }
                string shape = $"B1 H{H} Hkv{Hkv} T1 S{S} D{D}";
                try
                {
                    (cuda.DecodeMma, cuda.DecodeMmaMinKeys) = (tc, tc ? 1 : mmaMinKeys);
                    foreach (bool on in new[] { true, false })
                    {
                        cuda.DecodeRopeFused = on;
                        Step(); // compiled, scratch sized, before the capture
                        using var graph = cuda.Capture(() => { for (int i = 0; i < Calls; i++) Step(); });
                        double ms = cuda.MedianMilliseconds(graph.Replay) / Calls;
                        string name = (on ? "decode rope+attention fused" : "decode rope+attention apart") + (tc ? ", tensor cores" : "");
                        string what = tc ? (on ? "attention_decode_mma_rope_d128, one launch" : "rope_kv_append + attention_decode_mma_d128")
                            : on ? "attention_decode_rope_bf16, one launch" : "rope_kv_append + attention_decode_forward_bf16";
                        add(new(name, shape, ms, 2.0 * Hkv * S * D * 2 / (ms * 1e-3) / 1e9, "GB/s", what + $", {Calls} steps in a CUDA graph: device time a step"));
                    }
                }
                finally { (cuda.DecodeRopeFused, cuda.DecodeMma, cuda.DecodeMmaMinKeys) = (fused, mma, mmaMinKeys); }
            }
        }
    }

    internal static string Json(string description, IReadOnlyList<Result> results)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("engine", "parrot");
            w.WriteString("device", description);
            w.WriteStartArray("results");
            foreach (var r in results)
            {
                w.WriteStartObject();
                w.WriteString("name", r.Name);
                w.WriteString("shape", r.Shape);
                if (double.IsNaN(r.Milliseconds)) w.WriteNull("ms"); else w.WriteNumber("ms", Math.Round(r.Milliseconds, 4));
                if (double.IsNaN(r.Rate)) w.WriteNull("rate"); else w.WriteNumber("rate", Math.Round(r.Rate, 2));
                w.WriteString("unit", r.Unit);
                w.WriteString("note", r.Note);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
