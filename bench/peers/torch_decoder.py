"""PyTorch peer of `parrot bench decoder`: the same Qwen2-0.5B-shaped decoder (tools/qwen2_reference.py for the
weights and the full forward), float32 or bf16 weights on the CPU, no gradients. In bf16 every weight is cast
to bfloat16 and the forward runs in bf16 as Hugging Face's does with torch_dtype=bfloat16 (RMS norm and the
attention softmax in float32).

- prefill: ref.forward over T tokens (logits of every position, as Hugging Face computes them), median of
  REPEATS runs after a warm-up;
- decode: a forward with a KV cache (below, written plainly after Hugging Face's Qwen2 with its DynamicCache:
  keys/values concatenated per layer, grouped heads repeated, causal mask offset by the cached length), one
  token at a time after a PROMPT-token prefill; the median over DECODE steps after one untimed step.

Usage: torch_decoder.py LAYERS PREFILL_LENGTHS(comma-separated) PROMPT DECODE REPEATS THREADS
         prints JSON {"prefill_ms": {"128": ...}, "decode_ms": ...}
       torch_decoder.py --serve LAYERS THREADS [f32|bf16]
         answers stdin commands one JSON line each (prefill T | decode PROMPT STEPS | quit), as
         `parrot bench decoder --serve` does, for bench/decoder-vs-torch.sh's paired measurements
"""
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import qwen2_reference as ref  # noqa: E402


def config(layers):
    return {"vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": layers,
            "num_attention_heads": 14, "num_key_value_heads": 2, "rope_theta": 1e6, "rms_norm_eps": 1e-6,
            "initializer_range": 0.02, "tie_word_embeddings": False}


def forward_cached(p, cfg, ids, cache, last_only=False):
    """ids [B, T] -> logits [B, T, V]; cache is a list (one (k, v) per layer, None at first) extended in place."""
    return forward_cached_embeds(p, cfg, p["model.embed_tokens.weight"][ids], cache, last_only)


def forward_cached_embeds(p, cfg, x, cache, last_only=False):
    """Input embeddings [B, T, H] -> logits [B, T, V] (of the last position only, [B, 1, V], with last_only);
    cache as in forward_cached. A tied model's head is its embedding table."""
    h_dim, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = h_dim // nh
    eps = cfg["rms_norm_eps"]
    b, t = x.shape[:2]
    past = 0 if cache[0] is None else cache[0][0].shape[2]
    cos, sin = ref.rope_tables(torch.arange(past, past + t), hd, cfg["rope_theta"], x.dtype)
    # Query i (absolute position past + i) sees keys 0..past + i.
    mask = torch.full((t, past + t), float("-inf")).triu(past + 1)
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        r = x
        h = ref.rms_norm(x, p[pre + "input_layernorm.weight"], eps)
        q = h @ p[pre + "self_attn.q_proj.weight"].T + p[pre + "self_attn.q_proj.bias"]
        k = h @ p[pre + "self_attn.k_proj.weight"].T + p[pre + "self_attn.k_proj.bias"]
        v = h @ p[pre + "self_attn.v_proj.weight"].T + p[pre + "self_attn.v_proj.bias"]
        q = q.view(b, t, nh, hd).transpose(1, 2)
        k = k.view(b, t, nkv, hd).transpose(1, 2)
        v = v.view(b, t, nkv, hd).transpose(1, 2)
        q = q * cos + ref.rotate_half(q) * sin
        k = k * cos + ref.rotate_half(k) * sin
        if cache[i] is not None:
            k = torch.cat((cache[i][0], k), dim=2)
            v = torch.cat((cache[i][1], v), dim=2)
        cache[i] = (k, v)
        rep = nh // nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        attn = torch.softmax(scores.float(), dim=-1).to(x.dtype)
        o = (attn @ v).transpose(1, 2).reshape(b, t, nh * hd)
        x = r + o @ p[pre + "self_attn.o_proj.weight"].T
        r = x
        h = ref.rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps)
        gate = h @ p[pre + "mlp.gate_proj.weight"].T
        up = h @ p[pre + "mlp.up_proj.weight"].T
        x = r + (torch.nn.functional.silu(gate) * up) @ p[pre + "mlp.down_proj.weight"].T
    if last_only:
        x = x[:, -1:]
    x = ref.rms_norm(x, p["model.norm.weight"], eps)
    return x @ p.get("lm_head.weight", p["model.embed_tokens.weight"]).T


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


class Session:
    """The model and the single measurements: one prefill (all logits, as ref.forward computes), a run of decode steps."""

    def __init__(self, layers, dtype="f32"):
        self.cfg = config(layers)
        self.params = ref.init_params(self.cfg, seed=1)
        if dtype == "bf16":
            self.params = {k: v.to(torch.bfloat16) for k, v in self.params.items()}
        self.g = torch.Generator().manual_seed(7)

    def ids(self, n):
        return torch.randint(0, self.cfg["vocab_size"], (1, n), generator=self.g)

    def prefill(self, t):
        ids = self.ids(t)
        with torch.no_grad():
            c0, t0 = time.process_time(), time.perf_counter()
            ref.forward(self.params, self.cfg, ids)
            return 1000 * (time.perf_counter() - t0), 1000 * (time.process_time() - c0)

    def decode(self, prompt, steps):
        """ms of each of STEPS steps after an untimed PROMPT-token prefill and one untimed step, and their CPU time."""
        cache = [None] * self.cfg["num_hidden_layers"]
        times = []
        with torch.no_grad():
            forward_cached(self.params, self.cfg, self.ids(prompt), cache)
            for step in range(-1, steps):
                if step == 0:
                    c0 = time.process_time()
                ids = self.ids(1)
                t0 = time.perf_counter()
                forward_cached(self.params, self.cfg, ids, cache)
                if step >= 0:
                    times.append(1000 * (time.perf_counter() - t0))
        return times, 1000 * (time.process_time() - c0)


def serve(layers, threads, dtype):
    """One JSON answer per stdin line: prefill T | decode PROMPT STEPS | quit (the protocol of `parrot bench decoder --serve`)."""
    torch.set_num_threads(threads)
    session = Session(layers, dtype)
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": threads, "dtype": dtype}), flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "prefill":
            ms, cpu = session.prefill(int(w[1]))
            answer = {"ms": ms, "cpu_ms": cpu}
        elif w[0] == "decode":
            ms, cpu = session.decode(int(w[1]), int(w[2]))
            answer = {"ms": ms, "cpu_ms": cpu}
        elif w[0] == "quit":
            print(json.dumps({"bye": True}), flush=True)
            return
        else:
            answer = {"error": f"unknown command {w[0]!r}"}
        print(json.dumps(answer), flush=True)


def main():
    if sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "f32")
        return
    layers, lengths, prompt, decode, repeats, threads = sys.argv[1:7]
    layers, prompt, decode, repeats, threads = int(layers), int(prompt), int(decode), int(repeats), int(threads)
    lengths = [int(s) for s in lengths.split(",") if s]
    torch.set_num_threads(threads)
    session = Session(layers)
    result = {"torch": torch.__version__, "threads": threads, "prefill_ms": {}}
    for t in lengths:
        session.prefill(t)
        result["prefill_ms"][str(t)] = median([session.prefill(t)[0] for _ in range(repeats)])
    result["decode_ms"] = median(session.decode(prompt, decode)[0])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
