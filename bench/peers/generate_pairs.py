"""Driver of bench/decoder-vs-torch.sh --model DIR: paired measurements of greedy generation from one model directory
in `parrot bench decoder --model DIR --serve` and bench/peers/torch_generate.py --serve (same weights, same prompt and
pixels, KV cache, float32, THREADS threads). Each round asks both engines for the same generation back to back, the
one going first alternating, so the two numbers of a pair are taken seconds apart on this shared machine. Reported per
prompt kind (text; text + image for a Parrot model): the medians of time to first token and of ms per decoded token
(tokens/s = 1000 / ms), the median of the per-pair ratios (PyTorch time / ours; > 1 means we are faster), and whether
the two engines generated the same greedy tokens.

Usage: generate_pairs.py PARROT_BINARY MODEL_DIR ROUNDS PROMPT_TOKENS DECODE_STEPS THREADS [VISION_DIR]
"""
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decoder_pairs import HERE, Engine  # noqa: E402


def main():
    parrot, model, rounds, prompt, steps, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    vision = sys.argv[7:8]
    torch_env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    torch_env["OPENBLAS_NUM_THREADS"] = str(threads)
    ours = Engine("parrot", [parrot, "bench", "decoder", "--model", model, "--threads", str(threads), "--serve"] + (["--vision"] + vision if vision else []))
    peer = Engine("pytorch", ["/usr/bin/python3", os.path.join(HERE, "torch_generate.py"), "--serve", model, str(threads)] + vision, torch_env)
    engines = [ours, peer]
    kinds = ["generate"] + (["generate_image"] if ours.info.get("images") else [])
    ttft = {e.name: {k: [] for k in kinds} for e in engines}
    step = {e.name: {k: [] for k in kinds} for e in engines}
    cpu = {e.name: {k: [] for k in kinds} for e in engines}
    ttft_cpu = {e.name: {k: [] for k in kinds} for e in engines}
    ratio_ttft = {k: [] for k in kinds}
    ratio_step = {k: [] for k in kinds}
    same = {k: True for k in kinds}
    loads = []
    # Warm-up: 150 short runs per prompt kind. .NET's tiered JIT (quick JIT, then PGO-instrumented, then optimised
    # code) reaches steady speed only after ~100 generations in a fresh process (CPU ms of a 64-token prefill and
    # 4 decoded tokens: 230 for the first, ~15 for the next few, ~8 at 20-30, ~3 from ~100 on); a server or an
    # evaluation run is in that state after its first hundred requests.
    for e in engines:
        for _ in range(150):
            for k in kinds:
                e.ask(f"{k} {prompt} 4")
    for r in range(rounds):
        loads.append(os.getloadavg()[0])
        order = engines if r % 2 == 0 else engines[::-1]
        for k in kinds:
            got = {}
            for e in order:
                a = e.ask(f"{k} {prompt} {steps}")
                got[e.name] = a
                ttft[e.name][k].append(a["ttft_ms"])
                step[e.name][k].append(statistics.median(a["ms"]))
                cpu[e.name][k].append(a["cpu_ms"] / len(a["ms"]))
                ttft_cpu[e.name][k].append(a["ttft_cpu_ms"])
            ratio_ttft[k].append(got["pytorch"]["ttft_ms"] / got["parrot"]["ttft_ms"])
            ratio_step[k].append(statistics.median(got["pytorch"]["ms"]) / statistics.median(got["parrot"]["ms"]))
            same[k] = same[k] and got["pytorch"]["tokens"] == got["parrot"]["tokens"]
        print(f"round {r + 1}/{rounds} done (load {loads[-1]:.1f})", file=sys.stderr, flush=True)
    for e in engines:
        e.close()

    med = statistics.median
    print(f"{model}: {ours.info['kind']}, {ours.info['parameters']:,} parameters, float32, {threads} threads, torch {peer.info['torch']};"
          f" greedy with KV cache, {prompt}-token prompt, {steps} decoded tokens; {rounds} rounds of paired runs,"
          f" 1-min load average {min(loads):.1f}..{max(loads):.1f}")
    print("| prompt | TTFT ours | TTFT PyTorch | PyTorch/ours | decode ours | decode PyTorch | PyTorch/ours | same tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for k in kinds:
        label = f"{prompt} text tokens" + (" + image (96 px)" if k == "generate_image" else "")
        so, sp = med(step["parrot"][k]), med(step["pytorch"][k])
        print(f"| {label} | {med(ttft['parrot'][k]):.2f} ms | {med(ttft['pytorch'][k]):.2f} ms | {med(ratio_ttft[k]):.2f}x"
              f" | {so:.3f} ms ({1000 / so:.0f} tok/s) | {sp:.3f} ms ({1000 / sp:.0f} tok/s) | {med(ratio_step[k]):.2f}x | {'yes' if same[k] else 'NO'} |")
    print("ratios: median over the pairs of PyTorch time / ours (> 1: we are faster); decode = median ms per token of each run, then"
          " the median over runs; process CPU ms per decoded token (all threads, spin-waiting included): "
          + "; ".join(f"{k}: ours {med(cpu['parrot'][k]):.2f}, PyTorch {med(cpu['pytorch'][k]):.2f}" for k in kinds)
          + "; CPU ms to the first token: "
          + "; ".join(f"{k}: ours {med(ttft_cpu['parrot'][k]):.2f}, PyTorch {med(ttft_cpu['pytorch'][k]):.2f}" for k in kinds))


if __name__ == "__main__":
    main()
