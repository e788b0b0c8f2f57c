"""A plain-PyTorch Qwen2 decoder (no Hugging Face transformers: it is not installable here), written from
the Qwen2 architecture description to serve as an independent oracle for ParrotNative's tests.

RMSNorm (computed in float32, cast back before the weight as HF does), rotary embedding in the rotate-half
convention with inv_freq = 1/theta^(arange(0, d, 2)/d) in float32, q/k/v projections with bias, o without,
grouped-query attention (kv heads repeated), causal softmax attention in float32, SwiGLU MLP, final norm,
lm_head (or tied embeddings). Parameter names are Hugging Face's Qwen2ForCausalLM state-dict keys.
"""
import math
import torch


def rms_norm(x, w, eps):
    dtype = x.dtype
    h = x.to(torch.float32)
    var = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(var + eps)
    return w * h.to(dtype)


def rope_tables(positions, head_dim, theta, dtype):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    d = x.shape[-1] // 2
    return torch.cat((-x[..., d:], x[..., :d]), dim=-1)


def init_params(cfg, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    std = cfg["initializer_range"]
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h // nh
    p = {}

    def normal(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(dtype)

    p["model.embed_tokens.weight"] = normal(v, h)
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        p[pre + "self_attn.q_proj.weight"] = normal(nh * hd, h)
        p[pre + "self_attn.q_proj.bias"] = normal(nh * hd)
        p[pre + "self_attn.k_proj.weight"] = normal(nkv * hd, h)
        p[pre + "self_attn.k_proj.bias"] = normal(nkv * hd)
        p[pre + "self_attn.v_proj.weight"] = normal(nkv * hd, h)
        p[pre + "self_attn.v_proj.bias"] = normal(nkv * hd)
        p[pre + "self_attn.o_proj.weight"] = normal(h, nh * hd)
        p[pre + "mlp.gate_proj.weight"] = normal(inter, h)
        p[pre + "mlp.up_proj.weight"] = normal(inter, h)
        p[pre + "mlp.down_proj.weight"] = normal(h, inter)
        # Norm scales away from 1 so a wrong norm is visible.
        p[pre + "input_layernorm.weight"] = (1 + 0.1 * torch.randn(h, generator=g, dtype=torch.float64)).to(dtype)
        p[pre + "post_attention_layernorm.weight"] = (1 + 0.1 * torch.randn(h, generator=g, dtype=torch.float64)).to(dtype)
    p["model.norm.weight"] = (1 + 0.1 * torch.randn(h, generator=g, dtype=torch.float64)).to(dtype)
    if not cfg.get("tie_word_embeddings", False):
        p["lm_head.weight"] = normal(v, h)
    return p


def forward(p, cfg, ids, attention_mask=None):
    """ids [B, T] int64 -> logits [B, T, V] (and the final hidden states)."""
    return forward_embeds(p, cfg, p["model.embed_tokens.weight"][ids], attention_mask)


def forward_embeds(p, cfg, x, attention_mask=None):
    """Input embeddings [B, T, H] (e.g. text embeddings with visual tokens spliced in) -> logits [B, T, V]
    (and the final hidden states)."""
    h_dim, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h_dim // nh
    eps = cfg["rms_norm_eps"]
    b, t = x.shape[:2]
    dtype = x.dtype
    cos, sin = rope_tables(torch.arange(t), hd, cfg["rope_theta"], dtype)
    mask = torch.full((t, t), float("-inf")).triu(1)
    if attention_mask is not None:
        pad = torch.zeros(b, 1, 1, t)
        pad[attention_mask[:, None, None, :] == 0] = float("-inf")
        mask = mask[None, None] + pad
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        r = x
        h = rms_norm(x, p[pre + "input_layernorm.weight"], eps)
        q = h @ p[pre + "self_attn.q_proj.weight"].T + p[pre + "self_attn.q_proj.bias"]
        k = h @ p[pre + "self_attn.k_proj.weight"].T + p[pre + "self_attn.k_proj.bias"]
        v = h @ p[pre + "self_attn.v_proj.weight"].T + p[pre + "self_attn.v_proj.bias"]
        q = q.view(b, t, nh, hd).transpose(1, 2)
        k = k.view(b, t, nkv, hd).transpose(1, 2)
        v = v.view(b, t, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = nh // nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        attn = torch.softmax(scores.float(), dim=-1).to(dtype)
        o = (attn @ v).transpose(1, 2).reshape(b, t, nh * hd)
        x = r + o @ p[pre + "self_attn.o_proj.weight"].T
        r = x
        h = rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
        gate = h @ p[pre + "mlp.gate_proj.weight"].T
        up = h @ p[pre + "mlp.up_proj.weight"].T
        x = r + (torch.nn.functional.silu(gate) * up) @ p[pre + "mlp.down_proj.weight"].T
    x = rms_norm(x, p["model.norm.weight"], eps)
    head = p["lm_head.weight"] if "lm_head.weight" in p else p["model.embed_tokens.weight"]
    return x @ head.T, x
