"""numpy peer of `parrot bench ops`: the same ops on 16M float32 elements, median of repeats, JSON out.

numpy has no erf, so the peer of our exact (erf) GELU is numpy's nearest equivalent, the tanh form; the
row `gelu-erf` therefore compares our erf GELU with numpy's tanh GELU (numpy's cheapest honest GELU),
and `gelu-tanh` compares like with like. numpy computes silu and softmax as the usual multi-pass
expressions, each allocating temporaries, as numpy users write them. numpy allocates every result fresh
(huge-page advised, but faulted in on first touch each call), while ParrotNative reuses freed blocks from
its caching allocator: part of the elementwise ratios is that allocator, which is the engine's real
behaviour in a loop. Reductions allocate nothing sizeable on either side.
"""
import json
import sys
import time

import numpy as np

N = 1 << 24
SIDE = 4096
F32 = 4


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608028654) * (x + np.float32(0.044715) * x * x * x)))


def softmax_last(m):
    e = np.exp(m - m.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    only = sys.argv[2] if len(sys.argv) > 2 else None
    rng = np.random.default_rng(1)
    a = rng.standard_normal(N, dtype=np.float32)
    b = rng.standard_normal(N, dtype=np.float32)
    m = a.reshape(SIDE, SIDE)
    ops = [
        ("add", "[16777216]", 3 * F32 * N, lambda: a + b),
        ("mul", "[16777216]", 3 * F32 * N, lambda: a * b),
        ("exp", "[16777216]", 2 * F32 * N, lambda: np.exp(a)),
        ("tanh", "[16777216]", 2 * F32 * N, lambda: np.tanh(a)),
        ("gelu-erf", "[16777216]", 2 * F32 * N, lambda: gelu_tanh(a)),
        ("gelu-tanh", "[16777216]", 2 * F32 * N, lambda: gelu_tanh(a)),
        ("silu", "[16777216]", 2 * F32 * N, lambda: a / (np.float32(1) + np.exp(-a))),
        ("sum", "[16777216]", F32 * N, lambda: a.sum()),
        ("max", "[16777216]", F32 * N, lambda: a.max()),
        ("mean", "[16777216]", F32 * N, lambda: a.mean()),
        ("sum-last-axis", "[4096, 4096]", F32 * N, lambda: m.sum(axis=-1)),
        ("softmax-last-axis", "[4096, 4096]", 2 * F32 * N, lambda: softmax_last(m)),
    ]
    results = []
    for name, shape, nbytes, run in ops:
        if only and only not in name:
            continue
        for _ in range(3):
            run()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1e3)
        times.sort()
        ms = times[repeats // 2] if repeats % 2 else (times[repeats // 2 - 1] + times[repeats // 2]) / 2
        results.append({"op": name, "shape": shape, "elements": N, "bytes": nbytes, "ms": round(ms, 4),
                        "gbps": round(nbytes / (ms * 1e6), 3), "gelems": round(N / (ms * 1e6), 4)})
    print(json.dumps({"engine": "numpy " + np.__version__, "threads": 1, "results": results}))


if __name__ == "__main__":
    main()
