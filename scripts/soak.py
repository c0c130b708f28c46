#!/usr/bin/env python3
"""soak.py - the body of scripts/soak.sh (see there for usage).

Starts `sparrow serve` on a free loopback port, computes reference greedy
texts, then runs client threads (each its own client id) issuing a mix of
valid greedy completions (whole and streamed, checked against the reference),
sampled chat requests, invalid requests (must get a 4xx JSON error) and
abandoned requests (hang up before the headers end, mid-body, mid-stream).
Every 5 s it samples the daemon's RSS, open fds and threads into a CSV.
Fails if an accepted valid request is lost or wrong, if the daemon does not
exit 0 on SIGTERM, or if RSS / fds / threads in the last third of the run
exceed the first third's maximum by more than a margin."""
import argparse
import collections
import csv
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import requests

PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to the park", "One day, a big bird",
           "Sam had a red ball", "The sun was hot and"]
MAX_TOKENS = 48
MARGIN = {"rss_kib": 16 * 1024, "fds": 16, "threads": 2}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_sample(pid):
    rss = threads = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid)), threads


class Soak:
    def __init__(self, args):
        self.args = args
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.outcomes = collections.Counter()
        self.problems = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.samples = []

    def count(self, what, problem=None):
        with self.lock:
            self.outcomes[what] += 1
            if problem and len(self.problems) < 20:
                self.problems.append(problem)

    def body(self, prompt, **kw):
        return dict(dict(prompt=prompt, max_tokens=MAX_TOKENS, temperature=0), **kw)

    # --- request kinds ---------------------------------------------------------------------

    def valid(self, rng, client):
        i = rng.randrange(len(PROMPTS))
        try:
            r = requests.post(self.base + "/v1/completions", json=self.body(PROMPTS[i], user=client), timeout=120)
        except requests.RequestException as e:
            return self.count("valid lost", "valid: %s" % e)
        if r.status_code in (429, 503):
            return self.count("valid rejected (429/503)")
        if r.status_code != 200:
            return self.count("valid lost", "valid: HTTP %d %s" % (r.status_code, r.text[:200]))
        text = r.json()["choices"][0]["text"]
        if text != self.ref[i]:
            return self.count("valid wrong", "valid %d: %r != %r" % (i, text, self.ref[i]))
        self.count("valid ok")

    def streamed(self, rng, client):
        i = rng.randrange(len(PROMPTS))
        try:
            r = requests.post(self.base + "/v1/completions", json=self.body(PROMPTS[i], user=client, stream=True),
                              timeout=120, stream=True)
            if r.status_code in (429, 503):
                return self.count("stream rejected (429/503)")
            if r.status_code != 200:
                return self.count("stream lost", "stream: HTTP %d" % r.status_code)
            text, done = "", False
            for line in r.iter_lines():
                if not line.startswith(b"data: "):
                    continue
                if line == b"data: [DONE]":
                    done = True
                    break
                ev = json.loads(line[6:])
                if "error" in ev:
                    return self.count("stream lost", "stream error event: %s" % ev)
                text += ev["choices"][0]["text"]
        except requests.RequestException as e:
            return self.count("stream lost", "stream: %s" % e)
        if not done:
            return self.count("stream lost", "stream without [DONE]")
        if text != self.ref[i]:
            return self.count("stream wrong", "stream %d: %r != %r" % (i, text, self.ref[i]))
        self.count("stream ok")

    def chat(self, rng, client):
        body = {"messages": [{"role": "user", "content": rng.choice(PROMPTS)}], "max_tokens": 24,
                "temperature": 0.8, "user": client}
        try:
            r = requests.post(self.base + "/v1/chat/completions", json=body, timeout=120)
        except requests.RequestException as e:
            return self.count("chat lost", "chat: %s" % e)
        if r.status_code in (429, 503):
            return self.count("chat rejected (429/503)")
        if r.status_code != 200 or r.json()["choices"][0]["finish_reason"] not in ("stop", "length"):
            return self.count("chat lost", "chat: HTTP %d %s" % (r.status_code, r.text[:200]))
        self.count("chat ok")

    def invalid(self, rng, client):
        kind = rng.randrange(5)
        if kind == 0:
            data, hdr = b'{"prompt": "x", "max_tokens": ', {"Content-Type": "application/json"}
        elif kind == 1:
            data, hdr = json.dumps({"prompt": "x", "max_tokens": -3}).encode(), {}
        elif kind == 2:
            data, hdr = json.dumps({"prompt": "x", "model": "gpt-9"}).encode(), {}
        elif kind == 3:
            data, hdr = json.dumps({"prompt": "word " * 2000}).encode(), {}
        else:
            data, hdr = json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(), {}
        path = "/v1/chat/completions" if kind == 4 else "/v1/completions"
        try:
            r = requests.post(self.base + path, data=data, headers=hdr, timeout=60)
        except requests.RequestException as e:
            return self.count("invalid lost", "invalid: %s" % e)
        try:
            ok = 400 <= r.status_code < 500 and r.json()["error"]["message"]
        except ValueError:
            ok = False
        self.count("invalid answered 4xx" if ok else "invalid wrong",
                   None if ok else "invalid %d: HTTP %d %s" % (kind, r.status_code, r.text[:200]))

    def abandoned(self, rng, client):
        stream = rng.random() < 0.5
        body = json.dumps(self.body(rng.choice(PROMPTS), user=client, stream=stream, max_tokens=200,
                                    ignore_eos=True)).encode()
        req = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        head = req.index(b"\r\n\r\n") + 4
        where = rng.choice(["headers", "body", "running"])
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            if where == "headers":
                s.sendall(req[:rng.randrange(1, head)])
            elif where == "body":
                s.sendall(req[:head + rng.randrange(len(body))])
            else:
                s.sendall(req)
                if stream:
                    s.recv(4096)
                else:
                    time.sleep(rng.random() * 0.3)
            s.close()
        except OSError as e:
            return self.count("abandoned lost", "abandoned: %s" % e)
        self.count("abandoned (%s)" % where)

    # --- run ---------------------------------------------------------------------------------

    def client(self, n):
        rng = random.Random(n)
        client = "soak%d" % n
        kinds = [(0.45, self.valid), (0.15, self.streamed), (0.10, self.chat), (0.15, self.invalid),
                 (0.15, self.abandoned)]
        while not self.stop.is_set():
            x, acc = rng.random(), 0.0
            for p, fn in kinds:
                acc += p
                if x < acc:
                    try:
                        fn(rng, client)
                    except Exception as e:  # noqa: BLE001 - a harness bug must fail the soak, not hide
                        self.count("client error", "%s: %r" % (fn.__name__, e))
                    break
            time.sleep(rng.random() * 0.05)

    def sampler(self, pid, writer, f):
        t0 = time.monotonic()
        while True:
            rss, fds, threads = proc_sample(pid)
            with self.lock:
                done = sum(self.outcomes.values())
            row = (round(time.monotonic() - t0, 1), rss, fds, threads, done)
            self.samples.append(row)
            writer.writerow(row)
            f.flush()
            if self.stop.wait(5):
                return

    def run(self):
        a = self.args
        os.makedirs(a.out, exist_ok=True)
        log = open(os.path.join(a.out, "daemon.log"), "wb")
        cmd = [a.bin, "serve", "-m", a.model, "--host", "127.0.0.1", "--port", str(self.port), "-t", "1",
               "--max-running", "4", "--max-queue", "64", "--max-queue-per-client", "16", "--log-level", "warn"]
        d = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            return self.drive(d)
        finally:
            if d.poll() is None:
                d.kill()
                d.wait()
            log.close()

    def drive(self, d):
        a = self.args
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if d.poll() is not None or time.monotonic() > deadline:
                print("soak: daemon did not start")
                return 1
            time.sleep(0.2)
        self.ref = []
        for p in PROMPTS:
            r = requests.post(self.base + "/v1/completions", json=self.body(p), timeout=60)
            r.raise_for_status()
            self.ref.append(r.json()["choices"][0]["text"])
        csv_path = os.path.join(a.out, "samples.csv")
        f = open(csv_path, "w", newline="")
        w = csv.writer(f)
        w.writerow(("t_s", "rss_kib", "fds", "threads", "requests"))
        sampler = threading.Thread(target=self.sampler, args=(d.pid, w, f))
        sampler.start()
        clients = [threading.Thread(target=self.client, args=(i,)) for i in range(a.clients)]
        for t in clients:
            t.start()
        time.sleep(a.minutes * 60)
        self.stop.set()
        for t in clients:
            t.join(180)
        sampler.join(30)
        time.sleep(1)
        rss, fds, threads = proc_sample(d.pid)
        w.writerow(("end", rss, fds, threads, sum(self.outcomes.values())))
        f.close()
        m = requests.get(self.base + "/metrics", timeout=10).text
        kv_used = [l for l in m.splitlines() if l.startswith("sparrow_kv_blocks_used")]
        d.send_signal(signal.SIGTERM)
        try:
            code = d.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        return self.report(code, kv_used, (rss, fds, threads), csv_path)

    def report(self, code, kv_used, end, csv_path):
        s = self.samples
        third = max(1, len(s) // 3)
        first, last = s[:third], s[-third:]
        fails = []
        print("\n## soak report: %s, %.1f min, %d clients" % (os.path.basename(self.args.model), self.args.minutes,
                                                              self.args.clients))
        print("\n| outcome | requests |\n|---|---|")
        for k in sorted(self.outcomes):
            print("| %s | %d |" % (k, self.outcomes[k]))
        print("| **total** | %d |" % sum(self.outcomes.values()))
        print("\n| resource | start | end | max | first-third max | last-third max |\n|---|---|---|---|---|---|")
        for col, name in ((1, "rss_kib"), (2, "fds"), (3, "threads")):
            fmax, lmax = max(r[col] for r in first), max(r[col] for r in last)
            print("| %s | %d | %d | %d | %d | %d |" % (name, s[0][col], end[col - 1], max(r[col] for r in s), fmax, lmax))
            if lmax > fmax + MARGIN[name]:
                fails.append("%s grew: last third max %d > first third max %d + %d" % (name, lmax, fmax, MARGIN[name]))
        print("\nsamples: %d (every 5 s) in %s; %s; daemon exit code %s" % (len(s), csv_path, "; ".join(kv_used), code))
        for k, v in self.outcomes.items():
            if ("lost" in k or "wrong" in k or "error" in k) and v:
                fails.append("%d %s" % (v, k))
        if code != 0:
            fails.append("daemon exit code %s" % code)
        if not kv_used or not kv_used[0].endswith(" 0"):
            fails.append("KV blocks still used at the end: %s" % kv_used)
        for p in self.problems:
            print("  problem: " + p)
        print("\nsoak: %s" % ("PASS" if not fails else "FAIL: " + "; ".join(fails)))
        return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--model", default=None)
    ap.add_argument("--bin", default="./sparrow")
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--out", default="build/soak")
    a = ap.parse_args()
    shared = os.environ.get("SPARROW_SHARED") or os.environ.get("SHARED") or "../shared"
    if a.model is None:
        a.model = os.path.join(shared, "models", "stories260K-f32.gguf")
    elif "/" not in a.model:
        a.model = os.path.join(shared, "models", a.model if a.model.endswith(".gguf") else a.model + ".gguf")
    return Soak(a).run()


if __name__ == "__main__":
    sys.exit(main())
