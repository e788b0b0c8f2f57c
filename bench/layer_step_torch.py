"""Times forward+backward of one Qwen1.5-7B-shaped decoder layer (hidden 4096, MLP 11008, 32 heads, qkv bias,
RMSNorm, SwiGLU, causal flash attention) and of the LM head (151,936 tokens) in bf16 on one GPU, for the
Parrot-7B scaling estimate in bench/RESULTS.md. Plain PyTorch; median of 10 after 3 warm-ups."""
import time, torch
import torch.nn.functional as F

torch.manual_seed(0)
dev, dt = "cuda", torch.bfloat16
H, I, NH, V = 4096, 11008, 32, 151936
B, S = 4, 2048  # one micro-batch of 4 sequences of 2048 tokens

def p(*shape): return (torch.randn(*shape, device=dev, dtype=dt) * 0.02).requires_grad_()
wqkv, bqkv, wo = p(3 * H, H), p(3 * H), p(H, H)
wg, wu, wd = p(I, H), p(I, H), p(H, I)
n1, n2 = torch.ones(H, device=dev, dtype=dt, requires_grad=True), torch.ones(H, device=dev, dtype=dt, requires_grad=True)
head = p(V, H)

def rms(x, w): return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype) * w

def layer(x):
    h = rms(x, n1)
    q, k, v = F.linear(h, wqkv, bqkv).view(B, S, 3, NH, H // NH).permute(2, 0, 3, 1, 4)
    a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, S, H)
    x = x + F.linear(a, wo)
    h = rms(x, n2)
    return x + F.linear(F.silu(F.linear(h, wg)) * F.linear(h, wu), wd)

def lm_head(x):
    logits = F.linear(x, head).float()
    return F.cross_entropy(logits.view(-1, V), torch.randint(0, V, (B * S,), device=dev))

def timed(f):
    for _ in range(3): f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(10):
        s = time.perf_counter(); f(); torch.cuda.synchronize(); ts.append(time.perf_counter() - s)
    return sorted(ts)[5]

x = torch.randn(B, S, H, device=dev, dtype=dt, requires_grad=True)
t_layer = timed(lambda: layer(x).sum().backward())
t_head = timed(lambda: lm_head(x).backward())
params = 32 * (4 * H * H + 3 * H + 3 * H * I + 2 * H) + 2 * V * H
print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
print(f"one decoder layer fwd+bwd, {B}x{S} tokens: {t_layer * 1e3:.2f} ms")
print(f"LM head + loss fwd+bwd, {B}x{S} tokens: {t_head * 1e3:.2f} ms")
step = 32 * t_layer + t_head
print(f"32 layers + head per micro-batch of {B * S} tokens: {step * 1e3:.1f} ms "
      f"({B * S / step:.0f} tokens/s, {6 * params * B * S / step / 1e12:.0f} TFLOP/s by 6*N*T with N={params / 1e9:.2f}e9)")
