"""A benchmark engine that answers one JSON line per command on stdin (`parrot bench decoder --serve`,
torch_decoder.py --serve): shared by the paired drivers decoder_pairs.py and decode_bound_pairs.py."""
import json
import os
import subprocess
import sys


class Engine:
    def __init__(self, name, argv, env=None):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1)
        self.info = self.read()

    def _fail(self, why):
        raise SystemExit(f"{os.path.basename(sys.argv[0])}: {self.name}{why}")

    def read(self):
        line = self.proc.stdout.readline()
        if not line:
            self._fail(f" exited (code {self.proc.wait()})")
        return json.loads(line)

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.read()
        if "error" in answer:
            self._fail(f": {answer['error']}")
        return answer

    def close(self):
        try:
            self.ask("quit")
        finally:
            self.proc.wait()
