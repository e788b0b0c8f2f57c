"""PyTorch eager peer of `parrot bench train --shape qwen2-0.5b --dtype bf16` and `parrot bench decoder --shape qwen2-7b`
on the same GPU (bench/cuda-on-device.sh runs both in one script). A plain Qwen2 (RMSNorm, GQA attention with RoPE
through scaled_dot_product_attention, SwiGLU MLP), no compilation, no fused optimizer flags beyond PyTorch's defaults.

  train:  float32 weights under torch.autocast(bfloat16), AdamW(lr 1e-3) — PyTorch's usual mixed precision (ours keeps
          bf16 weights with float32 masters and moments: the same arithmetic in the products). Median ms/step after 3
          warm-up steps, the loss read after the update (one host sync per step, as ours), tokens/s, and TFLOP/s by the
          same formula: 6·(matmul weights) + 12·layers·hidden·seq per token.
  decode: bfloat16 random N(0, 0.02²) weights (norms 1), batch 1, a preallocated KV cache, greedy argmax read with
          .item() per token; median ms/token; weight bytes over the measured copy bandwidth (1 GiB d2d, read + written).

Usage: torch_model_peer.py train SHAPE BATCH SEQ STEPS | decode SHAPE PROMPT TOKENS   (SHAPE: qwen2-0.5b, qwen2-7b, tiny)
Prints one JSON line. Runs on the CPU too when no GPU is present (the script's logic, small shapes)."""
import json
import math
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = {
    "qwen2-0.5b": dict(vocab=151936, hidden=896, inter=4864, layers=24, heads=14, kv=2, theta=1e6, tied=True),
    "qwen2-7b": dict(vocab=152064, hidden=3584, inter=18944, layers=28, heads=28, kv=4, theta=1e6, tied=False),
    "tiny": dict(vocab=512, hidden=128, inter=352, layers=2, heads=4, kv=2, theta=1e6, tied=False),
}
dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sdpa(q, k, v, is_causal=False):  # PyTorch < 2.0 (the CPU check here); the GPU machine has F.scaled_dot_product_attention
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if is_causal:
        t = q.shape[-2]
        s = s.masked_fill(torch.ones(t, k.shape[-2], dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return s.float().softmax(-1).to(q.dtype) @ v


sdpa = getattr(F, "scaled_dot_product_attention", _sdpa)


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


class Layer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        h, hd = c["hidden"], c["hidden"] // c["heads"]
        self.c, self.hd = c, hd
        self.q = torch.nn.Linear(h, c["heads"] * hd)
        self.k = torch.nn.Linear(h, c["kv"] * hd)
        self.v = torch.nn.Linear(h, c["kv"] * hd)
        self.o = torch.nn.Linear(c["heads"] * hd, h, bias=False)
        self.gate = torch.nn.Linear(h, c["inter"], bias=False)
        self.up = torch.nn.Linear(h, c["inter"], bias=False)
        self.down = torch.nn.Linear(c["inter"], h, bias=False)
        self.n1 = torch.nn.Parameter(torch.ones(h))
        self.n2 = torch.nn.Parameter(torch.ones(h))

    @staticmethod
    def norm(x, w):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * w.to(x.dtype)

    def forward(self, x, cos, sin, cache=None, past=0):
        b, t, _ = x.shape
        c, hd = self.c, self.hd
        h = self.norm(x, self.n1)
        q = self.q(h).view(b, t, c["heads"], hd).transpose(1, 2)
        k = self.k(h).view(b, t, c["kv"], hd).transpose(1, 2)
        v = self.v(h).view(b, t, c["kv"], hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if cache is not None:
            kc, vc = cache
            kc[:, :, past:past + t] = k
            vc[:, :, past:past + t] = v
            k, v = kc[:, :, :past + t], vc[:, :, :past + t]
        rep = c["heads"] // c["kv"]
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        a = sdpa(q, k, v, is_causal=(t > 1 and past == 0))
        x = x + self.o(a.transpose(1, 2).reshape(b, t, -1))
        h = self.norm(x, self.n2)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), -1)
    return x * cos.to(x.dtype) + rot * sin.to(x.dtype)


class Qwen2(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed = torch.nn.Embedding(c["vocab"], c["hidden"])
        self.layers = torch.nn.ModuleList(Layer(c) for _ in range(c["layers"]))
        self.norm = torch.nn.Parameter(torch.ones(c["hidden"]))
        self.head = None if c["tied"] else torch.nn.Linear(c["hidden"], c["vocab"], bias=False)

    def tables(self, start, t):
        # built on the host each call (not kept from __init__: under `torch.device("meta")` it would be a meta tensor)
        hd = self.c["hidden"] // self.c["heads"]
        inv = 1.0 / (self.c["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32, device="cpu") / hd))
        pos = torch.arange(start, start + t, dtype=torch.float32, device="cpu")
        emb = torch.cat([torch.outer(pos, inv)] * 2, -1).to(dev)
        return emb.cos(), emb.sin()

    def forward(self, ids, caches=None, past=0):
        x = self.embed(ids)
        cos, sin = self.tables(past, ids.shape[1])
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, None if caches is None else caches[i], past)
        x = Layer.norm(x, self.norm)
        return x @ self.embed.weight.t() if self.head is None else self.head(x)


def flops_per_token(c, params, seq):
    matmul = params if c["tied"] else params - c["vocab"] * c["hidden"]
    return 6.0 * matmul + 12.0 * c["layers"] * c["hidden"] * seq


def train(shape, batch, seq, steps):
    c = SHAPES[shape]
    torch.manual_seed(1)
    model = Qwen2(c).to(dev)
    for p in model.parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.02)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, c["vocab"], (batch, seq), generator=g).to(dev)
    times, losses = [], []
    ac = torch.autocast(dev.type, dtype=torch.bfloat16)
    for step in range(steps + 3):
        sync()
        t0 = time.perf_counter()
        with ac:
            logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, c["vocab"]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step >= 3:
            times.append(time.perf_counter() - t0)
    times.sort()
    ms = 1000 * times[len(times) // 2]
    tps = batch * seq / (ms / 1000)
    fpt = flops_per_token(c, params, seq)
    mem = torch.cuda.memory_allocated() if dev.type == "cuda" else 0
    return dict(engine="torch " + torch.__version__, device=str(dev), shape=shape, parameters=params, batch=batch, seq=seq, steps=steps,
                ms_per_step=ms, tokens_per_second=tps, tflops=fpt * tps / 1e12, first_loss=losses[0], last_loss=losses[-1], mem_in_use=mem)


def copy_bandwidth():
    n = (256 << 20) if dev.type == "cuda" else (64 << 20)
    src = torch.full((n,), 1.25, device=dev)
    dst = torch.empty_like(src)
    best = []
    for _ in range(8):
        sync()
        t0 = time.perf_counter()
        dst.copy_(src)
        sync()
        best.append(time.perf_counter() - t0)
    best.sort()
    return 2.0 * n * 4 / best[len(best) // 2] / 1e9


@torch.no_grad()
def decode(shape, prompt, tokens):
    c = SHAPES[shape]
    dtype = torch.bfloat16
    try:
        with torch.device("meta"):  # no host copy of 15 GB of weights (PyTorch ≥ 2.0)
            model = Qwen2(c)
        model = model.to_empty(device=dev).to(dtype)
    except (TypeError, AttributeError):
        model = Qwen2(c).to(dev).to(dtype)
    for name, p in model.named_parameters():
        if name.endswith("n1") or name.endswith("n2") or name == "norm":
            p.fill_(1.0)
        else:
            p.normal_(0, 0.02)
    params = sum(p.numel() for p in model.parameters())
    weight_bytes = (params - c["vocab"] * c["hidden"] + c["hidden"]) * 2
    gbs = copy_bandwidth()
    bound = weight_bytes / (gbs * 1e6)
    hd = c["hidden"] // c["heads"]
    caches = [(torch.zeros(1, c["kv"], prompt + tokens + 4, hd, device=dev, dtype=dtype),
               torch.zeros(1, c["kv"], prompt + tokens + 4, hd, device=dev, dtype=dtype)) for _ in range(c["layers"])]
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, c["vocab"], (1, prompt), generator=g).to(dev)
    sync()
    t0 = time.perf_counter()
    nxt = model(ids, caches, 0)[:, -1].argmax(-1).item()
    prefill = 1000 * (time.perf_counter() - t0)
    times = []
    for s in range(tokens):
        t0 = time.perf_counter()
        nxt = model(torch.tensor([[nxt]], device=dev), caches, prompt + s)[:, -1].argmax(-1).item()
        times.append(1000 * (time.perf_counter() - t0))
    steady = sorted(times[min(2, len(times) - 1):])
    ms = steady[len(steady) // 2]
    return dict(engine="torch " + torch.__version__, device=str(dev), shape=shape, parameters=params, weight_bytes=weight_bytes,
                prompt=prompt, tokens=tokens, prefill_ms=prefill, ms_per_token=ms, copy_gigabytes_per_second=gbs, bound_ms=bound,
                roofline_fraction=bound / ms)


if __name__ == "__main__":
    mode, shape = sys.argv[1], sys.argv[2]
    a, b = int(sys.argv[3]), int(sys.argv[4])
    out = train(shape, a, b, int(sys.argv[5])) if mode == "train" else decode(shape, a, b)
    print(json.dumps(out), flush=True)
