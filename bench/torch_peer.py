"""PyTorch's figures for the same benchmarks `parrot selftest --bench` measures, on the same GPU, timed the
same way (CUDA events, median of 10 after 3 warm-ups). Run by bench/cuda-on-device.sh; PyTorch is a peer
here, not a dependency of ParrotNative."""
import argparse
import json

import torch


def median_ms(fn, warmup=3, repeats=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def decode_rows(sdpa, dev, add, lengths=(160, 4096, 32768), dtype=torch.bfloat16):
    """One decode step of Qwen2-7B's attention (28 query heads, 4 kv heads, head dim 128) at the last position of a
    cache of S keys: a query row that sees every key, so not is_causal (PyTorch aligns a causal mask top-left, which
    would show the query key 0 only). Grouped heads by enable_gqa where PyTorch has it (2.5+) or K and V repeated to
    28 heads outside the timing, whichever is faster. The rate is the K and V bytes read per second, as parrot's "attention decode"."""
    B, H, Hkv, D = 1, 28, 4, 128
    for S in lengths:
        q = torch.randn(B, H, 1, D, device=dev, dtype=dtype)
        k, v = (torch.randn(B, Hkv, S, D, device=dev, dtype=dtype) for _ in range(2))
        kr, vr = (x.repeat_interleave(H // Hkv, dim=1) for x in (k, v))
        ways = [((lambda: sdpa(q, kr, vr)), "SDPA, K/V repeated to 28 heads")]
        try:
            sdpa(q, k, v, enable_gqa=True)
            ways.append(((lambda: sdpa(q, k, v, enable_gqa=True)), "SDPA enable_gqa"))
        except TypeError:  # PyTorch before 2.5: no enable_gqa
            pass
        with torch.no_grad():  # the faster of the two ways (the repeat itself is not timed)
            ms, note = min((median_ms(fn), note) for fn, note in ways)
        add("attention decode", f"B{B} H{H} Hkv{Hkv} T1 S{S} D{D}", ms, 2.0 * B * Hkv * S * D * 2 / (ms * 1e-3) / 1e9, "GB/s", note)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", choices=["decode-attention"],
                    help="only the decode attention rows at 4096 and 32768 keys (bench/cuda-on-device-decode.sh's A/B)")
    args = ap.parse_args()
    dev = torch.device("cuda")
    results = []

    def add(name, shape, ms, rate, unit, note=""):
        results.append(dict(name=name, shape=shape, ms=round(ms, 4), rate=round(rate, 2), unit=unit, note=note))
        print(f"torch {name:<22} {shape:<28} {ms:10.3f} ms {rate:10.1f} {unit} {note}", flush=True)

    if args.only == "decode-attention":
        decode_rows(torch.nn.functional.scaled_dot_product_attention, dev, add, lengths=(4096, 32768))
        with open(args.out, "w") as f:
            json.dump(dict(engine="torch " + torch.__version__, device=torch.cuda.get_device_name(), results=results), f, indent=2)
        return

    n = 256 << 20
    src = torch.full((n,), 1.25, device=dev)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src))
    add("copy d2d", "1 GiB f32", ms, 2.0 * n * 4 / (ms * 1e-3) / 1e9, "GB/s", "read + write")
    del src, dst

    for size in (4096, 8192):
        g = torch.Generator(device=dev).manual_seed(size)
        a = torch.randn(size, size, device=dev, generator=g).bfloat16()
        b = torch.randn(size, size, device=dev, generator=g).bfloat16()
        c = torch.empty(size, size, device=dev, dtype=torch.bfloat16)
        ms = median_ms(lambda: torch.matmul(a, b, out=c))
        add("gemm bf16", f"{size}x{size}x{size}", ms, 2.0 * size ** 3 / (ms * 1e-3) / 1e12, "TFLOP/s", "torch.matmul")
        del a, b, c

    # Qwen2-7B batch-1 decode products, as parrot's DeviceBench.DecodeProducts: F.linear of a [1, K] bf16 x with a
    # [N, K] weight; GB/s of weight bytes; each timing runs over copies of the weight filling >= 256 MiB (beyond L2)
    # and reports the time per product.
    for n, k, what in ((18944, 3584, "gate/up"), (3584, 18944, "down"), (3584, 3584, "q/o"), (512, 3584, "k/v"), (152064, 3584, "lm_head")):
        nbytes = 2 * n * k
        copies = max(1, -(-(256 << 20) // nbytes))
        g = torch.Generator(device=dev).manual_seed(n)
        w_all = (torch.randn(copies * n, k, device=dev, generator=g) * 0.02).bfloat16()
        ws = [w_all[i * n:(i + 1) * n] for i in range(copies)]
        x = torch.randn(1, k, device=dev, generator=g).bfloat16()
        linear = torch.nn.functional.linear

        def run():
            for w in ws:
                linear(x, w)
        with torch.no_grad():
            ms = median_ms(run) / copies
        add("decode gemv bf16", f"m1 N{n} K{k}", ms, nbytes / (ms * 1e-3) / 1e9, "GB/s", f"{what}, F.linear")
        del w_all, ws, x

    sdpa = torch.nn.functional.scaled_dot_product_attention
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        ctx = lambda: sdpa_kernel(SDPBackend.FLASH_ATTENTION)
    except ImportError:  # older PyTorch
        import contextlib
        ctx = contextlib.nullcontext
    for D in (128, 64):  # the shapes of parrot's DeviceBench; 64 is Qwen2-0.5B's head dim
        B, H, T = 4, 16, 2048
        q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        flops = 4.0 * B * H * T * T * D / 2
        with ctx():
            with torch.no_grad():
                ms = median_ms(lambda: sdpa(q, k, v, is_causal=True))
            add("attention fwd causal", f"B{B} H{H} T{T} D{D}", ms, flops / (ms * 1e-3) / 1e12, "TFLOP/s", "flash SDPA")
            do = torch.randn_like(q)

            def fwd_bwd():
                o = sdpa(q, k, v, is_causal=True)
                o.backward(do)
            ms = median_ms(fwd_bwd)
            add("attention fwd+bwd", f"B{B} H{H} T{T} D{D}", ms, 3.5 * flops / (ms * 1e-3) / 1e12, "TFLOP/s", "flash SDPA (fwd+bwd = 3.5x fwd flops)")
        del q, k, v, do

    decode_rows(sdpa, dev, add)

    def save():
        with open(args.out, "w") as f:
            json.dump(dict(engine="torch " + torch.__version__, device=torch.cuda.get_device_name(), results=results), f, indent=2)
    save()
    cudnn_rows(sdpa, dev, add)  # after the save: a slow cuDNN plan build never costs the rows above
    save()


def cudnn_rows(sdpa, dev, add):
    """PyTorch's own cuDNN SDPA backend (2.5+) on the shapes above, named as parrot's cuDNN rows ("attention fwd cuDNN",
    "attention fwd+bwd cuDNN") so the side-by-side table pairs the two users of the same library."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        backend = SDPBackend.CUDNN_ATTENTION
    except (ImportError, AttributeError):
        return
    for D in (128,):  # parrot's cuDNN rows are at head dim 128 only
        B, H, T = 4, 16, 2048
        q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        do = torch.randn_like(q)
        flops = 4.0 * B * H * T * T * D / 2
        try:
            with sdpa_kernel(backend):
                with torch.no_grad():
                    ms = median_ms(lambda: sdpa(q, k, v, is_causal=True))
                add("attention fwd cuDNN", f"B{B} H{H} T{T} D{D}", ms, flops / (ms * 1e-3) / 1e12, "TFLOP/s", "torch cuDNN SDPA")

                def fwd_bwd():
                    sdpa(q, k, v, is_causal=True).backward(do)
                ms = median_ms(fwd_bwd)
                add("attention fwd+bwd cuDNN", f"B{B} H{H} T{T} D{D}", ms, 3.5 * flops / (ms * 1e-3) / 1e12, "TFLOP/s", "torch cuDNN SDPA (fwd+bwd = 3.5x fwd flops)")
        except RuntimeError as e:
            print(f"torch cuDNN SDPA D{D}: {str(e).splitlines()[0]}")
        del q, k, v, do


if __name__ == "__main__":
    main()
