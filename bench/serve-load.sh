#!/usr/bin/env bash
# Load benchmark of `parrot serve` on loopback: a tiny generated Qwen2 (hidden 128, 4 layers, byte vocabulary),
# 1, 4, 8 and 16 concurrent streaming clients for 60 s each (bounded in time and in requests per client):
# errors, aggregate generated tokens/s (and its ratio to 1 client), p50/p99 time to first token and per-token
# latency, the server's resident memory at start and after each level. Prints a Markdown table.
#   bench/serve-load.sh [--seconds 60] [--clients 1,4,8,16] [--max-tokens 64] [--hidden 128] [--layers 4]
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build src/Parrot.Cli -c Release -v quiet -nologo >&2
dotnet build bench/ServeLoad -c Release -v quiet -nologo >&2
dotnet bench/ServeLoad/bin/Release/net10.0/ServeLoad.dll --parrot "$PWD/src/Parrot.Cli/bin/Release/net10.0/parrot.dll" "$@"
