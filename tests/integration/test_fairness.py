#!/usr/bin/env python3
"""test_fairness.py - fair queuing end to end: a flooding client must not
starve a light one under vtc and dlpm, and does under fcfs.

For each policy the daemon runs with --max-running 1, so the admission order
decides the completion order. Client "flood" submits FLOOD_N requests at once;
once at least MIN_QUEUED of them wait (per /metrics), client "trickle" sends 3
requests one after another. For each trickle request we count how many flood
requests completed before it (a global completion sequence in the client, not
wall-clock times):
  fcfs      the first trickle request completes after >= MIN_QUEUED floods
  vtc/dlpm  every trickle request completes after at most a few more floods
and /metrics shows service charged to trickle, and every flood request ends.

Python 3 standard library plus requests; no pytest. Environment:
  SPARROW_BIN     the binary (default ./sparrow)
  SPARROW_SHARED  the shared data dir (default ../shared)
Prints "ok NAME" / "FAIL NAME: reason" and finally "N passed, M failed".
"""
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import requests

from itest import check, free_port, results

BIN = os.environ.get("SPARROW_BIN", "./sparrow")
SHARED = os.environ.get("SPARROW_SHARED", "../shared")
MODEL = os.path.join(SHARED, "models", "stories260K-f32.gguf")

