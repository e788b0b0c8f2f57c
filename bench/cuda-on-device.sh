#!/usr/bin/env bash
# The GPU proof of issue #7 in one call on the device machine (no .NET SDK needed there): the self-contained
# `parrot` published here (see README, "Publishing"), carried along as publish/, runs
#   1. `parrot selftest --device cuda`: every backend op against the CPU backend and the float64 reference,
#   2. its device benchmarks (bf16 GEMM 4096³/8192³, device copy, attention),
# then PyTorch's figures for the same benchmarks on the same GPU, and a side-by-side table.
# Everything lands under $OUT (the device tool's folder; ./out elsewhere). Budget: well under 8 minutes.
# Optional: BUILD_FATBIN=1 also builds native/*.cu with nvcc (native/CMakeLists.txt) and reruns the selftest
# on those fatbins instead of NVRTC's output.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
BIN="${PARROT_BIN:-publish/parrot}"
export PARROT_KERNEL_CACHE="${PARROT_KERNEL_CACHE:-/tmp/parrot-kernels}"
status=0

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv; nvcc --version 2>/dev/null | tail -1; \
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>/dev/null; } | tee "$OUT/machine.txt"

if [ ! -x "$BIN" ]; then echo "missing $BIN: publish it first (README, Publishing) and carry publish/"; exit 2; fi

echo "== parrot selftest --device cuda"
start=$(date +%s)
timeout 300 "$BIN" selftest --device cuda --out "$OUT/selftest.json" --bench "$OUT/bench-parrot.json" 2>&1 | tee "$OUT/selftest.log"
rc=${PIPESTATUS[0]}; echo "selftest exit $rc after $(( $(date +%s) - start )) s"; [ "$rc" -ne 0 ] && status=1

echo "== PyTorch peer"
timeout 180 python3 bench/torch_peer.py --out "$OUT/bench-torch.json" 2>&1 | tee "$OUT/torch.log"
[ "${PIPESTATUS[0]}" -ne 0 ] && status=1

if [ "${BUILD_FATBIN:-0}" = 1 ] && command -v nvcc >/dev/null; then
  echo "== nvcc fatbins (native/CMakeLists.txt)"
  cmake -S native -B /tmp/parrot-native -G Ninja >/dev/null && cmake --build /tmp/parrot-native 2>&1 | tail -3
  PARROT_CUDA_FATBIN_DIR=/tmp/parrot-native timeout 120 "$BIN" selftest --device cuda --out "$OUT/selftest-fatbin.json" > "$OUT/selftest-fatbin.log" 2>&1
  echo "selftest on nvcc fatbins: exit $? ($(tail -1 "$OUT/selftest-fatbin.log"))"
fi

echo "== side by side (same GPU, same run)"
python3 - "$OUT/bench-parrot.json" "$OUT/bench-torch.json" <<'PY' | tee "$OUT/summary.txt"
import json, sys
def load(p):
    try: return json.load(open(p))
    except Exception as e: print(f"cannot read {p}: {e}"); return {"results": []}
ours, theirs = load(sys.argv[1]), load(sys.argv[2])
t = {(r["name"], r["shape"]): r for r in theirs["results"]}
print(f"device: {ours.get('device', '?')}\npeer: {theirs.get('engine', '?')}")
print(f"{'benchmark':<22} {'shape':<26} {'parrot':>12} {'torch':>12} {'ratio':>7}")
for r in ours["results"]:
    p = t.get((r["name"], r["shape"]))
    a = r["rate"]; b = p["rate"] if p else None
    ratio = f"{a / b:.2f}" if a and b else "-"
    print(f"{r['name']:<22} {r['shape']:<26} {str(a) + ' ' + r['unit'] if a else 'n/a':>12} {str(b) if b else '-':>12} {ratio:>7}")
for k, p in t.items():
    if not any((r["name"], r["shape"]) == k for r in ours["results"]):
        print(f"{p['name']:<22} {p['shape']:<26} {'n/a':>12} {p['rate']:>12} {'-':>7}")
PY
exit $status
