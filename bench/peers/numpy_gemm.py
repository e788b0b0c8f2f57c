#!/usr/bin/env python3
"""The numpy/OpenBLAS side of `bench/gemm-vs-numpy.sh`: GFLOP/s of numpy's matmul on the shapes
`parrot bench gemm` measures, timed the same way (warm-up, samples of at least 20 ms, median).

Run it as `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/peers/numpy_gemm.py`
so that OpenBLAS picks its AVX-512 kernels; set OPENBLAS_NUM_THREADS before starting Python.
It refuses to report numbers unless OpenBLAS is the BLAS numpy actually loaded (Debian's numpy
silently falls back to the reference BLAS, ~7 GFLOP/s, when libopenblas0-pthread is missing).
"""
import argparse
import json
import sys
import time

import numpy as np

MIN_SAMPLE_SECONDS = 0.02
WARMUP_SECONDS = 0.2
DEFAULT_SIZES = ("1024,2048,4096,1x896x4864,1x4864x896,1x896x896,1x4864x4864,"
                 "16x896x4864,16x4864x896,16x896x896,16x4864x4864")


def parse_sizes(text):
    shapes = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.lower().replace("×", "x").split("x")
        if len(parts) not in (1, 3) or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise SystemExit(f"numpy_gemm.py: bad size '{item}' (use N or MxKxN)")
        dims = [int(p) for p in parts]
        shapes.append((dims[0], dims[0], dims[0]) if len(dims) == 1 else tuple(dims))
    return shapes


def loaded_blas():
    """The BLAS shared objects mapped into this process (after numpy has used BLAS once)."""
    a = np.ones((64, 64), dtype=np.float32)
    a @ a
    libs = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1] if len(line.split()) >= 6 else ""
            if "blas" in path or "lapack" in path:
                libs.add(path)
    return sorted(libs)


def measure(m, k, n, repeat, transposed_b):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((n, k), dtype=np.float32).T if transposed_b else rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), dtype=np.float32)
    start, calls = time.perf_counter(), 0
    while True:
        np.matmul(a, b, out=c)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= WARMUP_SECONDS and calls >= 2:
            break
    inner = max(1, int(-(-MIN_SAMPLE_SECONDS // (elapsed / calls))))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            np.matmul(a, b, out=c)
        samples.append((time.perf_counter() - t0) / inner)
    samples.sort()
    return samples[repeat // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=DEFAULT_SIZES)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--bt", action="store_true", help="B as the transpose of a row-major [N, K] matrix")
    args = ap.parse_args()

    libs = loaded_blas()
    if not any("openblas" in p for p in libs):
        print("numpy_gemm.py: numpy is not using OpenBLAS (loaded: %s); install libopenblas0-pthread"
              % (", ".join(libs) or "no BLAS library found"), file=sys.stderr)
        return 3

    results = []
    if not args.json:
        print(f"numpy {np.__version__} matmul, float32, BLAS: {', '.join(libs)}")
        print(f"{'shape (M×K·K×N)':<22} {'GFLOP/s':>9} {'ms':>10}")
    for m, k, n in parse_sizes(args.sizes):
        seconds = measure(m, k, n, args.repeat, args.bt)
        gflops = 2.0 * m * n * k / seconds / 1e9
        results.append({"shape": f"{m}x{k}x{n}", "m": m, "k": k, "n": n, "dtype": "f32",
                        "gflops": round(gflops, 2), "ms": round(seconds * 1e3, 4)})
        if not args.json:
            print(f"{f'{m}×{k}·{k}×{n}':<22} {gflops:9.1f} {seconds * 1e3:10.3f}")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
