"""Golden Qwen2 forward passes for tests/Parrot.Nn.Tests/Fixtures/qwen2 (run by hand with /usr/bin/python3).

Small random checkpoints with the real Hugging Face names, written as real model directories (config.json +
model.safetensors, written by hand from the format spec), and the logits and final hidden states of the
independent PyTorch implementation in tools/qwen2_reference.py. Variants: float32 and bf16 weights, tied and
untied embeddings, grouped-query and multi-head attention, and a batch with right padding.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import qwen2_reference as ref  # noqa: E402

root = os.path.join(os.path.dirname(__file__), "..", "tests", "Parrot.Nn.Tests", "Fixtures", "qwen2")
torch.set_num_threads(1)

DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def variant(name, dtype, tie, heads, kv_heads, seed):
    cfg = {"model_type": "qwen2", "vocab_size": 96, "hidden_size": 64, "intermediate_size": 160, "num_hidden_layers": 2,
           "num_attention_heads": heads, "num_key_value_heads": kv_heads, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
           "initializer_range": 0.1, "tie_word_embeddings": tie, "max_position_embeddings": 128, "eos_token_id": 95,
           "torch_dtype": "bfloat16" if dtype == torch.bfloat16 else "float32"}
    params = ref.init_params(cfg, seed, dtype)
    out = os.path.join(root, name)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    write_safetensors(os.path.join(out, "model.safetensors"), params)
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, cfg["vocab_size"], (2, 11), generator=g)
    mask = torch.ones(2, 11, dtype=torch.int64)
    mask[1, 8:] = 0  # right padding on the second row
    with torch.no_grad():
        # float32 compute on the (possibly bf16-rounded) weights: the golden a float32 engine should reach.
        p32 = {k: v.float() for k, v in params.items()}
        logits, hidden = ref.forward(p32, cfg, ids, mask)
    np.save(os.path.join(out, "ids.npy"), ids.numpy().astype(np.int64))
    np.save(os.path.join(out, "mask.npy"), mask.numpy().astype(np.int64))
    np.save(os.path.join(out, "logits.npy"), logits.numpy().astype(np.float32))
    np.save(os.path.join(out, "hidden.npy"), hidden.numpy().astype(np.float32))
    # Greedy continuation of row 0 by full recomputation, 8 tokens (eos ignored): the golden for `parrot generate`.
    seq = ids[:1]
    with torch.no_grad():
        for _ in range(8):
            lg, _ = ref.forward(p32, cfg, seq)
            seq = torch.cat([seq, lg[:, -1].argmax(-1, keepdim=True)], dim=1)
    np.save(os.path.join(out, "greedy.npy"), seq[0, ids.shape[1]:].numpy().astype(np.int64))
    if dtype == torch.bfloat16:
        with torch.no_grad():
            lb, _ = ref.forward(params, cfg, ids[:1])  # bf16 compute, one row without padding
        np.save(os.path.join(out, "logits_bf16.npy"), lb.float().numpy())


if __name__ == "__main__":
    variant("f32-gqa-untied", torch.float32, False, 4, 2, 21)
    variant("f32-mha-tied", torch.float32, True, 4, 4, 22)
    variant("bf16-gqa-untied", torch.bfloat16, False, 8, 2, 23)
    print("written under", os.path.abspath(root))
