"""Joins `parrot bench ops --json` rounds with numpy_ops.py rounds and prints throughput ratios per op.

Each side's time per op is the best of its per-round medians: on a shared, noisy machine the least
disturbed round is the most faithful, and both engines get the same treatment.
"""
import json
import sys


def best(files):
    out = {}
    for path in files:
        with open(path) as f:
            for r in json.load(f)["results"]:
                if r["op"] not in out or r["ms"] < out[r["op"]]["ms"]:
                    out[r["op"]] = r
    return out


def main():
    ours_files = [p for p in sys.argv[1:] if "parrot" in p]
    peer_files = [p for p in sys.argv[1:] if "numpy" in p]
    ours, peer = best(ours_files), best(peer_files)
    print(f"{'op':<18} {'shape':<13} {'parrot ms':>10} {'numpy ms':>10} {'parrot GB/s':>12} {'numpy GB/s':>11} {'ratio':>7}")
    worst = None
    for op, o in ours.items():
        p = peer.get(op)
        if p is None:
            continue
        ratio = p["ms"] / o["ms"]
        worst = ratio if worst is None else min(worst, ratio)
        note = "  (numpy: tanh form, it has no erf)" if op == "gelu-erf" else ""
        print(f"{op:<18} {o['shape']:<13} {o['ms']:>10.3f} {p['ms']:>10.3f} {o['gbps']:>12.2f} {p['gbps']:>11.2f} {ratio:>6.2f}x{note}")
    if worst is not None:
        print(f"ratio = parrot throughput / numpy throughput (target >= 0.8); lowest: {worst:.2f}x")


if __name__ == "__main__":
    main()
