#!/usr/bin/env bash
# Side-by-side GEMM benchmark: `parrot bench gemm` (Release build) and numpy/OpenBLAS on the same shapes,
# alternating shape by shape for --rounds rounds, then a table with both GFLOP/s (median over rounds) and the ratio
# ours/numpy per shape. Both sides use the same thread count (default 2).
#
#   bench/gemm-vs-numpy.sh [--sizes S] [--threads T] [--repeat R] [--dtype f32|bf16] [--rounds N] [--bt]
#
# --bt gives B as the transpose of a row-major [N, K] matrix on both sides (x · Wᵀ, a linear layer).
#
# numpy has no bfloat16 matmul: with --dtype bf16 our bf16 product is compared with numpy's float32 one.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes="1024,2048,4096,1x896x4864,1x4864x896,1x896x896,1x4864x4864,16x896x4864,16x4864x896,16x896x896,16x4864x4864"
threads=2; repeat=7; dtype=f32; rounds=3; bt=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --dtype) dtype="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --bt) bt="--bt"; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "gemm-vs-numpy.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

python=/usr/bin/python3
openblas=/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0
if ! [ -x "$python" ] || ! "$python" -c 'import numpy' 2>/dev/null || ! [ -e "$openblas" ]; then
  echo "installing python3-numpy and libopenblas0-pthread (numpy without OpenBLAS runs the reference BLAS)" >&2
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy libopenblas0-pthread >&2
fi

dotnet build src/Parrot.Cli -c Release -v quiet -nologo >&2
parrot=src/Parrot.Cli/bin/Release/net10.0/parrot

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The machine is shared and its speed drifts by up to 2x within a minute, so the two sides are run
# alternately shape by shape, and each ratio is taken between runs made seconds apart.
IFS=',' read -r -a shape_list <<< "$sizes"
for r in $(seq 1 "$rounds"); do
  for shape in "${shape_list[@]}"; do
    echo "round $r/$rounds, $shape: parrot, numpy" >&2
    "$parrot" bench gemm --sizes "$shape" --threads "$threads" --repeat "$repeat" --dtype "$dtype" $bt --json >> "$out/ours.$r.jsonl"
    # OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are unset for this command only, so OpenBLAS detects the CPU and
    # picks its AVX-512 kernels.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads" \
      "$python" bench/peers/numpy_gemm.py --sizes "$shape" --repeat "$repeat" $bt --json >> "$out/numpy.$r.jsonl"
  done
done

"$python" - "$out" "$rounds" "$dtype" "$threads" "$bt" <<'PY'
import json, statistics, sys
out, rounds, dtype, threads, bt = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def load(side):
    table = {}
    for r in range(1, rounds + 1):
        for line in open(f"{out}/{side}.{r}.jsonl"):
            for row in json.loads(line):
                table.setdefault(row["shape"], []).append(row["gflops"])
    return table
ours, peer = load("ours"), load("numpy")
print(f"GEMM{' with B transposed' if bt else ''}, {threads} threads, ours {dtype} vs numpy/OpenBLAS float32: GFLOP/s median of {rounds} round(s);")
print("ratio = median over rounds of ours/numpy measured back to back")
print(f"{'shape (M×K·K×N)':<22} {'ours':>9} {'numpy':>9} {'ratio':>7}   per-round ratios")
for shape, g in ours.items():
    m, k, n = shape.split("x")
    p = peer[shape]
    ratios = [x / y for x, y in zip(g, p)]
    print(f"{f'{m}×{k}·{k}×{n}':<22} {statistics.median(g):9.1f} {statistics.median(p):9.1f} {statistics.median(ratios):7.2f}   "
          + " ".join(f"{x:.2f}" for x in ratios))
PY
