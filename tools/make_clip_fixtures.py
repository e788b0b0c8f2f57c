"""Golden CLIP vision-tower forward passes for tests/Parrot.Nn.Tests/Fixtures/clip (run by hand with /usr/bin/python3).

Small random checkpoints with the real Hugging Face names, written as real model directories (config.json +
model.safetensors, written by hand from the format spec by make_qwen2_fixtures.write_safetensors), and the
hidden states and pooled output of the independent PyTorch implementation in tools/clip_vision_reference.py:

- f32-standalone: a CLIPVisionModel checkpoint (model_type clip_vision_model, names under vision_model.),
  float32, hidden_act gelu (exact), so a wrong activation shows;
- bf16-full-clip: a full CLIPModel checkpoint (model_type clip) in bf16 whose vision_config leaves out
  hidden_act and layer_norm_eps (transformers' defaults quick_gelu and 1e-5 apply), with text_model.*,
  logit_scale, the projections and an old-style vision_model.embeddings.position_ids buffer present;
- f32-parrot: a Parrot checkpoint (model_type parrot_qwen2) holding the tower under
  model.vision_tower.vision_tower.vision_model. beside a few LLM/projector tensors; the tower's own
  CLIPVisionConfig is in clip_config.json (Parrot's config.json only names the tower in mm_vision_tower).

Each directory has pixels.npy [2, 3, 28, 28], hidden_states.npy [layers + 1, 2, 17, 32] (all of them, HF
indexing) and pooled.npy [2, 32], computed in float32 from the (possibly bf16-rounded) weights.

End-to-end goldens for `parrot vision` (tests/Parrot.Cli.Tests): image.png, a 45 x 33 RGB picture, preprocessed
by PIL the way CLIPImageProcessor does with the model's image size (shortest edge 28, centre crop 28, since the
model directory has no preprocessor_config.json), then run through f32-standalone: vision_layer-2.npy
([17, 32], no padding) and vision_layer3_pad.npy (last layer, Parrot's pad-to-square first); and
vision_layer-2_bf16.npy, the first of them computed in bfloat16 (weights and pixels cast, every op in bf16 as
PyTorch runs a model loaded with torch_dtype=bfloat16), the golden of `parrot vision --dtype bf16`.
Run with --bf16-golden to write only that file from the committed weights.
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import clip_vision_reference as ref  # noqa: E402
import make_qwen2_fixtures as qf  # noqa: E402
import make_vision_fixtures as vf  # noqa: E402

root = os.path.join(os.path.dirname(__file__), "..", "tests", "Parrot.Nn.Tests", "Fixtures", "clip")
torch.set_num_threads(1)
qf.DTYPES[torch.int64] = "I64"

VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
          "num_channels": 3, "image_size": 28, "patch_size": 7, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
          "projection_dim": 16, "initializer_range": 0.02, "initializer_factor": 1.0, "attention_dropout": 0.0}
PARROT_PREFIX = "model.vision_tower.vision_tower."


def self_check():
    """The reference's encoder layers against PyTorch's own nn.TransformerEncoderLayer (pre-LN, same weights)."""
    cfg = {"model_type": "clip_vision_model", **VISION}
    w = ref.init_params(cfg, 5)
    c = ref.vision_config(cfg)
    pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        states, _ = ref.forward(w, cfg, pixels)
        x = states[0]
        for i in range(c["num_hidden_layers"]):
            p = f"vision_model.encoder.layers.{i}."
            layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation=ref.activation("quick_gelu"),
                                                     batch_first=True, norm_first=True, layer_norm_eps=1e-5).eval()
            layer.self_attn.in_proj_weight.copy_(torch.cat([w[p + f"self_attn.{n}_proj.weight"] for n in "qkv"]))
            layer.self_attn.in_proj_bias.copy_(torch.cat([w[p + f"self_attn.{n}_proj.bias"] for n in "qkv"]))
            for dst, src in ((layer.self_attn.out_proj, "self_attn.out_proj"), (layer.linear1, "mlp.fc1"), (layer.linear2, "mlp.fc2"),
                             (layer.norm1, "layer_norm1"), (layer.norm2, "layer_norm2")):
                dst.weight.copy_(w[p + src + ".weight"])
                dst.bias.copy_(w[p + src + ".bias"])
            x = layer(x)
            err = ((x - states[i + 1]).norm() / x.norm()).item()
            assert err < 1e-5, f"reference layer {i} differs from nn.TransformerEncoderLayer: {err}"
    print("reference agrees with nn.TransformerEncoderLayer")


def goldens(out, weights, cfg, seed):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(2, 3, 28, 28, generator=g)
    with torch.no_grad():
        states, pooled = ref.forward({k: v.float() for k, v in weights.items()}, cfg, pixels)
    np.save(os.path.join(out, "pixels.npy"), pixels.numpy())
    np.save(os.path.join(out, "hidden_states.npy"), torch.stack(states).numpy().astype(np.float32))
    np.save(os.path.join(out, "pooled.npy"), pooled.numpy().astype(np.float32))


def write_dir(name, config, tensors):
    out = os.path.join(root, name)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    qf.write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    return out


def standalone():
    cfg = {"model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"], **VISION, "hidden_act": "gelu",
           "torch_dtype": "float32"}
    w = ref.init_params(cfg, 31)
    out = write_dir("f32-standalone", cfg, w)
    goldens(out, w, cfg, 131)
    return w, cfg


def full_clip():
    vision = {k: v for k, v in VISION.items() if k not in ("hidden_act", "layer_norm_eps")}
    cfg = {"model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": 16, "logit_scale_init_value": 2.6592,
           "torch_dtype": "bfloat16", "vision_config": vision,
           "text_config": {"hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "vocab_size": 50, "max_position_embeddings": 8}}
    w = ref.init_params(cfg, 32, torch.bfloat16)
    g = torch.Generator().manual_seed(132)
    extra = {"text_model.embeddings.token_embedding.weight": (50, 24),
             "text_model.embeddings.position_embedding.weight": (8, 24),
             "text_model.encoder.layers.0.self_attn.q_proj.weight": (24, 24),
             "text_model.encoder.layers.0.mlp.fc1.weight": (48, 24),
             "text_model.final_layer_norm.weight": (24,),
             "visual_projection.weight": (16, 32), "text_projection.weight": (16, 24), "logit_scale": ()}
    for k, shape in extra.items():
        w[k] = torch.randn(shape, generator=g).to(torch.bfloat16)
    w["vision_model.embeddings.position_ids"] = torch.arange(17, dtype=torch.int64)[None]
    out = write_dir("bf16-full-clip", cfg, w)
    goldens(out, {k: v for k, v in w.items() if k.startswith("vision_model.") and v.is_floating_point()}, cfg, 133)


def parrot():
    clip_cfg = {"model_type": "clip_vision_model", **VISION}
    w = ref.init_params(clip_cfg, 33)
    cfg = {"model_type": "parrot_qwen2", "architectures": ["ParrotQwen2ForCausalLM"], "hidden_size": 24,
           "intermediate_size": 40, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
           "vocab_size": 40, "mm_hidden_size": 32, "mm_vision_select_layer": -2, "mm_vision_select_feature": "cls_patch",
           "mm_vision_tower": "openai/clip-vit-large-patch14-336", "image_aspect_ratio": "pad"}
    g = torch.Generator().manual_seed(134)
    tensors = {PARROT_PREFIX + k: v for k, v in w.items()}
    for k, shape in {"model.embed_tokens.weight": (40, 24), "model.mm_projector.0.weight": (24, 32),
                     "model.mm_projector.0.bias": (24,), "model.norm.weight": (24,), "lm_head.weight": (40, 24)}.items():
        tensors[k] = torch.randn(shape, generator=g)
    out = write_dir("f32-parrot", cfg, tensors)
    with open(os.path.join(out, "clip_config.json"), "w") as f:
        json.dump(clip_cfg, f, indent=1)
    goldens(out, w, clip_cfg, 135)


def end_to_end(weights, cfg):
    """A real image through PIL preprocessing and the reference tower: the golden of `parrot vision`."""
    out = os.path.join(root, "f32-standalone")
    rgb = vf.synth(45, 33, 7)
    Image.fromarray(rgb).save(os.path.join(root, "image.png"), optimize=True)
    image = Image.open(os.path.join(root, "image.png")).convert("RGB")
    pre = {"size": 28, "crop_size": 28, "resample": 3, "image_mean": vf.CLIP_MEAN, "image_std": vf.CLIP_STD}
    for layer, pad, name in ((-2, False, "vision_layer-2.npy"), (3, True, "vision_layer3_pad.npy")):
        pixels = torch.from_numpy(vf.reference(image, pre, pad))[None]
        with torch.no_grad():
            states, _ = ref.forward(weights, cfg, pixels)
        np.save(os.path.join(out, name), states[layer][0].numpy().astype(np.float32))


def end_to_end_bf16(weights, cfg):
    """vision_layer-2.npy's image and layer through the reference tower in bfloat16: `parrot vision --dtype bf16`'s golden."""
    out = os.path.join(root, "f32-standalone")
    image = Image.open(os.path.join(root, "image.png")).convert("RGB")
    pre = {"size": 28, "crop_size": 28, "resample": 3, "image_mean": vf.CLIP_MEAN, "image_std": vf.CLIP_STD}
    pixels = torch.from_numpy(vf.reference(image, pre, False))[None].to(torch.bfloat16)
    w16 = {k: v.to(torch.bfloat16) for k, v in weights.items()}
    with torch.no_grad():
        states, _ = ref.forward(w16, cfg, pixels)
    np.save(os.path.join(out, "vision_layer-2_bf16.npy"), states[-2][0].float().numpy())


if __name__ == "__main__" and sys.argv[1:] == ["--bf16-golden"]:
    cfg = {"model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"], **VISION, "hidden_act": "gelu",
           "torch_dtype": "float32"}
    end_to_end_bf16(ref.init_params(cfg, 31), cfg)
elif __name__ == "__main__":
    self_check()
    w, cfg = standalone()
    full_clip()
    parrot()
    end_to_end(w, cfg)
    end_to_end_bf16(w, cfg)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    print(f"written under {os.path.abspath(root)}: {total / 1e3:.0f} kB")
