#!/usr/bin/env bash
# Elementwise ops, reductions and softmax on 16M float32 elements: ParrotNative (`parrot bench ops`, both
# cores) against numpy (single-threaded for these ops, as numpy is), in alternating rounds on the same
# machine, then a table of throughput ratios. Usage: bench/ops-vs-numpy.sh [rounds] [repeats]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"
repeats="${2:-15}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

dotnet build src/Parrot.Cli -c Release -v quiet -nologo >/dev/null
parrot=(dotnet src/Parrot.Cli/bin/Release/net10.0/parrot.dll)
# Unset only for numpy: OpenBLAS then picks its AVX-512 kernels (see README, benchmarking).
numpy=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/peers/numpy_ops.py)

for ((r = 1; r <= rounds; r++)); do
  "${parrot[@]}" bench ops --json --repeats "$repeats" > "$out/parrot-$r.json"
  "${numpy[@]}" "$repeats" > "$out/numpy-$r.json"
done
/usr/bin/python3 bench/peers/compare_ops.py "$out"/parrot-*.json "$out"/numpy-*.json
