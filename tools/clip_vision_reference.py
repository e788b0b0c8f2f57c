"""A plain-PyTorch CLIP vision tower (no Hugging Face transformers: it is not installable here), written from
the architecture description (Radford et al. 2021, the ViT of "An Image is Worth 16x16 Words", and the
Hugging Face CLIPVisionModel state-dict names) to serve as an independent oracle for ParrotNative's tests.

Pixels [B, 3, S, S] are cut into P x P patches by a bias-free convolution with stride P, flattened into
[B, N, C]; a learned class token is put in front and learned position embeddings [1+N, C] are added; then
the "pre_layrnorm" LayerNorm, then pre-LN transformer layers: x + attn(ln1(x)) with full (unmasked)
multi-head attention whose q/k/v/out projections carry biases, and x + fc2(act(fc1(ln2(x)))) with
act = quick_gelu, x * sigmoid(1.702 x), unless the config says otherwise. hidden_states[0] is the embedding
after pre_layrnorm, hidden_states[i] the output of layer i; the pooled output is post_layernorm applied to
the class token of the last layer only.
"""
import math

import torch

# transformers 4.39 CLIPVisionConfig defaults, applied to keys a config leaves out.
DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
            "num_channels": 3, "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}


def vision_config(cfg):
    """The vision hyper-parameters of a clip_vision_model config or of a full clip config's vision_config."""
    if cfg.get("model_type") == "clip":
        cfg = cfg.get("vision_config") or {}
    return {**DEFAULTS, **{k: v for k, v in cfg.items() if k in DEFAULTS}}


def activation(name):
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name == "gelu":
        return lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))
    raise ValueError(f"unknown hidden_act {name}")


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def init_params(cfg, seed, dtype=torch.float32):
    """Random weights with the Hugging Face names under vision_model.; scales chosen so every layer matters."""
    cfg = vision_config(cfg)
    g = torch.Generator().manual_seed(seed)
    c, inter, p, ch = cfg["hidden_size"], cfg["intermediate_size"], cfg["patch_size"], cfg["num_channels"]
    n = (cfg["image_size"] // p) ** 2

    def normal(std, *shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(dtype)

    def around_one(*shape):
        return (1 + 0.1 * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    pre = "vision_model."
    w = {pre + "embeddings.class_embedding": normal(0.5, c),
         pre + "embeddings.patch_embedding.weight": normal(1 / math.sqrt(ch * p * p), c, ch, p, p),
         pre + "embeddings.position_embedding.weight": normal(0.5, 1 + n, c),
         pre + "pre_layrnorm.weight": around_one(c), pre + "pre_layrnorm.bias": normal(0.1, c)}
    for i in range(cfg["num_hidden_layers"]):
        lp = f"{pre}encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w[lp + f"self_attn.{proj}.weight"] = normal(1 / math.sqrt(c), c, c)
            w[lp + f"self_attn.{proj}.bias"] = normal(0.1, c)
        w[lp + "layer_norm1.weight"] = around_one(c)
        w[lp + "layer_norm1.bias"] = normal(0.1, c)
        w[lp + "mlp.fc1.weight"] = normal(1 / math.sqrt(c), inter, c)
        w[lp + "mlp.fc1.bias"] = normal(0.1, inter)
        w[lp + "mlp.fc2.weight"] = normal(1 / math.sqrt(inter), c, inter)
        w[lp + "mlp.fc2.bias"] = normal(0.1, c)
        w[lp + "layer_norm2.weight"] = around_one(c)
        w[lp + "layer_norm2.bias"] = normal(0.1, c)
    w[pre + "post_layernorm.weight"] = around_one(c)
    w[pre + "post_layernorm.bias"] = normal(0.1, c)
    return w


def embeddings(w, cfg, pixels, pre="vision_model."):
    p = cfg["patch_size"]
    patches = torch.nn.functional.conv2d(pixels, w[pre + "embeddings.patch_embedding.weight"], stride=p)  # [B, C, g, g]
    b, c = patches.shape[:2]
    tokens = patches.reshape(b, c, -1).transpose(1, 2)  # [B, N, C], patches in row-major order
    cls = w[pre + "embeddings.class_embedding"].reshape(1, 1, c).expand(b, 1, c)
    x = torch.cat([cls, tokens], dim=1) + w[pre + "embeddings.position_embedding.weight"][None]
    return layer_norm(x, w[pre + "pre_layrnorm.weight"], w[pre + "pre_layrnorm.bias"], cfg["layer_norm_eps"])


def encoder_layer(w, cfg, x, i, pre="vision_model."):
    lp = f"{pre}encoder.layers.{i}."
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    b, t, c = x.shape
    d = c // heads

    def linear(name, v):
        return v @ w[lp + name + ".weight"].t() + w[lp + name + ".bias"]

    h = layer_norm(x, w[lp + "layer_norm1.weight"], w[lp + "layer_norm1.bias"], eps)
    q = linear("self_attn.q_proj", h).reshape(b, t, heads, d).transpose(1, 2)
    k = linear("self_attn.k_proj", h).reshape(b, t, heads, d).transpose(1, 2)
    v = linear("self_attn.v_proj", h).reshape(b, t, heads, d).transpose(1, 2)
    att = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(d), dim=-1)
    o = (att @ v).transpose(1, 2).reshape(b, t, c)
    x = x + linear("self_attn.out_proj", o)
    h = layer_norm(x, w[lp + "layer_norm2.weight"], w[lp + "layer_norm2.bias"], eps)
    return x + linear("mlp.fc2", activation(cfg["hidden_act"])(linear("mlp.fc1", h)))


def forward(w, cfg, pixels, last_layer=None, pre="vision_model."):
    """pixels [B, 3, S, S] -> (hidden_states list of [B, 1+N, C], pooled [B, C]). With last_layer, stops after
    that layer and returns no pooled output (what Parrot does: it never needs the layers after -2)."""
    cfg = vision_config(cfg)
    x = embeddings(w, cfg, pixels, pre)
    states = [x]
    layers = cfg["num_hidden_layers"] if last_layer is None else last_layer
    for i in range(layers):
        x = encoder_layer(w, cfg, x, i, pre)
        states.append(x)
    if last_layer is not None:
        return states, None
    pooled = layer_norm(x[:, 0], w[pre + "post_layernorm.weight"], w[pre + "post_layernorm.bias"], cfg["layer_norm_eps"])
    return states, pooled
