#!/usr/bin/env python3
"""test_sparse_server.py - sparse models served over HTTP.

For every sparse format (2:4, 4:8, 2:8, V:N:M, 1x4 and 1x16 blocks) and
kept-value precision (f16 and a quantized one): `sparrow sparsify` a model,
`sparrow quantize --type f32` it into its dense-with-zeros expansion, start
`sparrow serve` on the sparse file, ask /v1/completions for 32 greedy tokens,
and compare with `sparrow run --temp 0` on the expansion: the same text and
the same number of tokens (the values are identical, only the kernels
differ). stories260K's matrices are 64 and 172 wide, so 2:8 and V:N:M with
M = 8 (super-blocks of 128 columns) prune nothing there: those run on
synth15M (288 and 768 wide), where they prune the 768-wide ffn_down.

    SPARROW_BIN     binary under test (default ./sparrow; BIN when unset)
    SPARROW_SHARED  data dir holding models/ (default ../shared)

Prints `ok NAME` / `FAIL NAME: reason`, then `N passed, M failed`.
"""
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import requests

from itest import check, free_port, results

BIN = os.path.abspath(os.environ.get("SPARROW_BIN") or os.environ.get("BIN") or "./sparrow")
SHARED = os.path.abspath(os.environ.get("SPARROW_SHARED") or os.environ.get("SHARED") or "../shared")
MODELS = os.path.join(SHARED, "models")
STORIES = os.path.join(MODELS, "stories260K-f32.gguf")
SYNTH = os.path.join(MODELS, "synth15M-f16.gguf")
PROMPT = "Once upon a time"
N_TOKENS = 32
TMP = tempfile.mkdtemp(prefix="sparrow-sparse-it-")
atexit.register(shutil.rmtree, TMP, True)


def _is_sanitized(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


SLOW = 4 if _is_sanitized(BIN) else 1

# (name, model, sparsify flags, tensors pruned)
CASES = [
    ("2:4-f16", STORIES, ["--format", "2:4"], 30),
    ("2:4-q8", STORIES, ["--format", "2:4", "--quant", "q8"], 30),
    ("4:8-f16", STORIES, ["--format", "4:8"], 30),
    ("4:8-q4", STORIES, ["--format", "4:8", "--quant", "q4"], 30),
    ("16:2:4-f16", STORIES, ["--format", "16:2:4"], 30),
    ("1x4-f16", STORIES, ["--format", "block", "--block", "1x4", "--sparsity", "0.5"], 30),
    ("1x4-q8", STORIES, ["--format", "block", "--block", "1x4", "--sparsity", "0.5", "--quant", "q8"], 30),
    ("1x16-f16", STORIES, ["--format", "block", "--block", "1x16", "--sparsity", "50%"], 30),
    ("1x16-q4", STORIES, ["--format", "1x16", "--sparsity", "50%", "--quant", "q4"], 30),
    ("2:8-f16", SYNTH, ["--format", "2:8"], 6),
    ("2:8-q8", SYNTH, ["--format", "2:8", "--quant", "q8"], 6),
    ("64:2:8-f16", SYNTH, ["--format", "64:2:8"], 6),
    ("8:2:6-q4", SYNTH, ["--format", "8:2:6", "--quant", "q4"], 42),
    ("1x16-75%-f16", SYNTH, ["--format", "1x16", "--sparsity", "0.75"], 6),
]


def run(cmd, timeout=300):
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout * SLOW)
    assert p.returncode == 0, "%s exited %d: %s" % (" ".join(cmd[:2]), p.returncode, p.stderr.decode()[-400:])
    return p.stdout.decode(), p.stderr.decode()


class Daemon:
    def __init__(self, model):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SPARROW_") and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                                                              "LISTEN_FDS", "LISTEN_PID")}
        self.log_path = os.path.join(TMP, "serve.log")
        for attempt in range(3):
            self.port = free_port()
            self.log = open(self.log_path, "wb")
            self.proc = subprocess.Popen([BIN, "serve", "-m", model, "--host", "127.0.0.1", "--port", str(self.port),
                                          "--threads", "2"], stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=self.log, env=env)
            if self._wait_ready():
                return
            self.stop()
            log = open(self.log_path, errors="replace").read()
            if "cannot listen" not in log or attempt == 2:
                raise AssertionError("daemon did not become ready: " + log[-600:])

    def _wait_ready(self):
        deadline = time.monotonic() + 30 * SLOW
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if requests.get("http://127.0.0.1:%d/health" % self.port, timeout=2).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.1)
        return False

    def complete(self, prompt, n):
        r = requests.post("http://127.0.0.1:%d/v1/completions" % self.port,
                          json={"prompt": prompt, "max_tokens": n, "temperature": 0}, timeout=120 * SLOW)
        assert r.status_code == 200, "HTTP %d: %s" % (r.status_code, r.text[:300])
        return r.json()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def test_case(name, model, flags, n_pruned):
    sparse = os.path.join(TMP, "sparse.gguf")
    dense = os.path.join(TMP, "dense.gguf")
    _, err = run([BIN, "sparsify", "-m", model, "-o", sparse] + flags)
    assert "%d tensors pruned" % n_pruned in err, "sparsify report: " + err.strip()[-300:]
    run([BIN, "quantize", "-m", sparse, "-o", dense, "--type", "f32"])
    out, err = run([BIN, "run", "-m", dense, "-p", PROMPT, "-n", str(N_TOKENS), "--temp", "0", "--no-echo"])
    want = out[:-1] if out.endswith("\n") else out
    d = Daemon(sparse)
    try:
        js = d.complete(PROMPT, N_TOKENS)
    finally:
        d.stop()
    got = js["choices"][0]["text"]
    assert got == want, "server on the sparse model %r != run on the expansion %r" % (got, want)
    assert len(want) > 20, "too little text generated: %r" % want
    ntok = js.get("usage", {}).get("completion_tokens")
    m = [ln for ln in err.splitlines() if "generated" in ln]
    if m and ntok is not None:
        gen = int(m[-1].split("generated ")[1].split(" ")[0])
        assert ntok == gen, "server generated %d tokens, run %d" % (ntok, gen)
    os.remove(sparse)
    os.remove(dense)


def main():
    for p in (BIN, STORIES, SYNTH):
        if not os.path.exists(p):
            print("FAIL setup: %s missing" % p)
            print("0 passed, 1 failed")
            return 1
    t0 = time.monotonic()
    for name, model, flags, n in CASES:
        check("sparse_serve_" + name, lambda m=model, f=flags, n=n, nm=name: test_case(nm, m, f, n))
    passed = sum(1 for _, e in results if e is None)
    failed = len(results) - passed
    print("  (%.1fs)" % (time.monotonic() - t0), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
