"""Golden Parrot forward passes, image to logits, for tests/Parrot.Parrot.Tests/Fixtures/parrot (run by hand
with /usr/bin/python3; CI has no Python, the outputs are committed).

Tiny random Parrot model directories laid out as the released Parrot-7B is (PARROT.md "Checkpoint names"):
config.json with the released keys (model_type parrot_qwen2, the Qwen2 keys, mm_*, MoE keys, and the extra keys
train.py writes), safetensors written by hand from the format spec (make_qwen2_fixtures.write_safetensors), and
mm_vision_tower naming a CLIP folder relative to the model directory. Logits come from tools/parrot_reference.py,
an independent plain-PyTorch implementation, in float32 on the (possibly bf16-rounded) weights.

- tower/: a CLIPVisionModel folder (config.json, preprocessor_config.json: shortest edge 28, centre crop 28,
  CLIP mean/std, bicubic; model.safetensors with tower A under vision_model.);
- f32-separate/: float32, the Parrot weights without the tower (taken from ../tower), select layer -2,
  cls_patch, MoE on; logits.npy [T', vocab] for prompt.npy with image.png, logits_text.npy for the prompt
  without its placeholder, logits_image_first.npy for [-200] + that text, logits_patch_nomoe.npy with use_moe
  false and mm_vision_select_feature "patch" (stage 1, CLS dropped), routing.npy [E], greedy.npy (8 tokens, eos ignored, by full recomputation);
- bf16-bundled/: bf16, two shards with model.safetensors.index.json, a different tower B inside the checkpoint
  under model.vision_tower.vision_tower. (so it must win over ../tower's weights; ../tower gives the config),
  select layer 1 (positive index), GQA; logits.npy and greedy.npy likewise.

image.png is a 40 x 30 picture: padded to a square with int(mean*255) (image_aspect_ratio "pad") and
preprocessed by PIL as CLIPImageProcessor does (make_vision_fixtures.reference), then run through the tower.
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import clip_vision_reference as clip  # noqa: E402
import make_qwen2_fixtures as qf  # noqa: E402
import make_vision_fixtures as vf  # noqa: E402
import parrot_reference as ref  # noqa: E402
import qwen2_reference as qwen  # noqa: E402

root = os.path.join(os.path.dirname(__file__), "..", "tests", "Parrot.Parrot.Tests", "Fixtures", "parrot")
torch.set_num_threads(1)

VISION = {"model_type": "clip_vision_model", "architectures": ["CLIPVisionModel"], "hidden_size": 16,
          "intermediate_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "num_channels": 3,
          "image_size": 28, "patch_size": 7, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "torch_dtype": "float32"}
PREPROCESSOR = {"crop_size": {"height": 28, "width": 28}, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": vf.CLIP_MEAN, "image_std": vf.CLIP_STD,
                "resample": 3, "size": {"shortest_edge": 28}}
PROMPT = [7, 31, 2, ref.IMAGE_TOKEN, 45, 12, 60, 3, 19]
VOCAB = 64


def parrot_config(dtype, kv_heads, select_layer):
    return {
        "architectures": ["ParrotQwen2ForCausalLM"], "model_type": "parrot_qwen2",
        "vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": kv_heads, "hidden_act": "silu", "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6, "max_position_embeddings": 256, "tie_word_embeddings": False, "initializer_range": 0.1,
        "bos_token_id": 61, "eos_token_id": 63, "use_cache": True, "use_sliding_window": False,
        "torch_dtype": "bfloat16" if dtype == torch.bfloat16 else "float32", "transformers_version": "4.39.0",
        "mm_vision_tower": "../tower", "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": 16,
        "mm_vision_select_layer": select_layer, "mm_vision_select_feature": "cls_patch", "mm_patch_merge_type": "flat",
        "use_mm_proj": True, "image_aspect_ratio": "pad", "tokenizer_padding_side": "right",
        "tokenizer_model_max_length": 2048, "num_experts": 3, "moe_hidden_size": 32, "moe_intermediate_size": 24,
        "moe_top_k": 3, "moe_weight": 0.1, "use_moe": True, "use_moe_residual": True, "tune_mm_mlp_adapter": False,
        "freeze_mm_mlp_adapter": False, "mm_projector_lr": None,
    }


def multimodal_params(cfg, seed, dtype):
    """Projector and MoE with the released names; scales chosen so each part (and the routing) matters."""
    g = torch.Generator().manual_seed(seed)
    h, c, e, m = cfg["hidden_size"], cfg["mm_hidden_size"], cfg["num_experts"], cfg["moe_intermediate_size"]

    def normal(std, *shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(dtype)

    p = {"model.mm_projector.0.weight": normal(c ** -0.5, h, c), "model.mm_projector.0.bias": normal(0.1, h),
         "model.mm_projector.2.weight": normal(h ** -0.5, h, h), "model.mm_projector.2.bias": normal(0.1, h),
         "model.moe_model.gate.weight": normal(2.0, e, h)}
    for i in range(e):
        x = f"model.moe_model.experts.{i}."
        p[x + "gate_proj.weight"] = normal(h ** -0.5, m, h)
        p[x + "up_proj.weight"] = normal(h ** -0.5, m, h)
        p[x + "down_proj.weight"] = normal(m ** -0.5, h, m)
    return p


def write_config(folder, name, obj):
    with open(os.path.join(folder, name), "w") as f:
        json.dump(obj, f, indent=1)


def write_shards(folder, tensors, shards):
    names = sorted(tensors)
    per = (len(names) + shards - 1) // shards
    weight_map, total = {}, 0
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s * per:(s + 1) * per]}
        qf.write_safetensors(os.path.join(folder, file), part)
        for n, t in part.items():
            weight_map[n] = file
            total += t.numel() * t.element_size()
    write_config(folder, "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def pixels_of(image_path):
    image = Image.open(image_path).convert("RGB")
    pre = {"size": 28, "crop_size": 28, "resample": 3, "image_mean": vf.CLIP_MEAN, "image_std": vf.CLIP_STD}
    return torch.from_numpy(vf.reference(image, pre, pad=True))[None]


def goldens(folder, params, tower, cfg, pixels, text_only):
    p32 = {k: v.float() for k, v in params.items()}
    t32 = {k: v.float() for k, v in tower.items()}
    with torch.no_grad():
        logits, w = ref.forward(p32, t32, cfg, VISION, PROMPT, pixels)
        n = clip.vision_config(VISION)
        tokens = n["image_size"] // n["patch_size"]
        assert logits.shape == (len(PROMPT) - 1 + 1 + tokens * tokens, VOCAB), logits.shape
        assert abs(w.sum().item() - 1) < 1e-6 and w.max().item() < 0.9, w  # a real mix, not one expert
        seq, margin = ref.greedy(p32, t32, cfg, VISION, PROMPT, pixels, 8)
        assert margin > 1e-2, f"greedy decoding has a near-tie ({margin}): pick another seed"
        # Without the image the logits must differ (the visual tokens matter) and the MoE must matter.
        no_moe, _ = ref.forward(p32, t32, {**cfg, "use_moe": False}, VISION, PROMPT, pixels)
        assert (no_moe - logits).norm() / logits.norm() > 0.05
    np.save(os.path.join(folder, "logits.npy"), logits.numpy().astype(np.float32))
    np.save(os.path.join(folder, "routing.npy"), w.numpy().astype(np.float32))
    np.save(os.path.join(folder, "greedy.npy"), np.array(seq, np.int64))
    if text_only:
        text_ids = [t for t in PROMPT if t != ref.IMAGE_TOKEN]
        with torch.no_grad():
            lt, _ = ref.forward(p32, t32, cfg, VISION, text_ids)
            # The image first: a token list that starts with a negative id (the CLI needs --tokens=...).
            lf, _ = ref.forward(p32, t32, cfg, VISION, [ref.IMAGE_TOKEN] + text_ids, pixels)
            # Stage 1 (use_moe false: MoE bypassed) with mm_vision_select_feature "patch" (CLS dropped: 16 visual tokens).
            lp, _ = ref.forward(p32, t32, {**cfg, "use_moe": False, "mm_vision_select_feature": "patch"}, VISION, PROMPT, pixels)
            assert lp.shape[0] == len(PROMPT) - 1 + tokens * tokens
        np.save(os.path.join(folder, "logits_text.npy"), lt.numpy().astype(np.float32))
        np.save(os.path.join(folder, "logits_patch_nomoe.npy"), lp.numpy().astype(np.float32))
        np.save(os.path.join(folder, "logits_image_first.npy"), lf.numpy().astype(np.float32))
    print(f"{os.path.basename(folder)}: logits {tuple(logits.shape)}, routing {w.numpy().round(3)}, greedy {seq}, margin {margin:.4f}")


def main():
    os.makedirs(root, exist_ok=True)
    rgb = vf.synth(40, 30, 11)
    image_path = os.path.join(root, "image.png")
    Image.fromarray(rgb).save(image_path, optimize=True)
    np.save(os.path.join(root, "prompt.npy"), np.array(PROMPT, np.int64))
    pixels = pixels_of(image_path)

    tower_dir = os.path.join(root, "tower")
    os.makedirs(tower_dir, exist_ok=True)
    tower_a = clip.init_params(VISION, 41)
    write_config(tower_dir, "config.json", VISION)
    write_config(tower_dir, "preprocessor_config.json", PREPROCESSOR)
    qf.write_safetensors(os.path.join(tower_dir, "model.safetensors"), tower_a)

    # f32, the tower in its own folder.
    cfg = parrot_config(torch.float32, 2, -2)
    params = {**qwen.init_params(cfg, 48), **multimodal_params(cfg, 43, torch.float32)}
    folder = os.path.join(root, "f32-separate")
    os.makedirs(folder, exist_ok=True)
    write_config(folder, "config.json", cfg)
    qf.write_safetensors(os.path.join(folder, "model.safetensors"), params)
    goldens(folder, params, tower_a, cfg, pixels, text_only=True)

    # bf16, the tower inside the (sharded) checkpoint.
    cfg = parrot_config(torch.bfloat16, 1, 1)
    params = {**qwen.init_params(cfg, 44, torch.bfloat16), **multimodal_params(cfg, 45, torch.bfloat16)}
    tower_b = clip.init_params(VISION, 46, torch.bfloat16)
    folder = os.path.join(root, "bf16-bundled")
    os.makedirs(folder, exist_ok=True)
    write_config(folder, "config.json", cfg)
    write_shards(folder, {**params, **{ref.TOWER_PREFIX + k: v for k, v in tower_b.items()}}, 2)
    goldens(folder, params, tower_b, cfg, pixels, text_only=False)

    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    print(f"written under {os.path.abspath(root)}: {total / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
