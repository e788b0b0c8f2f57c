"""Driver of bench/decoder-vs-torch.sh: paired measurements of `parrot bench decoder --serve` and
bench/peers/torch_decoder.py --serve.

Both processes load the same Qwen2-0.5B-shaped model once and then answer one measurement per command. Each
round asks both for the same measurement back to back (who goes first alternates), so the two numbers of a pair
are taken seconds apart: on this shared 2-core machine the load changes from minute to minute, and whole-process
rounds minutes apart mostly compare the load. Reported per measurement: the median time of each engine and the
median of the per-pair ratios (PyTorch time / ours; > 1 means we are faster). A baseline build of ours can be
run as a third engine in the same pairs (--baseline), to show before/after under the same conditions.

Usage: decoder_pairs.py PARROT_BINARY LAYERS ROUNDS DECODE_STEPS THREADS DTYPE PREFILL [BASELINE_PARROT_BINARY]
(DTYPE f32 or bf16: the weights' dtype on both sides; PREFILL: the prompt lengths timed, comma-separated, or
"none")
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


from serve_engine import Engine


def main():
    parrot, layers, rounds, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    dtype = sys.argv[6]
    prefill = [int(t) for t in sys.argv[7].split(",") if t and sys.argv[7] != "none"]
    baseline = sys.argv[8] if len(sys.argv) > 8 else None
    torch_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    # torch.set_num_threads does not reach OpenBLAS's own thread pool.
    torch_env["OPENBLAS_NUM_THREADS"] = str(threads)
    ours_argv = ["--serve", "--layers", str(layers), "--threads", str(threads), "--dtype", dtype]
    engines = [Engine("parrot", [parrot, "bench", "decoder"] + ours_argv)]
    if baseline:
        engines.append(Engine("baseline", [baseline, "bench", "decoder"] + ours_argv))
    engines.append(Engine("pytorch", ["/usr/bin/python3", os.path.join(HERE, "torch_decoder.py"), "--serve", str(layers), str(threads), dtype], torch_env))
    weight_bytes = engines[0].info["weight_bytes"]

    tasks = [(f"prefill {t}", f"prefill {t}") for t in prefill] + [("decode", f"decode 128 {steps}")]
    last_tasks = [f"prefill_last {t}" for t in prefill]
    times = {e.name: {t: [] for t, _ in tasks} for e in engines}
    cpu = {e.name: {t: [] for t, _ in tasks} for e in engines}
    for e in engines[:-1]:
        for t in last_tasks:
            times[e.name][t] = []
    ratios = {e.name: {t: [] for t, _ in tasks} for e in engines[:-1]}
    bandwidth, loads = [], []

    # Warm-up: compile every path once.
    for e in engines:
        for _, cmd in tasks:
            e.ask(cmd.replace(f" {steps}", " 2"))
        if e.name != "pytorch":
            for t in last_tasks:
                e.ask(t)

    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        bandwidth.append(engines[0].ask("bandwidth")["gbs"])
        order = engines if r % 2 == 0 else engines[::-1]
        for name, cmd in tasks:
            got = {}
            for e in order:
                answer = e.ask(cmd)
                a = answer["ms"]
                got[e.name] = statistics.median(a) if isinstance(a, list) else a
                times[e.name][name].append(got[e.name])
                cpu[e.name][name].append(answer["cpu_ms"] / (len(a) if isinstance(a, list) else 1))
            for e in engines[:-1]:
                ratios[e.name][name].append(got["pytorch"] / got[e.name])
        for e in engines[:-1]:
            for t in last_tasks:
                times[e.name][t].append(e.ask(t)["ms"])
        print(f"round {r + 1}/{rounds} done (load {loads[-1]:.1f})", file=sys.stderr, flush=True)
    for e in engines:
        e.close()

    med = statistics.median
    bw = med(bandwidth)
    bound = weight_bytes / (bw * 1e6)
    names = [e.name for e in engines]
    print(f"Qwen2-0.5B shape, {layers} layers, {'float32' if dtype == 'f32' else 'bf16 weights'}, {threads} threads, torch {engines[-1].info['torch']};"
          f" {rounds} rounds of paired measurements, 1-min load average {min(loads):.1f}..{max(loads):.1f}")
    header = "".join(f"{n:>12}" for n in names)
    print(f"{'':26}{header}" + "".join(f"{'torch/' + n:>16}" for n in names[:-1]))
    for name, _ in tasks:
        unit = "ms/token" if name == "decode" else "ms"
        cells = "".join(f"{med(times[n][name]):10.1f}ms" for n in names)
        rcells = "".join(f"{med(ratios[n][name]):15.2f}x" for n in names[:-1])
        print(f"{name + (' (all logits)' if name != 'decode' else ' (' + unit + ')'):26}{cells}{rcells}")
        if name.startswith("prefill"):
            t = name.replace("prefill", "prefill_last")
            cells = "".join(f"{med(times[n][t]):10.1f}ms" for n in names[:-1]) + f"{'-':>12}"
            rcells = "".join(f"{med(times['pytorch'][name]) / med(times[n][t]):15.2f}x" for n in names[:-1])
            print(f"{name + ' (last logits)':26}{cells}{rcells}")
    print(f"decode bound: {weight_bytes / 1e9:.3f} GB of weights / {bw:.1f} GB/s copy bandwidth (read + written, median of"
          f" {rounds}) = {bound:.1f} ms/token; decode / bound: "
          + ", ".join(f"{n} {med(times[n]['decode']) / bound:.2f}x" for n in names))
    print("ratio = PyTorch time / ours, median over the pairs (> 1: we are faster); the last-logits rows compare with"
          " PyTorch's all-logits medians")
    print("process CPU time (all threads; includes any spin-waiting): "
          + "; ".join(f"{name}: " + ", ".join(f"{n} {med(cpu[n][name]):.1f}ms" for n in names) for name, _ in tasks))


if __name__ == "__main__":
    main()
