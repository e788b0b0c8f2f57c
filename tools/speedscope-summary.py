#!/usr/bin/env python3
# Sums a dotnet-trace Speedscope export (evented profiles) by frame under a root frame: inclusive and self (leaf
# managed frame) shares of the sampled time, first-use frames left out. Usage: speedscope-summary.py FILE ROOT N_INCL N_SELF
# (bench/cuda-on-device-short.sh writes the trace; convert it with `dotnet-trace convert --format Speedscope`).
import json, sys, collections
d = json.load(open(sys.argv[1]))
frames = [f['name'] for f in d['shared']['frames']]
root = sys.argv[2]
skip = ['CreatePlan', 'EnsureHandles', 'KernelCache', 'LoadLibrary', 'cublasLtCreate', 'Function(', 'BuildTables', 'NvrtcCompiler']
selfc = collections.Counter(); incl = collections.Counter(); total = 0
def short(n): return n.split('!')[-1].split('(')[0]
for p in d['profiles']:
    stack = []; last = None
    for e in p['events']:
        t = e['at']
        if last is not None and stack:
            names = [frames[i] for i in stack]
            ks = [i for i, n in enumerate(names) if root in n]
            if ks and not any(s in n for n in names for s in skip):
                k = ks[-1]; w = t - last; total += w
                sh = [short(x) for x in names[k:]]
                leaf = sh[-1]
                if leaf in ('CPU_TIME', 'UNMANAGED_CODE_TIME') and len(sh) > 1: leaf = sh[-2] + ' [' + leaf + ']'
                selfc[leaf] += w
                for n in set(sh): incl[n] += w
        last = t
        if e['type'] == 'O': stack.append(e['frame'])
        elif stack: stack.pop()
print("total ms", total)
print("--- inclusive")
for n, w in incl.most_common(int(sys.argv[3])): print(f"{100*w/total:6.1f}% {n[:140]}")
print("--- self (leaf managed frame)")
for n, w in selfc.most_common(int(sys.argv[4])): print(f"{100*w/total:6.1f}% {n[:140]}")
