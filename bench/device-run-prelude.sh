# Sourced by the device scripts (bench/cuda-on-device-short.sh, bench/cuda-on-device-decode.sh) after
# `cd` to the repository root, with the results folder's name as $1: sets up what they share.
#   OUT    the results folder (/tmp/$1, emptied); BACK the folder the device tool returns ($OUT of the caller, else out/)
#   BIN    the parrot binary (PARROT_BIN, else publish/parrot); S the summary file; the kernel cache in /tmp
#   pack   re-packs OUT into BACK/results.tgz and copies the summary next to it (so a run cut short returns its part)
#   step   packs, then writes a step header with the seconds since the start to the summary and the terminal
# and writes the GPU's name, memory and driver as the summary's first line.
BACK="${OUT:-$PWD/out}"
OUT="/tmp/$1"
rm -rf "$OUT"; mkdir -p "$OUT" "$BACK"
pack() { tar czf "$BACK/results.tgz" -C "$(dirname "$OUT")" "$(basename "$OUT")" 2>/dev/null; cp "$OUT/summary.txt" "$BACK/" 2>/dev/null; }
BIN="${PARROT_BIN:-publish/parrot}"
export PARROT_KERNEL_CACHE="${PARROT_KERNEL_CACHE:-/tmp/parrot-kernels}"
S="$OUT/summary.txt"
: > "$S"
T0=$(date +%s)
step() { pack; echo "== [$(( $(date +%s) - T0 )) s] $*" | tee -a "$S"; }
# Serve's continuous batch of 8 greedy sequences (Qwen2-0.5B, bf16): the eager rows, then the static step with slots
# replayed from a CUDA graph, each under a limit of $1 seconds; a summary line each.
continuous_rows() {
  local mode flag
  for mode in eager slots; do
    flag=; [ "$mode" = slots ] && flag=--cuda-graph
    timeout "$1" "$BIN" bench decoder --device cuda --shape qwen2-0.5b --prompt 128 --decode 100 --dtype bf16 --continuous 8 $flag --json \
      > "$OUT/continuous-$mode.json" 2> "$OUT/continuous-$mode.log"
    echo "continuous 8 $mode exit $?: $(tail -1 "$OUT/continuous-$mode.json" | grep -oE '"(ms_per_token|cuda_graph|graph_nodes)":[a-z0-9.]+' | tr '\n' ' ')" >> "$S"
  done
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$S" 2>&1
