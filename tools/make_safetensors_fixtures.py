#!/usr/bin/env python3
"""Writes the small safetensors fixtures the SafetensorsTests read, plus manifest.json.

Run by hand with /usr/bin/python3 (numpy and torch installed); CI never runs it, the committed files are
what the tests read. The Python `safetensors` package is not installable here, so the files are written
by following the format's specification directly, independently of our C# writer:

  8 bytes   little-endian u64 N, the header length
  N bytes   UTF-8 JSON: {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}
  the rest  the tensors' raw little-endian bytes, back to back, offsets counted from the end of the header

"Reference layout" files follow what the reference (Rust) writer does, so our writer must reproduce them
byte for byte: tensors sorted by dtype in descending alignment order (I64, F64, F32, I32, BF16, F16, U8,
BOOL: the reverse of the crate's Dtype enum) then by name as UTF-8 bytes; compact JSON
(separators "," and ":", non-ASCII as raw UTF-8), __metadata__ first; the header padded with spaces to a
multiple of 8 bytes. Other files break those habits on purpose (misaligned tensors, no padding).

Values are formulas of the flat C-order index i, recomputed by the test from the manifest:

  "linear":   value[i] = i * scale + offset      (computed in float64, then cast to the dtype)
  "modular":  value[i] = (i * scale + offset) % mod
  "bool":     value[i] = (i % mod == 0)
  "values":   the listed float values (bf16 tensors rounded by torch; "bits" lists the raw bf16 bits)
  "raw":      bytes the test only lists (dtypes ParrotNative cannot load)
"""
import json
import os
import struct

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "Parrot.Tensors.Tests", "Fixtures", "safetensors")

# The crate's Dtype enum order ("increasing alignment"); the writer sorts by it, descending.
DTYPE_ORDER = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "I16", "U16",
               "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"]
NUMPY = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I32": "<i4", "I64": "<i8", "U8": "u1", "BOOL": "?"}


def count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


class Tensor:
    def __init__(self, name, dtype, shape, raw, expect):
        self.name, self.dtype, self.shape, self.raw, self.expect = name, dtype, list(shape), raw, expect


def linear(name, dtype, shape, scale, offset):
    values = np.arange(count(shape), dtype=np.float64) * scale + offset
    if dtype == "BF16":
        raw = torch.tensor(values, dtype=torch.float64).to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    else:
        raw = values.astype(NUMPY[dtype]).tobytes()
    return Tensor(name, dtype, shape, raw, {"formula": "linear", "scale": scale, "offset": offset})


def modular(name, dtype, shape, scale, offset, mod):
    values = (np.arange(count(shape), dtype=np.int64) * scale + offset) % mod
    return Tensor(name, dtype, shape, values.astype(NUMPY[dtype]).tobytes(), {"formula": "modular", "scale": scale, "offset": offset, "mod": mod})


def boolean(name, shape, mod):
    values = np.arange(count(shape)) % mod == 0
    return Tensor(name, "BOOL", shape, values.astype("?").tobytes(), {"formula": "bool", "mod": mod})


def bf16_random(name, shape, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g).to(torch.bfloat16)
    bits = t.view(torch.int16).numpy().astype("<i2")
    return Tensor(name, "BF16", shape, bits.tobytes(), {
        "formula": "values",
        "values": [float(v) for v in t.to(torch.float32).flatten().tolist()],
        "bits": [int(b) & 0xFFFF for b in bits.flatten().tolist()],
    })


def raw(name, dtype, shape, nbytes, seed):
    data = np.random.default_rng(seed).integers(0, 256, size=nbytes, dtype=np.uint8).tobytes()
    return Tensor(name, dtype, shape, data, {"formula": "raw"})


def reference_order(tensors):
    return sorted(tensors, key=lambda t: (-DTYPE_ORDER.index(t.dtype), t.name.encode("utf-8")))


