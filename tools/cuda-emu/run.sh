#!/usr/bin/env bash
# Runs the kernels of native/*.cu on the CPU, compiled by g++ with a small CUDA emulation, against plain C++
# references: a check of the kernels' logic (indexing, dtypes, bf16 rounding, reductions, online softmax)
# that needs no GPU. emu_serial.h runs sync-free kernels thread by thread; emu_threads.h runs each block's
# threads as OS threads with real barriers, and warp shuffles through shared slots (both build on emu_common.h);
# emu_mma.h adds the warp-collective mma.sync (m16n8k16 bf16) and ldmatrix of attention_mma.cu, checked
# against the PTX ISA's fragment tables by mma_check_test.cpp.
# By hand, not in CI.
# The f16 conversions of prelude.cuh (inline PTX) are not emulated (random.cu's double → f16 is integer code, and is;
# scatter_test swaps in g++'s _Float16 conversions). Usage: tools/cuda-emu/run.sh
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
g++ -std=c++20 -O1 -w -I ../../native -o "$out/elementwise" elementwise_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/rows" rows_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/flash" flash_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/mma_check" mma_check_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/flash_mma" flash_mma_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/gemv" gemv_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/decode" decode_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/decode_mma" decode_mma_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/decode_mma_rope" decode_mma_rope_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/norm_gemv" norm_gemv_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/topk" topk_test.cpp
g++ -std=c++20 -O1 -w -I ../../native -o "$out/random" random_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/grad_norm" grad_norm_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/matmul_int" matmul_int_test.cpp
g++ -std=c++20 -O1 -w -pthread -I ../../native -o "$out/scatter" scatter_test.cpp
echo -n "elementwise, rope, indexing, adamw: "; "$out/elementwise"
echo -n "reduce, argmax/argmin (NaN-lowest too; split = one block), softmax, norms, cross-entropy, attention: "; "$out/rows"
echo "flash attention forward (tiled):"; "$out/flash"
echo -n "mma.sync / ldmatrix emulation against the PTX ISA tables: "; "$out/mma_check"
echo "flash attention forward and backward (tensor cores, emulated mma):"; "$out/flash_mma"
echo "the same with every cp.async done when issued:"; "$out/flash_mma" early | tail -1
echo -n "gemv (decode matrix-vector products): "; "$out/gemv"
# quick: the decode widths with N cut short (the full q/k/v and gate/up N, ~30 min: "$out/norm_gemv" without an argument).
echo -n "add_rms_norm fused into gemv / swiglu_gemv (decode): "; "$out/norm_gemv" quick
echo "decode attention (key ranges merged in one launch by the last ticket, blocks in shuffled orders; fixed cases and a seeded sweep of 24, against float64; device positions against the host-position kernels at the eager splits; rope + cache append + attention in one launch against the two launches):"; "$out/decode" 24 | tail -5
# quick: without the 3000-key case ("$out/decode_mma" alone runs it).
echo "decode attention on tensor cores (long caches, PARROT_DECODE_MMA; against float64 in bf16 ulps and against the FMA decode kernel; device positions against the host-position kernel per row, bits):"; "$out/decode_mma" quick | tail -5
echo "the same with every cp.async done when issued (a stage refilled while a warp reads it, or read before its copy, shows):"; "$out/decode_mma" quick early | tail -1
# quick: without the 3000- and 2100-key cases ("$out/decode_mma_rope" alone runs them).
echo "rope + cache append + attention in one launch on tensor cores (against rope_kv_append(_at) + the tensor-core kernel, bits: output and caches, blocks in 3 orders, and with every cp.async done at issue; against float64):"; "$out/decode_mma_rope" quick | tail -3
echo -n "random (uniform/normal, every dtype, indices past 2^32, against the CPU formula; RandomAt: the seed read from a device counter, the counter step): "; "$out/random"
# quick: the whole sweep (~4x longer: every dtype's k above 1024, more vocabulary rows, k = n = 152,064) is "$out/topk" alone.
echo -n "top-k (a warp per short row; radix select, gather, bitonic sort per long row) against a stable sort, every dtype: "; "$out/topk" quick
echo -n "multi-tensor gradient norm and clipping (against the per-tensor path, emulated; > 64 tensors, non-finite norms): "; "$out/grad_norm"
echo -n "integer matmul (int32/int64, wrapping, batched, broadcast, strided) against a naive wrapping product: "; "$out/matmul_int"
echo -n "deterministic scatter-add (walk and counting sort, every dtype, hot keys, blocks in 3 orders) = the CPU's loop bit for bit; multi-block scan; index_copy = the CPU's IndexCopy (out-of-range ids skipped): "; "$out/scatter"
rm -rf "$out"
