#!/usr/bin/env bash
# Side by side: inference speed of a Qwen2-0.5B-shaped decoder (hidden 896, 24 layers, 14/2 heads, MLP 4864,
# vocab 151936, untied, float32, 2 threads) in ParrotNative (`parrot bench decoder`) and in PyTorch
# (bench/peers/torch_decoder.py): prefill of 128 and 512 tokens (all logits, as Hugging Face computes them;
# ours also with the last position's logits only) and per-token decode with the KV cache after a 128-token
# prompt. The two alternate for --rounds rounds; prints the medians, the ratios (PyTorch time / ours, so > 1
# means we are faster) and decode against its memory-bandwidth bound (weight bytes / copy bandwidth, measured
# by our run).
#   bench/decoder-vs-torch.sh [--layers L] [--rounds R] [--decode N] [--repeats N]
set -euo pipefail
cd "$(dirname "$0")/.."
layers=24; rounds=3; decode=32; repeats=3; prompt=128; prefill=128,512; threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --layers) layers="$2"; shift 2 ;; --rounds) rounds="$2"; shift 2 ;; --decode) decode="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    *) echo "decoder-vs-torch.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null || ! [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 ]; then
  echo "installing python3-torch and libopenblas0-pthread" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread >&2
fi
dotnet build src/Parrot.Cli -c Release -v quiet -nologo >&2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$rounds"); do
  src/Parrot.Cli/bin/Release/net10.0/parrot bench decoder --layers "$layers" --prefill "$prefill" --prompt "$prompt" \
    --decode "$decode" --repeats "$repeats" --threads "$threads" --json > "$out/ours.$r.json"
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/peers/torch_decoder.py \
    "$layers" "$prefill" "$prompt" "$decode" "$repeats" "$threads" > "$out/torch.$r.json"
  echo "round $r done" >&2
done
/usr/bin/python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
ours = [json.load(open(f"{out}/ours.{r}.json")) for r in range(1, rounds + 1)]
torch = [json.load(open(f"{out}/torch.{r}.json")) for r in range(1, rounds + 1)]
med = statistics.median
o0 = ours[0]
print(f"Qwen2-0.5B shape, {o0['Layers']} layers, float32, {torch[0]['threads']} threads, torch {torch[0]['torch']}; medians of {rounds} alternating rounds")
print(f"{'':28}{'parrot':>12}{'pytorch':>12}{'ratio':>8}   (ratio = pytorch time / parrot time)")
for t in o0["PrefillMs"]:
    a = med(o["PrefillMs"][t] for o in ours); b = med(x["prefill_ms"][t] for x in torch)
    last = med(o["PrefillLastMs"][t] for o in ours)
    print(f"{'prefill ' + t + ' (all logits)':28}{a:10.1f}ms{b:10.1f}ms{b / a:7.2f}x")
    print(f"{'prefill ' + t + ' (last logits)':28}{last:10.1f}ms{b:10.1f}ms{b / last:7.2f}x")
a = med(o["DecodeMs"] for o in ours); b = med(x["decode_ms"] for x in torch)
print(f"{'decode (ms/token)':28}{a:10.1f}ms{b:10.1f}ms{b / a:7.2f}x")
bw = med(o["CopyGigabytesPerSecond"] for o in ours); bound = med(o["DecodeBoundMs"] for o in ours)
print(f"bandwidth bound: {o0['DecodeWeightBytes'] / 1e9:.3f} GB of weights / {bw:.1f} GB/s copy = {bound:.1f} ms/token;"
      f" parrot decode {a / bound:.2f}x the bound, pytorch {b / bound:.2f}x")
PY
