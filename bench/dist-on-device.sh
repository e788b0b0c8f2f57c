#!/usr/bin/env bash
# The GPU proof of issue #9 in one call on the device machine (no .NET SDK there): the self-contained `parrot`
# published here (docs/cuda.md, runbook), carried as publish/, runs
#   1. `parrot dist-check --device cuda --backend nccl`: NCCL with one rank, every collective on device buffers
#      checked against float64 sums (what MPI computes on the CPU), all-reduce time on a 256 MiB device buffer;
#   2. the same through a torchrun-style launch (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*);
#   3. PyTorch's bf16 step time of one Qwen1.5-7B-shaped decoder layer and the LM head (the measured input of
#      bench/RESULTS.md's estimate for Parrot-7B on 8 and 16 H100s).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
BIN="${PARROT_BIN:-publish/parrot}"
export PARROT_KERNEL_CACHE=/tmp/parrot-kernels
status=0
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; ls /opt/*/.venv/lib/python3*/site-packages/nvidia/nccl/lib 2>/dev/null; } | tee "$OUT/machine.txt"
echo "== NCCL, one rank"
timeout 150 "$BIN" dist-check --device cuda --backend nccl --mib 256 --iters 10 2>&1 | tee "$OUT/dist-check-nccl.log"
[ "${PIPESTATUS[0]}" -ne 0 ] && status=1
echo "== torchrun-style launch, WORLD_SIZE=1"
RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29512 timeout 60 "$BIN" dist-check --device cuda --backend nccl --mib 16 --iters 3 2>&1 | tee "$OUT/dist-check-env.log"
[ "${PIPESTATUS[0]}" -ne 0 ] && status=1
echo "== PyTorch: Qwen1.5-7B-shaped layer, bf16, fwd+bwd"
timeout 150 python3 bench/layer_step_torch.py 2>&1 | tee "$OUT/layer-step.log"
exit $status
