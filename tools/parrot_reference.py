"""A plain-PyTorch Parrot forward pass (no Hugging Face transformers, no Parrot code: neither is installable
here), written from ../shared/PARROT.md and PARROT-DETAILS.md to serve as an independent oracle for
ParrotNative's tests. It reuses the two plain references of this folder: clip_vision_reference (the tower)
and qwen2_reference (the decoder).

For one prompt (token ids with at most one image placeholder -200) and one image:
  1. vision tower: hidden_states[mm_vision_select_layer] of CLIP (HF indexing: 0 = embeddings after
     pre_layrnorm, negative counts from the end; no post_layernorm); "cls_patch" keeps the CLS token,
     "patch" drops it;
  2. projector mlp2x_gelu: Linear(C->H) . GELU(erf) . Linear(H->H) on every token, CLS included;
  3. MoE (use_moe): X = projected tokens [N, H], T = rows of the input embedding table for the prompt's text
     tokens (at inference the whole prompt, placeholder removed) [n, H];
     cls = X[0]; a = softmax(cls . T^T / sqrt(H)); g = a . T; w = softmax(gate(g)) (bias-free gate, E experts);
     MoE(X) = sum_i w_i * Expert_i(X) + alpha * X (residual when use_moe_residual), all experts dense,
     Expert_i(x) = down(silu(gate_proj(x)) * up_proj(x)) without biases;
  4. the N visual tokens replace the placeholder in the text embeddings (T' = T - 1 + N positions);
  5. the Qwen2 decoder over those embeddings -> logits [T', vocab].
Parameter names are the released checkpoints' (PARROT.md "Checkpoint names"): model.mm_projector.{0,2}.*,
model.moe_model.gate.weight, model.moe_model.experts.{i}.{gate,up,down}_proj.weight; the tower's names are
the standalone CLIP ones (vision_model.*), i.e. the Parrot names with model.vision_tower.vision_tower. cut off.
"""
import math

import torch

import clip_vision_reference as clip
import qwen2_reference as qwen

IMAGE_TOKEN = -200
TOWER_PREFIX = "model.vision_tower.vision_tower."


def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def silu(x):
    return x * torch.sigmoid(x)


def vision_features(tower, vision_cfg, pixels, select_layer, select_feature):
    """pixels [B, 3, S, S] -> the selected hidden state [B, 1+N, C] (or [B, N, C] for "patch")."""
    layers = clip.vision_config(vision_cfg)["num_hidden_layers"]
    index = select_layer if select_layer >= 0 else layers + 1 + select_layer
    assert 0 <= index <= layers, f"select layer {select_layer} outside the {layers + 1} hidden states"
    states, _ = clip.forward(tower, vision_cfg, pixels, last_layer=index)
    f = states[index]
    if select_feature == "patch":
        return f[:, 1:]
    assert select_feature == "cls_patch", select_feature
    return f


def projector(p, f):
    x = f @ p["model.mm_projector.0.weight"].T + p["model.mm_projector.0.bias"]
    return gelu_erf(x) @ p["model.mm_projector.2.weight"].T + p["model.mm_projector.2.bias"]


def moe(p, cfg, x, text):
    """x [N, H] visual tokens (CLS first), text [n, H] prompt embeddings -> (MoE(x) [N, H], routing weights [E])."""
    h = x.shape[-1]
    cls = x[0:1]
    a = torch.softmax(cls @ text.T / math.sqrt(h), dim=-1)  # [1, n]
    g = a @ text  # [1, H]
    w = torch.softmax(g @ p["model.moe_model.gate.weight"].T, dim=-1)[0]  # [E]
    y = torch.zeros_like(x)
    for i in range(cfg["num_experts"]):
        e = f"model.moe_model.experts.{i}."
        hidden = silu(x @ p[e + "gate_proj.weight"].T) * (x @ p[e + "up_proj.weight"].T)
        y = y + w[i] * (hidden @ p[e + "down_proj.weight"].T)
    if cfg.get("use_moe_residual", True):
        y = y + cfg.get("moe_weight", 0.1) * x
    return y, w


def forward(p, tower, cfg, vision_cfg, ids, pixels=None, steer=None):
    """ids: list of ints with at most one -200; pixels [1, 3, S, S] when it has one; steer: the ids whose
    embeddings steer the MoE (default: every text id of ids). Returns (logits [T', vocab], routing weights [E] or None)."""
    embed = p["model.embed_tokens.weight"]
    places = [i for i, t in enumerate(ids) if t == IMAGE_TOKEN]
    assert len(places) <= 1, "one image per prompt"
    if not places:
        logits, _ = qwen.forward_embeds(p, cfg, embed[torch.tensor(ids)][None])
        return logits[0], None
    pos = places[0]
    text = embed[torch.tensor([t for t in (ids if steer is None else steer) if t != IMAGE_TOKEN])]
    f = vision_features(tower, vision_cfg, pixels, cfg["mm_vision_select_layer"], cfg["mm_vision_select_feature"])[0]
    x = projector(p, f)
    w = None
    if cfg.get("use_moe", True):
        x, w = moe(p, cfg, x, text)
    before, after = embed[torch.tensor(ids[:pos], dtype=torch.int64)], embed[torch.tensor(ids[pos + 1:], dtype=torch.int64)]
    spliced = torch.cat([before, x, after], dim=0)
    logits, _ = qwen.forward_embeds(p, cfg, spliced[None])
    return logits[0], w


def greedy(p, tower, cfg, vision_cfg, ids, pixels, steps):
    """Greedy continuation by full recomputation (no cache); also the smallest top-1/top-2 logit margin seen.
    As in the reference's cached generation, the visual tokens are made once from the prompt: the MoE stays
    steered by the prompt's text, not by the tokens generated after it."""
    seq, margin = list(ids), float("inf")
    for _ in range(steps):
        logits, _ = forward(p, tower, cfg, vision_cfg, seq, pixels, steer=ids)
        top = torch.topk(logits[-1], 2).values
        margin = min(margin, (top[0] - top[1]).item())
        seq.append(int(logits[-1].argmax()))
    return seq[len(ids):], margin
