#!/usr/bin/env bash
# Side by side: inference speed of a Qwen2-0.5B-shaped decoder (hidden 896, 24 layers, 14/2 heads, MLP 4864,
# vocab 151936, untied, float32, or bf16 weights with --dtype bf16; 2 threads) in ParrotNative (`parrot bench decoder --serve`) and in PyTorch
# (bench/peers/torch_decoder.py --serve): prefill of 128 and 512 tokens (all logits, as Hugging Face computes
# them; ours also with the last position's logits only) and per-token decode with the KV cache after a 128-token
# prompt. Both keep their model loaded and are asked for each measurement back to back, alternating who goes
# first (bench/peers/decoder_pairs.py): prints the medians, the median per-pair ratios (PyTorch time / ours,
# > 1 means we are faster) and decode against its memory-bandwidth bound (weight bytes / copy bandwidth).
#   bench/decoder-vs-torch.sh [--layers L] [--rounds R] [--decode N] [--dtype f32|bf16] [--prefill 128,512|none]
#                             [--baseline PATH_TO_OTHER_PARROT]
# (torch 1.13's bf16 on a CPU without avx512_bf16 takes minutes per bf16 prefill of 512 tokens: --prefill 128 or none)
# With --model DIR (a Qwen2 LM such as assets/tiny/lm, or a Parrot model such as demo-out/models/parrot with its
# tower): greedy generation from that directory in both engines instead (bench/peers/generate_pairs.py): time to
# first token and ms per decoded token with the KV cache, same weights, prompt and pixels on both sides.
#   bench/decoder-vs-torch.sh --model DIR [--vision DIR] [--rounds R] [--prompt T] [--decode N]
set -euo pipefail
cd "$(dirname "$0")/.."
layers=24; rounds=5; decode=16; threads=2; baseline=""; dtype=f32; prefill=128,512; model=""; vision=""; prompt=64
while [ $# -gt 0 ]; do
  case "$1" in
    --layers) layers="$2"; shift 2 ;; --rounds) rounds="$2"; shift 2 ;; --decode) decode="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;; --model) model="$2"; shift 2 ;; --vision) vision="$2"; shift 2 ;;
    --prompt) prompt="$2"; shift 2 ;; --dtype) dtype="$2"; shift 2 ;; --prefill) prefill="$2"; shift 2 ;;
    *) echo "decoder-vs-torch.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null || ! [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0 ]; then
  echo "installing python3-torch and libopenblas0-pthread" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch libopenblas0-pthread >&2
fi
dotnet build src/Parrot.Cli -c Release -v quiet -nologo >&2
if [ -n "$model" ]; then
  exec /usr/bin/python3 bench/peers/generate_pairs.py "$PWD/src/Parrot.Cli/bin/Release/net10.0/parrot" "$model" "$rounds" "$prompt" "$decode" "$threads" $vision
fi
/usr/bin/python3 bench/peers/decoder_pairs.py "$PWD/src/Parrot.Cli/bin/Release/net10.0/parrot" "$layers" "$rounds" "$decode" "$threads" "$dtype" "$prefill" $baseline
