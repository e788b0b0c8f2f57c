#!/usr/bin/env bash
# Side by side: one CLIP vision tower forward (ViT-L/14-336 shapes by default: 24 layers, width 1024, 577
# tokens; random weights, float32, batch 1, 2 threads) in ParrotNative (`parrot bench vit`) and in PyTorch
# (bench/peers/torch_vit.py: tools/clip_vision_reference.py with PyTorch's fused layer norm and linear),
# alternating for --rounds rounds; prints both medians and the speed ratios (PyTorch time / ours) for the
# forward up to hidden_states[-2] (Parrot's) and for all layers + pooled output. The load average is printed
# with each round: on a shared machine, rounds taken under very different loads are not comparable.
#   bench/vit-vs-torch.sh [--layers L] [--hidden H] [--image S] [--reps N] [--rounds R] [--threads T] [--profile]
set -euo pipefail
cd "$(dirname "$0")/.."
layers=24; hidden=1024; image=336; reps=3; rounds=3; threads=2; profile=""
while [ $# -gt 0 ]; do
  case "$1" in
    --layers) layers="$2"; shift 2 ;; --hidden) hidden="$2"; shift 2 ;; --image) image="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;; --rounds) rounds="$2"; shift 2 ;; --threads) threads="$2"; shift 2 ;;
    --profile) profile="--profile"; shift ;;
    *) echo "vit-vs-torch.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null || ! [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 ]; then
  echo "installing python3-torch and libopenblas0-pthread" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread >&2
fi
dotnet build src/Parrot.Cli -c Release -v quiet -nologo >&2
field() { sed -n "s/.*\"$1\": *\([0-9.]*\).*/\1/p"; }
os=(); of=(); ts=(); tf=()
for r in $(seq "$rounds"); do
  o=$(src/Parrot.Cli/bin/Release/net10.0/parrot bench vit --layers "$layers" --hidden "$hidden" --image "$image" --reps "$reps" --threads "$threads" --json $profile)
  t=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/peers/torch_vit.py "$layers" "$hidden" "$image" "$reps" "$threads" $profile)
  os+=("$(echo "$o" | field ms_select)"); of+=("$(echo "$o" | field ms_full)")
  ts+=("$(echo "$t" | field ms_select)"); tf+=("$(echo "$t" | field ms_full)")
  echo "round $r (load average $(cut -d' ' -f1-3 /proc/loadavg)): parrot ${os[-1]} / ${of[-1]} ms, pytorch ${ts[-1]} / ${tf[-1]} ms (to hidden_states[-2] / all layers)" >&2
  if [ -n "$profile" ]; then echo "  parrot ops:  $(echo "$o" | sed 's/.*"ops"://')" >&2; echo "  pytorch ops: $(echo "$t" | sed 's/.*"ops": //')" >&2; fi
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mos=$(median "${os[@]}"); mof=$(median "${of[@]}"); mts=$(median "${ts[@]}"); mtf=$(median "${tf[@]}")
echo "CLIP tower: $layers layers, width $hidden, image $image (patch 14), float32, batch 1, $threads threads, median of $rounds rounds"
printf '%-28s %12s %12s %8s\n' "" "parrot ms" "pytorch ms" "ratio"
awk -v a="$mos" -v b="$mts" 'BEGIN { printf "%-28s %12.0f %12.0f %7.2fx\n", "up to hidden_states[-2]", a, b, b / a }'
awk -v a="$mof" -v b="$mtf" 'BEGIN { printf "%-28s %12.0f %12.0f %7.2fx\n", "all layers + pooled", a, b, b / a }'
echo "(ratio = PyTorch time / ParrotNative time; > 1 means ParrotNative is faster)"
