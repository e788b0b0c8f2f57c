#!/usr/bin/env bash
# Side by side: time per training step (forward + backward + AdamW, float32, 2 threads) of the same small
# Qwen2 decoder in ParrotNative (`parrot bench train`) and in PyTorch (bench/peers/torch_train_step.py),
# alternating for --rounds rounds; prints both medians and the speed ratio (PyTorch time / ours).
#   bench/train-vs-torch.sh [--hidden H] [--layers L] [--batch B] [--seq T] [--steps N] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
hidden=128; layers=4; batch=16; seq=64; steps=20; rounds=3; threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --hidden) hidden="$2"; shift 2 ;; --layers) layers="$2"; shift 2 ;; --batch) batch="$2"; shift 2 ;;
    --seq) seq="$2"; shift 2 ;; --steps) steps="$2"; shift 2 ;; --rounds) rounds="$2"; shift 2 ;;
    *) echo "train-vs-torch.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null || ! [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 ]; then
  echo "installing python3-torch and libopenblas0-pthread" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread >&2
fi
dotnet build src/Parrot.Cli -c Release -v quiet -nologo >&2
ours=(); theirs=()
for r in $(seq "$rounds"); do
  o=$(src/Parrot.Cli/bin/Release/net10.0/parrot bench train --hidden "$hidden" --layers "$layers" --batch "$batch" --seq "$seq" --steps "$steps" --threads "$threads" --json)
  t=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/peers/torch_train_step.py "$hidden" "$layers" "$batch" "$seq" "$steps" "$threads")
  ours+=("$(echo "$o" | sed -n 's/.*"ms_per_step":\([0-9.]*\).*/\1/p')")
  theirs+=("$(echo "$t" | sed -n 's/.*"ms_per_step": \([0-9.]*\).*/\1/p')")
  echo "round $r: parrot ${ours[-1]} ms/step, pytorch ${theirs[-1]} ms/step" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${ours[@]}"); mt=$(median "${theirs[@]}")
echo "hidden $hidden, layers $layers, batch ${batch}x${seq}, float32, $threads threads"
echo "parrot:  $mo ms/step"
echo "pytorch: $mt ms/step"
awk -v a="$mo" -v b="$mt" 'BEGIN { printf "speed ratio (pytorch time / parrot time): %.2fx\n", b / a }'