def write(path, tensors, metadata=None, pad=True):
    """Writes tensors in the given order; returns each tensor's absolute file offset."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, offset + len(t.raw)]}
        offset += len(t.raw)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for t in tensors:
            f.write(t.raw)
    start = 8 + len(text)
    offsets = {}
    position = start
    for t in tensors:
        offsets[t.name] = position
        position += len(t.raw)
    return offsets


def describe(tensors, offsets):
    return [{"name": t.name, "dtype": t.dtype, "shape": t.shape, "file_offset": offsets[t.name], "bytes": len(t.raw), **t.expect}
            for t in tensors]


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {"generator": "tools/make_safetensors_fixtures.py", "numpy": np.__version__, "torch": torch.__version__, "files": []}

    def save(name, tensors, metadata=None, pad=True, reference=True):
        ordered = reference_order(tensors) if reference else tensors
        offsets = write(os.path.join(OUT, name), ordered, metadata, pad)
        manifest["files"].append({"file": name, "reference_layout": reference and pad, "metadata": metadata,
                                  "tensors": describe(ordered, offsets)})

    # Every dtype we load, in the reference layout: our writer must reproduce this file byte for byte.
    save("mixed.safetensors", [
        linear("model.embed.weight", "F32", [4, 6], 0.25, -3.0),
        linear("model.norm.weight", "F32", [6], 0.5, 1.0),
        linear("scalar.f32", "F32", [], 0.0, 3.5),
        linear("empty.f32", "F32", [0, 3], 1.0, 0.0),
        linear("layers.0.proj", "BF16", [3, 5], 0.5, -4.0),
        linear("layers.0.half", "F16", [2, 4], 0.25, -1.0),
        linear("double", "F64", [2, 3, 2], 0.1, 0.001),
        linear("ids", "I64", [5], 3000000000, -6000000000),
        linear("positions", "I32", [7], -3, 7),
        modular("bytes", "U8", [10], 37, 5, 256),
        boolean("mask", [2, 5], 3),
    ], metadata={"format": "pt", "producer": "make_safetensors_fixtures"})

    # A bf16 checkpoint as torch rounds it, to be loaded as float32 compute.
    save("bf16_weights.safetensors", [
        bf16_random("lm_head.weight", [5, 7], 1),
        bf16_random("model.layers.0.mlp.up_proj.weight", [3, 8], 2),
        bf16_random("model.norm.weight", [9], 3),
    ], metadata={"format": "pt"})

    # Not the reference layout: a small U8 tensor first and an unpadded header push the F32 and F64
    # tensors off their natural alignment, so the reader must copy instead of mapping them.
    save("unaligned.safetensors", [
        modular("a.bytes", "U8", [3], 1, 250, 256),
        linear("b.f32", "F32", [2, 2], 1.5, -2.0),
        linear("c.f64", "F64", [3], -0.5, 10.0),
        boolean("d.mask", [4], 2),
        linear("e.i64", "I64", [2], 1, -1),
    ], metadata=None, pad=False, reference=False)

    # Dtypes the format defines but ParrotNative cannot load: listing works, loading them fails clearly.
    save("exotic_dtypes.safetensors", [
        raw("int8", "I8", [4], 4, 1),
        raw("int16", "I16", [2, 2], 8, 2),
        raw("uint16", "U16", [3], 6, 3),
        raw("uint32", "U32", [2], 8, 4),
        raw("uint64", "U64", [1], 8, 5),
        raw("fp8", "F8_E4M3", [5], 5, 6),
        linear("ok", "F32", [2], 1.0, 0.5),
    ], metadata={"format": "pt"})

    # A sharded checkpoint as transformers lays it out: shards filled greedily in save order up to
    # max_shard_bytes of tensor data, each in the reference layout with {"format": "pt"}, and the index
    # written with json.dumps(indent=2, sort_keys=True) + "\n".
    sharded = os.path.join(OUT, "sharded")
    os.makedirs(sharded, exist_ok=True)
    save_order = [
        linear("model.embed_tokens.weight", "F32", [6, 4], 0.125, -1.0),
        linear("model.layers.0.self_attn.q_proj.weight", "BF16", [4, 4], 0.25, -2.0),
        linear("model.layers.0.self_attn.q_proj.bias", "F32", [4], 1.0, 0.0),
        linear("model.layers.1.self_attn.q_proj.weight", "BF16", [4, 4], -0.25, 2.0),
        linear("model.layers.1.self_attn.q_proj.bias", "F32", [4], -1.0, 0.0),
        linear("model.norm.weight", "F32", [4], 0.5, 0.5),
        linear("lm_head.weight", "F32", [6, 4], -0.125, 1.0),
    ]
    max_shard_bytes = 128
    groups, current, size = [], [], 0
    for t in save_order:
        if current and size + len(t.raw) > max_shard_bytes:
            groups.append(current)
            current, size = [], 0
        current.append(t)
        size += len(t.raw)
    groups.append(current)
    weight_map = {}
    shards = []
    for i, group in enumerate(groups):
        name = "model-%05d-of-%05d.safetensors" % (i + 1, len(groups))
        ordered = reference_order(group)
        offsets = write(os.path.join(sharded, name), ordered, {"format": "pt"})
        shards.append({"file": name, "tensors": describe(ordered, offsets)})
        for t in group:
            weight_map[t.name] = name
    index = {"metadata": {"total_size": sum(len(t.raw) for t in save_order)}, "weight_map": weight_map}
    with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    manifest["sharded"] = {"folder": "sharded", "max_shard_bytes": max_shard_bytes,
                           "save_order": [t.name for t in save_order], "shards": shards}

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("wrote", len(manifest["files"]), "files and a", len(groups), "shard checkpoint to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
