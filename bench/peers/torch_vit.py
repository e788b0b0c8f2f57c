"""PyTorch peer of `parrot bench vit`: median time of one CLIP vision tower forward, ViT-L/14-336 shapes by
default, random weights, float32, batch 1, on the CPU: up to hidden_states[-2] (what Parrot uses) and through
all layers + pooled.

The forward is tools/clip_vision_reference.py's, with its plain-arithmetic layer norm and linear layers
swapped for PyTorch's fused F.layer_norm and F.linear, as Hugging Face's CLIPVisionModel runs them (so the
peer is as fast as the model people actually use); at start-up it is checked against the reference itself.

Usage: torch_vit.py LAYERS HIDDEN IMAGE REPS THREADS [--profile]  -> prints JSON {"ms_select": ..., "ms_full": ...}
"""
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import clip_vision_reference as ref  # noqa: E402

PRE = "vision_model."


def layer(w, c, x, i):
    lp = f"{PRE}encoder.layers.{i}."
    b, t, hidden = x.shape
    heads = c["num_attention_heads"]
    d = hidden // heads
    eps = c["layer_norm_eps"]
    h = F.layer_norm(x, (hidden,), w[lp + "layer_norm1.weight"], w[lp + "layer_norm1.bias"], eps)
    q, k, v = (F.linear(h, w[lp + f"self_attn.{n}_proj.weight"], w[lp + f"self_attn.{n}_proj.bias"]).reshape(b, t, heads, d).transpose(1, 2) for n in "qkv")
    p = torch.softmax((q * (1 / math.sqrt(d))) @ k.transpose(-1, -2), dim=-1)
    o = (p @ v).transpose(1, 2).reshape(b, t, hidden)
    x = x + F.linear(o, w[lp + "self_attn.out_proj.weight"], w[lp + "self_attn.out_proj.bias"])
    h = F.layer_norm(x, (hidden,), w[lp + "layer_norm2.weight"], w[lp + "layer_norm2.bias"], eps)
    h = F.linear(h, w[lp + "mlp.fc1.weight"], w[lp + "mlp.fc1.bias"])
    h = h * torch.sigmoid(1.702 * h)  # quick_gelu, as Hugging Face writes it
    return x + F.linear(h, w[lp + "mlp.fc2.weight"], w[lp + "mlp.fc2.bias"])


def forward(w, cfg, pixels, last_layer=None):
    c = ref.vision_config(cfg)
    x = ref.embeddings(w, c, pixels)
    for i in range(c["num_hidden_layers"] if last_layer is None else last_layer):
        x = layer(w, c, x, i)
    if last_layer is not None:
        return x
    return x, F.layer_norm(x[:, 0], (c["hidden_size"],), w[PRE + "post_layernorm.weight"], w[PRE + "post_layernorm.bias"], c["layer_norm_eps"])


def check_against_reference():
    cfg = {"model_type": "clip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "image_size": 28, "patch_size": 7}
    w = ref.init_params(cfg, 3)
    px = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(4))
    states, pooled = ref.forward(w, cfg, px)
    x, p = forward(w, cfg, px)
    assert torch.allclose(x, states[-1], rtol=1e-4, atol=1e-4) and torch.allclose(p, pooled, rtol=1e-4, atol=1e-4), "peer differs from the reference"


def median(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1000 * times[len(times) // 2]


def main():
    layers, hidden, image, reps, threads = (int(a) for a in sys.argv[1:6])
    torch.set_num_threads(threads)
    check_against_reference()
    cfg = {"model_type": "clip_vision_model", "hidden_size": hidden, "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
           "num_attention_heads": max(1, hidden // 64), "image_size": image, "patch_size": 14}
    # Weights drawn in float32 with the reference's names and shapes (its float64 draw of 300 M numbers is slow).
    g = torch.Generator().manual_seed(1)
    shapes = {k: v.shape for k, v in ref.init_params({**cfg, "num_hidden_layers": 1}, 1).items()}
    w = {}
    for k, shape in shapes.items():
        for i in range(layers) if ".layers.0." in k else [None]:
            name = k if i is None else k.replace(".layers.0.", f".layers.{i}.")
            w[name] = torch.randn(shape, generator=g) * 0.02 + (1 if "norm" in k and k.endswith("weight") else 0)
    pixels = torch.randn(1, 3, image, image, generator=g)
    with torch.no_grad():
        ms_select = median(lambda: forward(w, cfg, pixels, last_layer=layers - 1), reps)
        ms_full = median(lambda: forward(w, cfg, pixels), reps)
        ops = profile(w, cfg, pixels, reps) if "--profile" in sys.argv[6:] else None
    print(json.dumps({"ms_select": ms_select, "ms_full": ms_full, "ops": ops, "torch": torch.__version__, "threads": threads}))


def profile(w, cfg, pixels, reps):
    """The steps of one encoder layer on their own, as `parrot bench vit --profile` times them."""
    c = ref.vision_config(cfg)
    lp = f"{PRE}encoder.layers.0."
    hidden, heads = c["hidden_size"], c["num_attention_heads"]
    d, t = hidden // heads, (c["image_size"] // c["patch_size"]) ** 2 + 1
    x = ref.embeddings(w, c, pixels)
    ln = lambda name, v: F.layer_norm(v, (hidden,), w[lp + name + ".weight"], w[lp + name + ".bias"], 1e-5)  # noqa: E731
    lin = lambda name, v: F.linear(v, w[lp + name + ".weight"], w[lp + name + ".bias"])  # noqa: E731
    h = ln("layer_norm1", x)
    q, k, v = (lin(f"self_attn.{n}_proj", h).reshape(1, t, heads, d).transpose(1, 2) for n in "qkv")
    s = q @ k.transpose(-1, -2)
    p = torch.softmax(s, -1)
    o = (p @ v).transpose(1, 2).reshape(1, t, hidden)
    f1 = lin("mlp.fc1", h)
    return [("embeddings+pre_layrnorm (per forward)", median(lambda: ref.embeddings(w, c, pixels), reps)),
            ("layer_norm1", median(lambda: ln("layer_norm1", x), reps)),
            ("q_proj", median(lambda: lin("self_attn.q_proj", h), reps)),
            ("scores q·kᵀ", median(lambda: q @ k.transpose(-1, -2), reps)),
            ("scale", median(lambda: s * (1 / math.sqrt(d)), reps)),
            ("softmax", median(lambda: torch.softmax(s, -1), reps)),
            ("probs·v", median(lambda: p @ v, reps)),
            ("out_proj", median(lambda: lin("self_attn.out_proj", o), reps)),
            ("fc1", median(lambda: lin("mlp.fc1", h), reps)),
            ("quick_gelu", median(lambda: f1 * torch.sigmoid(1.702 * f1), reps)),
            ("fc2", median(lambda: lin("mlp.fc2", f1), reps)),
            ("whole layer", median(lambda: layer(w, c, x, 0), reps))]


if __name__ == "__main__":
    main()
