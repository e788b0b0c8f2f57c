#!/usr/bin/env bash
# Builds the recording stand-in for libcudnn.so.9 (fake_cudnn.cpp) and runs CudnnFakeLibraryTests against it: the cuDNN
# SDPA code's P/Invoke calls, attribute types, finalize order, plan/heuristics protocol, variant packs and descriptor
# lifetimes, on a machine with neither cuDNN nor a GPU. Usage: bash tools/cudnn-fake/run.sh (from the repository root,
# after `dotnet build tests/Parrot.Tensors.Tests -c Release`).
set -euo pipefail
dir=$(mktemp -d /tmp/cudnn-fake.XXXXXX)
g++ -std=c++17 -O1 -Wall -Wextra -Werror -shared -fPIC -o "$dir/libcudnn.so.9" "$(dirname "$0")/fake_cudnn.cpp"
PARROT_CUDA_PATH="$dir" PARROT_CUDNN_FAKE=1 nice -n 19 dotnet test tests/Parrot.Tensors.Tests -c Release --no-build \
  --filter "FullyQualifiedName~CudnnFakeLibraryTests" "$@"
rm -rf "$dir"
