#!/usr/bin/env bash
# Decode of the Qwen2-0.5B-shaped decoder (float32, 2 threads, random weights) against its memory-bandwidth
# bounds: weight bytes / copy bandwidth (issue #4's target: within 1.3x) and weight bytes / read bandwidth (for
# information). With --baseline PATH (another build's parrot binary or parrot.dll) both are measured in the same
# rounds, alternating, and the median per-round ratio is printed.
#   bench/decode-bound.sh [--rounds R] [--decode N] [--baseline PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=7; decode=32; threads=2; baseline=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;; --decode) decode="$2"; shift 2 ;; --baseline) baseline="$2"; shift 2 ;;
    *) echo "decode-bound.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
dotnet build src/Parrot.Cli -c Release -v quiet -nologo >&2
exec /usr/bin/python3 bench/peers/decode_bound_pairs.py "$PWD/src/Parrot.Cli/bin/Release/net10.0/parrot" "$rounds" "$decode" "$threads" $baseline
