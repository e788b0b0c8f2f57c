#!/usr/bin/env bash
# The GPU proof of issue #7 in one call on the device machine (no .NET SDK needed there): the self-contained
# `parrot` published here (see README, "Publishing"), carried along as publish/, runs
#   1. `parrot selftest --device cuda`: every backend op against the CPU backend and the float64 reference,
#   2. its device benchmarks (bf16 GEMM 4096³/8192³, device copy, attention),
# then PyTorch's figures for the same benchmarks on the same GPU, and a side-by-side table.
#   3. the models on the device (issue #7's proof of the models; each step under its own time limit):
#      a. tiny Qwen2 and tiny CLIP forward+backward through the models, device against the CPU (selftest cases),
#      b. a 20-step `train-lm` (tiny config, fixed seed, generated text) on the device and on the CPU, losses compared,
#      c. the CUDA allocator's bytes in use after step 1 and step 200 of a training run (flat = no leak),
#      d. a Qwen2-0.5B-shaped bf16 training step: tokens/s and MFU against $PEAK_TFLOPS (H100 SXM / H200 bf16 dense:
#         989) next to PyTorch eager on the same shape (bench/torch_model_peer.py),
#      e. batch-1 decode of a Qwen2-7B-shaped model with random bf16 weights: ms/token and the fraction of the
#         HBM roofline (weight bytes / measured copy bandwidth), next to PyTorch.
# Everything lands under $OUT (the device tool's folder; ./out elsewhere). Budget: well under 8 minutes.
# Optional: BUILD_FATBIN=1 also builds native/*.cu with nvcc (native/CMakeLists.txt) and reruns the selftest
# on those fatbins instead of NVRTC's output.
# Checking the script without a GPU (what a session without one runs, in a minute or two):
#   PARROT_DEVICE=cpu SMALL=1 ONLY_MODELS=1 PARROT_BIN=src/Parrot.Cli/bin/Release/net10.0/parrot bash bench/cuda-on-device.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
BIN="${PARROT_BIN:-publish/parrot}"
export PARROT_KERNEL_CACHE="${PARROT_KERNEL_CACHE:-/tmp/parrot-kernels}"
status=0
DEV="${PARROT_DEVICE:-cuda}"
PEAK="${PEAK_TFLOPS:-989}"
SMALL="${SMALL:-0}"
PY="${PYTHON:-python3}"

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv; nvcc --version 2>/dev/null | tail -1; \
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>/dev/null; } | tee "$OUT/machine.txt"

if [ ! -x "$BIN" ]; then echo "missing $BIN: publish it first (README, Publishing) and carry publish/"; exit 2; fi

if [ "${ONLY_MODELS:-0}" != 1 ]; then
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
fi

# ---------------------------------------------------------------- 3. the models on the device
M="$OUT/models"; mkdir -p "$M"
echo "== 3a. tiny Qwen2 and tiny CLIP forward+backward through the models: $DEV against the CPU"
timeout 60 "$BIN" selftest --device "$DEV" --op "(model)" --out "$M/selftest-models.json" 2>&1 | tee "$M/selftest-models.log"
[ "${PIPESTATUS[0]}" -ne 0 ] && status=1

