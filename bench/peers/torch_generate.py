"""PyTorch peer of `parrot bench decoder --model DIR --serve`: greedy generation with a KV cache from the same model
directory (safetensors read here, bf16 widened to float32 as ours does), built from the plain-PyTorch references in
tools/ (qwen2_reference, clip_vision_reference, parrot_reference; no Hugging Face) and bench/peers/torch_decoder.py's
cached forward.

The prompt and the pixels are the formulas of src/Parrot.Cli/Bench/GenerateSession.cs: text ids (37 i + 11) mod vocab,
with an image the placeholder after the first id; pixels [1, 3, S, S] = 1.5 sin(0.1 i). Time to first token covers,
for an image prompt, the tower from pixels, projector, MoE, the splice, the prefill (head on the last position only,
as ours) and the argmax; each further token is one cached forward and an argmax.

Usage: torch_generate.py --serve MODEL_DIR THREADS [VISION_DIR]
         answers stdin lines (generate T STEPS | generate_image T STEPS | quit) with one JSON line each:
         {"ttft_ms", "ttft_cpu_ms", "ms": [per further token], "cpu_ms" (of the further tokens), "tokens"}
"""
import json
import os
import struct
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, HERE)
import parrot_reference as parrot  # noqa: E402
import torch_decoder  # noqa: E402

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}


def read_safetensors(path):
    """name -> float32 tensor of one safetensors file (header, then raw little-endian data)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = memoryview(data)[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        raw = bytearray(body[begin:end])
        t = torch.frombuffer(raw, dtype=dtype) if raw else torch.zeros(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).to(torch.float32).contiguous()
    return out


def read_dir(folder):
    params = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            params.update(read_safetensors(os.path.join(folder, f)))
    with open(os.path.join(folder, "config.json")) as f:
        return json.load(f), params


class Session:
    def __init__(self, folder, vision=None):
        self.cfg, self.p = read_dir(folder)
        self.parrot = self.cfg["model_type"] == "parrot_qwen2"
        self.vocab = self.cfg["vocab_size"]
        self.tower = None
        if self.parrot:
            tower_dir = vision or self.cfg.get("mm_vision_tower")
            if tower_dir and not os.path.isabs(tower_dir) and vision is None:
                tower_dir = os.path.join(folder, tower_dir)
            self.vision_cfg, self.tower = read_dir(tower_dir)
            self.cfg.setdefault("mm_vision_select_feature", "patch")

    def prompt(self, length, image):
        ids = [(37 * i + 11) % self.vocab for i in range(length)]
        if image:
            ids.insert(1, parrot.IMAGE_TOKEN)
        return ids

    def pixels(self):
        s = self.vision_cfg["image_size"]
        i = torch.arange(3 * s * s, dtype=torch.float64)
        return (1.5 * torch.sin(0.1 * i)).to(torch.float32).reshape(1, 3, s, s)

    def embeds(self, ids, pixels):
        """The prompt's input embeddings [1, T', H]: visual tokens (projected, through the MoE) at the placeholder."""
        embed = self.p["model.embed_tokens.weight"]
        if pixels is None:
            return embed[torch.tensor(ids)][None]
        pos = ids.index(parrot.IMAGE_TOKEN)
        text = embed[torch.tensor([t for t in ids if t != parrot.IMAGE_TOKEN])]
        f = parrot.vision_features(self.tower, self.vision_cfg, pixels, self.cfg["mm_vision_select_layer"], self.cfg["mm_vision_select_feature"])[0]
        x = parrot.projector(self.p, f)
        if self.cfg.get("use_moe", True):
            x, _ = parrot.moe(self.p, self.cfg, x, text)
        return torch.cat([embed[torch.tensor(ids[:pos])], x, embed[torch.tensor(ids[pos + 1:])]], dim=0)[None]

    def generate(self, length, steps, image):
        ids = self.prompt(length, image)
        pixels = self.pixels() if image else None
        cache = [None] * self.cfg["num_hidden_layers"]
        tokens, times = [], []
        with torch.no_grad():
            c0, t0 = time.process_time(), time.perf_counter()
            logits = torch_decoder.forward_cached_embeds(self.p, self.cfg, self.embeds(ids, pixels), cache, last_only=True)
            tokens.append(int(logits[0, -1].argmax()))
            ttft = 1000 * (time.perf_counter() - t0)
            ttft_cpu = 1000 * (time.process_time() - c0)
            c0 = time.process_time()
            for _ in range(steps):
                t0 = time.perf_counter()
                logits = torch_decoder.forward_cached(self.p, self.cfg, torch.tensor([[tokens[-1]]]), cache)
                tokens.append(int(logits[0, -1].argmax()))
                times.append(1000 * (time.perf_counter() - t0))
            cpu = 1000 * (time.process_time() - c0)
        return {"ttft_ms": ttft, "ttft_cpu_ms": ttft_cpu, "ms": times, "cpu_ms": cpu, "tokens": tokens}


def serve(folder, threads, vision):
    torch.set_num_threads(threads)
    session = Session(folder, vision)
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": threads, "kind": "parrot" if session.parrot else "qwen2"}), flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "generate_image" and session.tower is None:
            answer = {"error": "this model takes no images (a Qwen2 LM)"}
        elif w[0] in ("generate", "generate_image"):
            answer = session.generate(int(w[1]), int(w[2]), w[0] == "generate_image")
        elif w[0] == "quit":
            print(json.dumps({"bye": True}), flush=True)
            return
        else:
            answer = {"error": f"unknown command {w[0]!r}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    assert sys.argv[1] == "--serve", __doc__
    serve(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
