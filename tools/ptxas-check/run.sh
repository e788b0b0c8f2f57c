#!/usr/bin/env bash
# Assembles every native/*.cu for sm_80 and sm_90 with ptxas, without a GPU: NVRTC (libnvrtc11.2, as the CI's
# CudaKernelCompileTests) writes PTX, ptxas turns it into machine code. NVRTC passes inline PTX (mma.sync, ldmatrix,
# cp.async, cvt) through unchecked; ptxas is what rejects a malformed one, so this is the check for them short of a
# GPU. Prints each kernel's registers, shared memory and spills. ptxas comes from Debian's nvidia-cuda-toolkit .deb
# (non-free, ~84 MB), unpacked into a cache folder, not installed (its dependencies are not needed for ptxas).
# By hand, not in CI. Usage: tools/ptxas-check/run.sh [file.cu ...]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="${PTXAS_CHECK_CACHE:-$HOME/.cache/parrot/ptxas-check}"
ptxas="$cache/root/usr/bin/ptxas"
if [ ! -x "$ptxas" ]; then
  mkdir -p "$cache" && (cd "$cache" && apt-get download nvidia-cuda-toolkit >/dev/null && dpkg -x nvidia-cuda-toolkit_*.deb root)
fi
ldconfig -p | grep 'libnvrtc\.so\.11\.2' >/dev/null || { echo "libnvrtc11.2 is not installed (apt-get install libnvrtc11.2, Debian contrib/non-free)"; exit 1; }
files=("$@"); [ ${#files[@]} -eq 0 ] && files=("$root"/native/*.cu)
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
status=0
for f in "${files[@]}"; do
  for arch in 80 90; do
    name=$(basename "$f" .cu)
    if ! python3 "$root/tools/ptxas-check/nvrtc_ptx.py" "$f" "compute_$arch" "$out/$name.ptx"; then status=1; continue; fi
    if "$ptxas" -arch="sm_$arch" -v "$out/$name.ptx" -o "$out/$name.cubin" > "$out/log" 2>&1; then
      echo "$name sm_$arch: ok"
      # one line per kernel: registers, shared memory, spills
      awk "/Compiling entry function/ { split(\$0, q, \"'\"); k = q[2] }
           /spill stores/ { sp = \$5 \" B spilled, \" \$9 \" B reloaded\" }
           /Used [0-9]+ registers/ { sub(/.*Used /, \"\"); printf \"  %-34s %s; %s\\n\", k, \$0, sp }" "$out/log"
    else
      echo "$name sm_$arch: FAILED"; cat "$out/log"; status=1
    fi
  done
done
exit $status
