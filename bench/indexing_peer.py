#!/usr/bin/env python3
"""numpy on the shapes of bench/Parrot.Bench/IndexingBenchmarks.cs (medians in ms), outputs preallocated
where numpy allows (out=). Run as:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/indexing_peer.py
"""
import time

import numpy as np


def median_ms(f, reps=21):
    for _ in range(3):
        f()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        f()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return times[len(times) // 2]


rng = np.random.default_rng(0)
weight = rng.standard_normal((32000, 896), dtype=np.float32)
ids = rng.integers(0, 32000, 4096)
rows = np.empty((4096, 896), np.float32)
x = rng.standard_normal((4096, 1024), dtype=np.float32)
columns = rng.integers(0, 1024, 512)
picked = np.empty((4096, 512), np.float32)
g = rng.standard_normal((1024, 1024), dtype=np.float32)
gather_index = rng.integers(0, 1024, (1024, 1024))
grads = rng.standard_normal((4096, 896), dtype=np.float32)
table = np.zeros((32000, 896), np.float32)
a = rng.standard_normal((2048, 2048), dtype=np.float32)
b = rng.standard_normal((2048, 2048), dtype=np.float32)
joined = np.empty((2048, 4096), np.float32)
q = rng.standard_normal((1, 14, 2048, 64), dtype=np.float32)
inv_freq = (1.0 / (1e6 ** (np.arange(0, 64, 2).astype(np.float32) / 64))).astype(np.float32)
freqs = np.arange(2048, dtype=np.float32)[:, None] * inv_freq[None, :]
emb = np.concatenate([freqs, freqs], -1)
cos, sin = np.cos(emb), np.sin(emb)


def rope():
    rotated = np.concatenate([-q[..., 32:], q[..., :32]], -1)
    return q * cos + rotated * sin


print(f"embedding 32000x896, 4096 ids: {median_ms(lambda: np.take(weight, ids, axis=0, out=rows)):.3f} ms")
print(f"index_select axis 1, 4096x1024 -> 512: {median_ms(lambda: np.take(x, columns, axis=1, out=picked)):.3f} ms")
print(f"gather axis 1, 1024x1024: {median_ms(lambda: np.take_along_axis(g, gather_index, axis=1)):.3f} ms")
print(f"scatter_add embedding backward (np.add.at): {median_ms(lambda: np.add.at(table, ids, grads), reps=5):.3f} ms")
print(f"concat axis 1, 2 x 2048x2048: {median_ms(lambda: np.concatenate([a, b], axis=1)):.3f} ms")
print(f"rope f32 1x14x2048x64 (HF formula): {median_ms(rope):.3f} ms")