FLOOD_N = 40          # requests the flooding client submits at once (margin over MIN_QUEUED)
MIN_QUEUED = 20       # flood requests waiting before trickle starts
TRICKLE_N = 3
MAX_TOKENS = 256      # long enough that the flood backlog lasts ~1 s on stories260K with the fast kernels
DLPM_QUANTUM = 256    # the default, passed explicitly since the bound depends on it
# Flood completions allowed while one trickle request waits (it arrives, waits,
# completes). vtc: the trickle client is lifted to the least backlogged
# counter, so it goes next or after the running request and one tie: 3.
# dlpm: a returning client loses its credit (DRR), so it waits until the
# flood's deficit is spent and a refill comes; the flood may then still win
# by prefix while positive: the running request plus up to 2Q of flood
# service, one flood request costing >= 2 * MAX_TOKENS.
# The client counts completions as it sees them: on a loaded machine a flood
# response finished before the trickle was submitted can still be read after
# the trickle was sent, so one completion of observation slack is allowed.
OBSERVATION_SLACK = 1
FAIR_BOUND = {"vtc": 3 + OBSERVATION_SLACK, "dlpm": 1 + -(-2 * DLPM_QUANTUM // (2 * MAX_TOKENS)) + OBSERVATION_SLACK}
REQ_TIMEOUT = 120     # seconds per HTTP request
POLICIES = ("fcfs", "vtc", "dlpm")







class Daemon:
    def __init__(self, policy):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.log = tempfile.NamedTemporaryFile(prefix="sparrow-fair-%s-" % policy, suffix=".log", delete=False)
        args = [BIN, "serve", "-m", MODEL, "--port", str(self.port), "--scheduler-policy", policy,
                "--max-running", "1", "-c", "512", "-t", "1",
                "--max-queue-per-client", "200", "--dlpm-quantum", str(DLPM_QUANTUM), "--max-queue", "400", "--log-level", "warn"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited with %s: %s" % (self.proc.returncode, self.log_tail()))
            try:
                if requests.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("daemon not ready after %ds" % timeout)

    def log_tail(self, n=2000):
        try:
            with open(self.log.name, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        """SIGTERM, then SIGKILL; returns the exit code (None if killed)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                return None
        return self.proc.returncode


METRIC_RE = re.compile(r'^(\w+)(?:\{([^}]*)\})?\s+(\S+)$')


def metrics(base):
    """{(name, client or None): value} from /metrics."""
    text = requests.get(base + "/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = METRIC_RE.match(line.strip())
        if not m:
            continue
        client = None
        if m.group(2):
            cm = re.search(r'client="([^"]*)"', m.group(2))
            client = cm.group(1) if cm else m.group(2)
        try:
            out[(m.group(1), client)] = float(m.group(3))
        except ValueError:
            pass
    return out


def run_scenario(policy):
    """Returns a dict: flood results, trickle 'floods done before' counts, metrics."""
    d = Daemon(policy)
    try:
        d.wait_ready()
        lock = threading.Lock()
        state = {"flood_done": 0, "flood_ok": 0, "flood_err": [], "trickle": []}

        def complete(user, i, prompt):
            body = {"prompt": prompt, "max_tokens": MAX_TOKENS, "ignore_eos": True,
                    "temperature": 0, "user": user}
            r = requests.post(d.base + "/v1/completions", json=body, timeout=REQ_TIMEOUT)
            if r.status_code != 200:
                raise RuntimeError("%s #%d: HTTP %d %s" % (user, i, r.status_code, r.text[:200]))
            j = r.json()
            n = j["usage"]["completion_tokens"]
            if n != MAX_TOKENS:
                raise RuntimeError("%s #%d: %d completion tokens, want %d" % (user, i, n, MAX_TOKENS))

        def flood(i):
            try:
                complete("flood", i, "Once upon a time, flood story number %d went on" % i)
                with lock:
                    state["flood_done"] += 1
                    state["flood_ok"] += 1
            except Exception as e:  # noqa: BLE001
                with lock:
                    state["flood_done"] += 1
                    state["flood_err"].append(str(e))

        threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in range(FLOOD_N)]
        for t in threads:
            t.start()

        # wait until enough flood requests are queued
        deadline = time.monotonic() + 30
        queued = 0
        while time.monotonic() < deadline:
            queued = metrics(d.base).get(("sparrow_client_waiting_requests", "flood"), 0)
            if queued >= MIN_QUEUED:
                break
            time.sleep(0.002)
        if queued < MIN_QUEUED:
            raise AssertionError("only %d flood requests ever seen waiting" % queued)

        for i in range(TRICKLE_N):
            with lock:
                before = state["flood_done"]
            complete("trickle", i, "Lily had a small red ball %d" % i)
            with lock:
                state["trickle"].append((before, state["flood_done"]))

        for t in threads:
            t.join(REQ_TIMEOUT + 10)
        if any(t.is_alive() for t in threads):
            raise AssertionError("flood requests still running after the timeout")
        state["queued_at_start"] = queued
        state["metrics"] = metrics(d.base)
        return state
    finally:
        rc = d.stop()
        if rc not in (0, None):
            print("  daemon exit %s, log tail:\n%s" % (rc, d.log_tail()), file=sys.stderr)
        if rc != 0:
            raise AssertionError("daemon exit code %s (log %s): %s" % (rc, d.log.name, d.log_tail(600)))
        os.unlink(d.log.name)


def test_policy(policy):
    st = run_scenario(policy)
    tr = st["trickle"]
    m = st["metrics"]
    desc = "trickle (floods done at send, at completion) %s, %d queued at start" % (tr, st["queued_at_start"])
    print("  %s: %s" % (policy, desc), flush=True)
    assert not st["flood_err"], "flood errors: %s" % st["flood_err"][:3]
    assert st["flood_ok"] == FLOOD_N, "%d of %d flood requests completed" % (st["flood_ok"], FLOOD_N)
    assert len(tr) == TRICKLE_N, "trickle completed %d of %d" % (len(tr), TRICKLE_N)
    if policy == "fcfs":
        assert tr[0][1] >= MIN_QUEUED, "fcfs: first trickle after only %d flood completions; %s" % (tr[0][1], desc)
    else:
        for i, (before, after) in enumerate(tr):
            assert after - before <= FAIR_BOUND[policy], (
                "%s: trickle #%d waited for %d flood completions (bound %d); %s"
                % (policy, i, after - before, FAIR_BOUND[policy], desc))
        svc_t = m.get(("sparrow_client_service_total", "trickle"), 0)
        svc_f = m.get(("sparrow_client_service_total", "flood"), 0)
        assert svc_t > 0, "%s: trickle service_total %r" % (policy, svc_t)
        assert svc_f > 0, "%s: flood service_total %r" % (policy, svc_f)
    out_f = m.get(("sparrow_client_output_tokens_total", "flood"), 0)
    out_t = m.get(("sparrow_client_output_tokens_total", "trickle"), 0)
    assert out_f == FLOOD_N * MAX_TOKENS, "flood output tokens %r, want %d" % (out_f, FLOOD_N * MAX_TOKENS)
    assert out_t == TRICKLE_N * MAX_TOKENS, "trickle output tokens %r, want %d" % (out_t, TRICKLE_N * MAX_TOKENS)
    for c in ("flood", "trickle"):
        w = m.get(("sparrow_client_waiting_requests", c), 0)
        r = m.get(("sparrow_client_running_requests", c), 0)
        assert w == 0 and r == 0, "%s still has %r waiting, %r running" % (c, w, r)


def main():
    if not os.path.exists(MODEL):
        print("FAIL setup: no model at %s" % MODEL)
        print("0 passed, 1 failed")
        return 1
    t0 = time.monotonic()
    for p in POLICIES:
        check("fairness_" + p, lambda p=p: test_policy(p))
    passed = sum(1 for _, e in results if e is None)
    failed = len(results) - passed
    print("  (%.1fs)" % (time.monotonic() - t0), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
