"""Generates the golden fixtures of tests/Parrot.Nn.Tests/Fixtures with Debian's python3-torch.

Run by hand (CI never runs Python):  /usr/bin/python3 tools/make_nn_fixtures.py

adamw/   : torch.optim.AdamW on float64 parameters with given gradients, the parameters after each step.
tiny-lm/ : a tiny Qwen2 decoder (tools/qwen2_reference.py), its initial weights, the token batches and the
           losses of its first 10 AdamW steps in float32 (mean next-token cross-entropy).
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import qwen2_reference as ref  # noqa: E402

root = os.path.join(os.path.dirname(__file__), "..", "tests", "Parrot.Nn.Tests", "Fixtures")
torch.set_num_threads(1)


def save(folder, name, array):
    os.makedirs(folder, exist_ok=True)
    np.save(os.path.join(folder, name + ".npy"), np.ascontiguousarray(array))


def adamw_fixture():
    out = os.path.join(root, "adamw")
    g = torch.Generator().manual_seed(7)
    shapes = [(5, 3), (7,)]
    params = [torch.randn(*s, generator=g, dtype=torch.float64) for s in shapes]
    for i, p in enumerate(params):
        save(out, f"param{i}_init", p.numpy())
    params = [torch.nn.Parameter(p.clone()) for p in params]
    opt = torch.optim.AdamW(params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    steps = 6
    for s in range(steps):
        for i, p in enumerate(params):
            grad = torch.randn(*p.shape, generator=g, dtype=torch.float64) * (10.0 ** (s - 3))
            p.grad = grad
            save(out, f"param{i}_grad{s}", grad.numpy())
        opt.step()
        for i, p in enumerate(params):
            save(out, f"param{i}_after{s}", p.detach().numpy())
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.05, "steps": steps,
                   "params": len(shapes), "torch": torch.__version__}, f, indent=1)


def tiny_lm_fixture():
    out = os.path.join(root, "tiny-lm")
    cfg = {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
           "initializer_range": 0.2, "tie_word_embeddings": False, "max_position_embeddings": 64}
    train = {"steps": 10, "batch": 4, "seq": 16, "lr": 1e-2, "weight_decay": 0.1, "betas": [0.9, 0.999], "eps": 1e-8}
    params = ref.init_params(cfg, seed=11)
    for k, v in params.items():
        save(os.path.join(out, "init"), k, v.numpy())
    g = torch.Generator().manual_seed(12)
    ids = torch.randint(0, cfg["vocab_size"], (train["steps"] * train["batch"], train["seq"]), generator=g)
    save(out, "ids", ids.numpy().astype(np.int64))
    leaves = {k: torch.nn.Parameter(v.clone()) for k, v in params.items()}
    opt = torch.optim.AdamW(list(leaves.values()), lr=train["lr"], betas=tuple(train["betas"]), eps=train["eps"],
                            weight_decay=train["weight_decay"])
    losses = []
    for s in range(train["steps"]):
        batch = ids[s * train["batch"]:(s + 1) * train["batch"]]
        logits, _ = ref.forward(leaves, cfg, batch)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, cfg["vocab_size"]), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    save(out, "losses", np.array(losses, dtype=np.float64))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"model": cfg, "train": train, "torch": torch.__version__}, f, indent=1)
    print("tiny-lm losses:", losses)


if __name__ == "__main__":
    adamw_fixture()
    tiny_lm_fixture()