echo "== 3b. train-lm, 20 steps, tiny config, fixed seed, generated text: $DEV against cpu"
"$PY" bench/train_lm_fixture.py "$M"
for d in cpu "$DEV"; do
  timeout 90 "$BIN" train-lm --init "$M/init.json" --text "$M/text.jsonl" --tokenizer assets/tiny/lm/tokenizer.json --seq-len 32 \
    --steps 20 --batch 8 --lr 3e-3 --seed 1 --log "$M/train-lm-${d//:/_}.jsonl" --device "$d" > "$M/train-lm-${d//:/_}.log" 2>&1
  echo "train-lm --device $d: exit $? ($(tail -1 "$M/train-lm-${d//:/_}.log"))"
done
"$PY" - "$M/train-lm-cpu.jsonl" "$M/train-lm-${DEV//:/_}.jsonl" <<'PY' | tee "$M/train-lm-compare.txt" || status=1
import json, sys
def losses(p):
    try: return [json.loads(l)["loss"] for l in open(p) if l.strip()]
    except Exception as e: print(f"cannot read {p}: {e}"); return []
a, b = losses(sys.argv[1]), losses(sys.argv[2])
# float32 on both sides (cuBLASLt without TF32); the kernels add in other orders than the CPU, and 20 AdamW steps amplify that.
tol = 2e-3
if len(a) != 20 or len(b) != 20: print(f"train-lm: {len(a)} cpu and {len(b)} device losses, expected 20 each: FAIL"); sys.exit(1)
d = max(abs(x - y) for x, y in zip(a, b))
print("step   cpu loss    device loss   |diff|")
for i, (x, y) in enumerate(zip(a, b), 1): print(f"{i:4d} {x:11.6f} {y:13.6f} {abs(x - y):9.2e}")
print(f"train-lm 20 steps: max |loss diff| {d:.3e} (tolerance {tol:g}, float32; loss {a[0]:.4f} -> {a[-1]:.4f}): {'PASS' if d <= tol else 'FAIL'}")
sys.exit(0 if d <= tol else 1)
PY

echo "== 3c. memory in use over 200 training steps on $DEV (the allocator's statistics)"
timeout 90 "$BIN" bench train --device "$DEV" --hidden 128 --layers 2 --batch 8 --seq 64 --steps 197 --json > "$M/memory.json" 2> "$M/memory.log"
echo "bench train (200 steps): exit $?"
"$PY" - "$M/memory.json" <<'PY' || status=1
import json, sys
try: r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except Exception as e: print(f"cannot read {sys.argv[1]}: {e}"); sys.exit(1)
first, last = r["mem_first"], r["mem_last"]
ok = last <= first + (1 << 20)
print(f"bytes in use ({r['memory_source']}): after step 1 {first:,}, after step 200 {last:,}, peak {r['peak_bytes']:,}: {'flat' if ok else 'GROWING'}")
sys.exit(0 if ok else 1)
PY

if [ "$SMALL" = 1 ]; then TRAIN=(--shape tiny --batch 2 --seq 32 --steps 3); PEER_TRAIN=(tiny 2 32 3); DEC=(--shape tiny --prompt 16 --decode 8); PEER_DEC=(tiny 16 8)
else TRAIN=(--shape qwen2-0.5b --batch 8 --seq 512 --steps 10); PEER_TRAIN=(qwen2-0.5b 8 512 10); DEC=(--shape qwen2-7b --prompt 128 --decode 32); PEER_DEC=(qwen2-7b 128 32); fi
echo "== 3d. training step, ${TRAIN[*]}, bf16, on $DEV; PyTorch eager on the same shape"
timeout 150 "$BIN" bench train --device "$DEV" "${TRAIN[@]}" --dtype bf16 --peak-tflops "$PEAK" --cuda-profile --json > "$M/train-parrot.json" 2> "$M/train-parrot.log"
echo "parrot: exit $?"
timeout 120 "$PY" bench/torch_model_peer.py train "${PEER_TRAIN[@]}" > "$M/train-torch.json" 2> "$M/train-torch.log"
echo "torch: exit $?"
if [ "$DEV" != cpu ]; then # the same step with our attention kernels instead of cuDNN's fused SDPA (the default for bf16)
  PARROT_CUDNN_ATTENTION=0 timeout 150 "$BIN" bench train --device "$DEV" "${TRAIN[@]}" --dtype bf16 --peak-tflops "$PEAK" --json > "$M/train-parrot-ours.json" 2> "$M/train-parrot-ours.log"
  echo "parrot (PARROT_CUDNN_ATTENTION=0): exit $?"
fi
echo "== 3e. batch-1 decode, ${DEC[*]}, bf16 random weights, on $DEV; PyTorch on the same shape"
timeout 150 "$BIN" bench decoder --device "$DEV" "${DEC[@]}" --dtype bf16 --profile --json > "$M/decode-parrot.json" 2> "$M/decode-parrot.log"
echo "parrot: exit $?"
if [ "$DEV" != cpu ]; then # the same decode with every product on cuBLASLt (no gemv kernel): what native/gemv.cu brings
  PARROT_CUDA_GEMV=0 timeout 150 "$BIN" bench decoder --device "$DEV" "${DEC[@]}" --dtype bf16 --json > "$M/decode-parrot-cublaslt.json" 2> "$M/decode-parrot-cublaslt.log"
  echo "parrot (PARROT_CUDA_GEMV=0): exit $?"
fi
# The graph-ready static step (Qwen2StaticDecoder) issued eagerly: its ms/token and host_issue_ms against the row above
# (the same generated tokens are expected; its attention splits are sized for the cache, so the last bits may differ).
timeout 150 "$BIN" bench decoder --device "$DEV" "${DEC[@]}" --dtype bf16 --static --json > "$M/decode-parrot-static.json" 2> "$M/decode-parrot-static.log"
echo "parrot (--static): exit $?"
# The static step captured into a CUDA graph at its second token and replayed per token (one launch per step).
timeout 150 "$BIN" bench decoder --device "$DEV" "${DEC[@]}" --dtype bf16 --cuda-graph --profile --json > "$M/decode-parrot-graph.json" 2> "$M/decode-parrot-graph.log"
echo "parrot (--cuda-graph): exit $?"
# The user-facing path (the generator's session: greedy, the argmax on the device, the ids read back), eager and with the
# static step replayed from a CUDA graph (the default on a GPU), then that step with the logits read back and the pick
# on the host (the path before; sampling's): the same tokens expected, ms/token compared.
for mode in eager static static-host-pick; do
  flag=(); [ "$mode" = static ] && flag=(--static); [ "$mode" = static-host-pick ] && flag=(--static --host-pick)
  timeout 150 "$BIN" bench decoder --device "$DEV" "${DEC[@]}" --dtype bf16 --generator "${flag[@]}" --json > "$M/decode-generator-$mode.json" 2> "$M/decode-generator-$mode.log"
  echo "parrot (--generator, $mode): exit $?"
done
timeout 120 "$PY" bench/torch_model_peer.py decode "${PEER_DEC[@]}" > "$M/decode-torch.json" 2> "$M/decode-torch.log"
echo "torch: exit $?"
"$PY" - "$M" "$PEAK" <<'PY' | tee "$M/summary.txt"
import json, sys
m, peak = sys.argv[1], float(sys.argv[2])
def load(name):
    try: return json.loads(open(f"{m}/{name}").read().strip().splitlines()[-1])
    except Exception as e: print(f"{name}: no result ({e}); see {name.replace('.json', '.log')}"); return None
tp, tt, dp, dt = load("train-parrot.json"), load("train-torch.json"), load("decode-parrot.json"), load("decode-torch.json")
if tp:
    line = f"train step {tp['parameters']:,} params, batch {tp['batch']}x{tp['seq']}, bf16: parrot {tp['ms_per_step']:.1f} ms/step, {tp['tokens_per_second']:,.0f} tokens/s, {tp['tflops']:.1f} TFLOP/s = MFU {tp['tflops'] / peak:.1%} (peak {peak:g})"
    if tt: line += f"; torch {tt['ms_per_step']:.1f} ms/step, {tt['tokens_per_second']:,.0f} tokens/s, MFU {tt['tflops'] / peak:.1%}; parrot/torch tokens/s {tp['tokens_per_second'] / tt['tokens_per_second']:.2f}"
    print(line)
    print(f"  losses: parrot {tp['first_loss']:.4f} -> {tp['last_loss']:.4f}" + (f", torch {tt['first_loss']:.4f} -> {tt['last_loss']:.4f}" if tt else ""))
if dp:
    line = f"decode {dp['shape']} batch 1, bf16, {dp['weight_bytes'] / 1e9:.2f} GB of weights: parrot {dp['ms_per_token']:.2f} ms/token = {dp['roofline_fraction']:.1%} of the roofline ({dp['bound_ms']:.2f} ms at {dp['copy_gigabytes_per_second']:.0f} GB/s; host issues a step in {dp.get('host_issue_ms', float('nan')):.2f} ms)"
    if dt: line += f"; torch {dt['ms_per_token']:.2f} ms/token = {dt['roofline_fraction']:.1%}; parrot/torch speed {dt['ms_per_token'] / dp['ms_per_token']:.2f}"
    print(line)
    alt = load("decode-parrot-cublaslt.json") if __import__("os").path.exists(f"{m}/decode-parrot-cublaslt.json") else None
    if alt: print(f"  with every product on cuBLASLt (PARROT_CUDA_GEMV=0): {alt['ms_per_token']:.2f} ms/token = {alt['roofline_fraction']:.1%}; gemv kernel speed-up {alt['ms_per_token'] / dp['ms_per_token']:.2f}x")
    for name, what in (("decode-parrot-static.json", "static step, eager (--static)"), ("decode-parrot-graph.json", "static step, CUDA graph (--cuda-graph)")):
        r = load(name) if __import__("os").path.exists(f"{m}/{name}") else None
        if r: print(f"  {what}: {r['ms_per_token']:.2f} ms/token = {r['roofline_fraction']:.1%}, host issues a step in {r['host_issue_ms']:.3f} ms"
                   + (f", graph of {r['graph_nodes']} nodes" if r.get('cuda_graph') else "") + f"; tokens {'the same as' if r['generated'] == dp['generated'] else 'DIFFERENT from'} the eager decode's")
    ge, gs = (load(f"decode-generator-{k}.json") if __import__("os").path.exists(f"{m}/decode-generator-{k}.json") else None for k in ("eager", "static"))
    if ge and gs: print(f"  through the generator's session: eager {ge['ms_per_token']:.2f} ms/token, static step + CUDA graph {gs['ms_per_token']:.2f} ms/token = {gs['roofline_fraction']:.1%} (speed-up {ge['ms_per_token'] / gs['ms_per_token']:.2f}x); same tokens: {ge['generated'] == gs['generated']}")
    gh = load("decode-generator-static-host-pick.json") if __import__("os").path.exists(f"{m}/decode-generator-static-host-pick.json") else None
    if gs and gh: print(f"  greedy pick on the device {gs['ms_per_token']:.2f} ms/token vs logits read + host pick {gh['ms_per_token']:.2f} ms/token (speed-up {gh['ms_per_token'] / gs['ms_per_token']:.2f}x); same tokens: {gs['generated'] == gh['generated']}")
if tp and __import__("os").path.exists(f"{m}/train-parrot-ours.json"):
    to = load("train-parrot-ours.json")
    if to: print(f"  train step with our attention kernels (PARROT_CUDNN_ATTENTION=0): {to['ms_per_step']:.1f} ms/step vs {tp['ms_per_step']:.1f} (attention: {tp.get('attention')}); losses {to['first_loss']:.4f} -> {to['last_loss']:.4f}")
PY
exit $status
