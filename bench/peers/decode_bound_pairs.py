"""Driver of bench/decode-bound.sh: per-token decode of the Qwen2-0.5B-shaped decoder (`parrot bench decoder
--serve`) against its memory-bandwidth bounds, with an optional baseline build measured in the same rounds.

Each round measures the copy and read bandwidth once (in the first engine), then asks every engine for the same
decode run (prompt 128, N steps; the median step is its time) back to back, the order alternating, so that the
numbers of a round are taken seconds apart on this shared machine. Prints the medians over the rounds, the ratio
of each engine's decode time to the copy-bandwidth bound (the target of issue #4) and to the read-bandwidth bound,
the median per-round ratio baseline / new, and the 1-minute load average.

Usage: decode_bound_pairs.py PARROT_BINARY ROUNDS DECODE_STEPS THREADS [BASELINE_PARROT_BINARY]
"""
import os
import statistics
import sys


from serve_engine import Engine


def main():
    parrot, rounds, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    baseline = sys.argv[5] if len(sys.argv) > 5 else None
    argv = ["bench", "decoder", "--serve", "--layers", "24", "--threads", str(threads)]
    engines = [Engine("new", [parrot] + argv)]
    if baseline:
        engines.append(Engine("baseline", [baseline] + argv))
    weight_bytes = engines[0].info["weight_bytes"]
    for e in engines:
        e.ask("decode 128 2")  # warm-up: compile the decode path
    med = statistics.median
    copy, read, loads = [], [], []
    times = {e.name: [] for e in engines}
    cpu = {e.name: [] for e in engines}
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        bw = engines[0].ask("bandwidth")
        copy.append(bw["gbs"])
        read.append(bw["read_gbs"])
        for e in (engines if r % 2 == 0 else engines[::-1]):
            a = e.ask(f"decode 128 {steps}")
            times[e.name].append(med(a["ms"]))
            cpu[e.name].append(a["cpu_ms"] / len(a["ms"]))
        print(f"round {r + 1}/{rounds}: load {loads[-1]:.1f}, copy {copy[-1]:.1f} GB/s, read {read[-1]:.1f} GB/s, "
              + ", ".join(f"{n} {times[n][-1]:.1f} ms/token" for n in times), file=sys.stderr, flush=True)
    for e in engines:
        e.close()
    copy_bound = weight_bytes / (med(copy) * 1e6)
    read_bound = weight_bytes / (med(read) * 1e6)
    print(f"Qwen2-0.5B shape (24 layers, float32, {threads} threads), decode after 128 tokens, median of {steps} steps per"
          f" round; {rounds} rounds, 1-min load average {min(loads):.1f}..{max(loads):.1f} (median {med(loads):.1f})")
    print(f"weights read per token {weight_bytes / 1e9:.3f} GB")
    print(f"copy bandwidth {med(copy):.1f} GB/s (read + written; rounds {min(copy):.1f}..{max(copy):.1f}): bound {copy_bound:.1f} ms/token  <- target: decode within 1.3x")
    print(f"read bandwidth {med(read):.1f} GB/s (2 GiB sum; rounds {min(read):.1f}..{max(read):.1f}): bound {read_bound:.1f} ms/token  (for information)")
    for n, t in times.items():
        m = med(t)
        print(f"{n:>9}: decode {m:.1f} ms/token (rounds {min(t):.1f}..{max(t):.1f}; cpu {med(cpu[n]):.1f} ms/token), "
              f"{m / copy_bound:.2f}x the copy bound, {m / read_bound:.2f}x the read bound, weights at {weight_bytes / (m * 1e6):.1f} GB/s")
    if baseline:
        ratios = [b / a for a, b in zip(times["new"], times["baseline"])]
        print(f"baseline / new, median of the per-round ratios: {med(ratios):.3f} (rounds {min(ratios):.3f}..{max(ratios):.3f})")


if __name__ == "__main__":
    main()
