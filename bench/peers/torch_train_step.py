"""PyTorch peer of `parrot bench train`: median time of one training step (forward + backward + AdamW) of
the same Qwen2-architecture model (tools/qwen2_reference.py), same shapes, float32, on the CPU.

Usage: torch_train_step.py HIDDEN LAYERS BATCH SEQ STEPS THREADS  -> prints JSON {"ms_per_step": ...}
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import qwen2_reference as ref  # noqa: E402

hidden, layers, batch, seq, steps, threads = (int(a) for a in sys.argv[1:7])
torch.set_num_threads(threads)
cfg = {"vocab_size": 257, "hidden_size": hidden, "intermediate_size": hidden * 11 // 4 // 8 * 8, "num_hidden_layers": layers,
       "num_attention_heads": hidden // 32, "num_key_value_heads": max(1, hidden // 64), "rope_theta": 10000.0,
       "rms_norm_eps": 1e-6, "initializer_range": 0.02, "tie_word_embeddings": False}
params = {k: torch.nn.Parameter(v) for k, v in ref.init_params(cfg, seed=1).items()}
opt = torch.optim.AdamW(list(params.values()), lr=1e-3)
g = torch.Generator().manual_seed(2)
ids = torch.randint(0, 257, (batch, seq), generator=g)
times = []
for step in range(steps + 3):
    t0 = time.perf_counter()
    logits, _ = ref.forward(params, cfg, ids)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 257), ids[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step >= 3:
        times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"ms_per_step": 1000 * times[len(times) // 2], "torch": torch.__version__, "threads": threads}))
