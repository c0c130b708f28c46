#!/usr/bin/env python3
"""test_faults.py - the daemon under faults: clients that vanish, slow
clients, KV pool exhaustion, queue overflow, SIGTERM under load and a stalled
engine step (systemd watchdog).

Each test starts its own `sparrow serve` with stories260K on a free loopback
port and always kills it. Python standard library plus requests; no pytest.
    SPARROW_BIN        binary under test (default ./sparrow)
    SPARROW_SHARED     data dir holding models/ (default ../shared)
    SPARROW_FAULT_BIN  daemon built with -DSPARROW_FAULT_INJECTION
                       (default build/fault/sparrow, built with `make fault`)
    SPARROW_TESTS      optional comma-separated test names to run
Prints `ok NAME` / `FAIL NAME: reason` per test, then `N passed, M failed`.
"""
import atexit
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import requests

from itest import check, free_port, results

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(os.environ.get("SPARROW_BIN") or "./sparrow")
SHARED = os.path.abspath(os.environ.get("SPARROW_SHARED") or "../shared")
MODEL = os.path.join(SHARED, "models", "stories260K-f32.gguf")
FAULT_BIN = os.path.abspath(os.environ.get("SPARROW_FAULT_BIN") or os.path.join(REPO, "build", "fault", "sparrow"))


def _is_sanitized(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


ASAN = _is_sanitized(BIN)
SLOW = 4 if ASAN else 1
LOG_DIR = tempfile.mkdtemp(prefix="sparrow-faults-")
_daemons = []






class Daemon:
    def __init__(self, *args, binary=None, env=None):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(LOG_DIR, "daemon-%d.log" % self.port)
        self.log = open(self.log_path, "wb")
        cmd = [binary or BIN, "serve", "-m", MODEL, "--host", "127.0.0.1", "--port", str(self.port),
               "-t", "1", "--log-level", "info"] + list(args)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(env or {})))
        _daemons.append(self)
        deadline = time.monotonic() + 30 * SLOW
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited with %s: %s" % (self.proc.returncode, self.tail()))
            try:
                if requests.get(self.base + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("daemon not ready: " + self.tail())

    def tail(self, n=1500):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def metrics(self):
        out = {}
        for line in requests.get(self.base + "/metrics", timeout=10).text.splitlines():
            if line.startswith("#") or " " not in line:
                continue
            name, value = line.rsplit(" ", 1)
            try:
                out[name] = float(value)
            except ValueError:
                pass
        return out

    def fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, timeout=60):
        """SIGTERM and wait; the exit code, or None if it had to be killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                return None
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


@atexit.register
def _kill_all():
    for d in _daemons:
        try:
            d.kill()
        except Exception:  # noqa: BLE001
            pass


def complete(base, prompt, max_tokens, timeout=120, **kw):
    body = dict(prompt=prompt, max_tokens=max_tokens, temperature=0, ignore_eos=True, **kw)
    return requests.post(base + "/v1/completions", json=body, timeout=timeout * SLOW)


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def raw(port, data, wait_s=0.0):
    """Open a connection, send data, optionally wait, then hang up (RST-free close)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(data)
        if wait_s:
            time.sleep(wait_s)
    finally:
        s.close()


def http_post(path, body, extra=b""):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


# --- tests ------------------------------------------------------------------


def test_disconnects():
    """Clients hang up before their headers end, mid-body, mid-stream and while
    waiting for a whole response; the daemon keeps serving and frees every KV block."""
    d = Daemon("-c", "2048", "--max-running", "4")
    try:
        fds0 = d.fds()
        rng = random.Random(8)
        body = json.dumps({"prompt": "Once upon a time", "max_tokens": 300, "ignore_eos": True,
                           "temperature": 0}).encode()
        stream_body = json.dumps({"prompt": "Once upon a time", "max_tokens": 300, "ignore_eos": True,
                                  "stream": True}).encode()
        full = http_post(b"/v1/completions", body)
        kinds = {"headers": 0, "body": 0, "stream": 0, "waiting": 0}
        for i in range(24):
            kind = list(kinds)[i % 4]
            kinds[kind] += 1
            if kind == "headers":       # cut inside the header block
                raw(d.port, full[:rng.randint(1, full.index(b"\r\n\r\n"))])
            elif kind == "body":        # headers done, part of the body
                cut = full.index(b"\r\n\r\n") + 4 + rng.randint(0, len(body) - 1)
                raw(d.port, full[:cut], wait_s=rng.random() * 0.2)
            elif kind == "stream":      # read some SSE chunks, then leave
                s = socket.create_connection(("127.0.0.1", d.port), timeout=30 * SLOW)
                s.sendall(http_post(b"/v1/completions", stream_body))
                got, want = b"", rng.randint(1, 6)
                while got.count(b"data: ") < want:
                    chunk = s.recv(4096)
                    assert chunk, "stream ended early"
                    got += chunk
                s.close()
            else:                       # whole response pending
                raw(d.port, full, wait_s=rng.random() * 0.3)
        r = complete(d.base, "The cat", 20)
        assert r.status_code == 200, r.text
        wait_for(lambda: d.metrics().get("sparrow_kv_blocks_used") == 0 and
                 d.metrics().get("sparrow_running_sequences") == 0, 20, "KV blocks back to 0")
        wait_for(lambda: d.fds() <= fds0 + 2, 10, "connections closed (fds %d at start)" % fds0)
        assert d.proc.poll() is None, "daemon died"
    finally:
        assert d.stop() == 0, "exit code " + str(d.proc.returncode)
        d.kill()


def test_slowloris():
    """Connections trickling headers one byte a second are closed by the
    request timeout (2 s) while normal requests are answered."""
    d = Daemon("--request-timeout-s", "2", "--max-connections", "64")
    try:
        head = b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 40 + b"\r\n\r\n"
        closed_after = []
        lock = threading.Lock()

        def slow_client():
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            t0 = time.monotonic()
            try:
                for b in head:
                    s.send(bytes([b]))
                    s.settimeout(1.0)
                    try:
                        if s.recv(1024) == b"":
                            break
                    except socket.timeout:
                        pass
                    if time.monotonic() - t0 > 20:
                        break
            except OSError:
                pass
            finally:
                s.close()
            with lock:
                closed_after.append(time.monotonic() - t0)

        threads = [threading.Thread(target=slow_client) for _ in range(10)]
        for t in threads:
            t.start()
        for i in range(3):
            r = complete(d.base, "Once upon a time", 16)
            assert r.status_code == 200, r.text
            time.sleep(0.5)
        for t in threads:
            t.join(30)
        assert len(closed_after) == 10, "slow clients still running"
        assert max(closed_after) < 8 * SLOW, "slow clients held on for %.1f s" % max(closed_after)
        r = complete(d.base, "Once upon a time", 16)
        assert r.status_code == 200, r.text
    finally:
        assert d.stop() == 0
        d.kill()


PROMPTS = ["Once upon a time, there was a little %s named %s. %s loved to play in the park with %s friends "
           "every day, and one day" % (a, n, n, p)
           for a, n, p in [("girl", "Lily", "her"), ("boy", "Tom", "his"), ("dog", "Max", "his"),
                           ("cat", "Mia", "her"), ("bird", "Sam", "his"), ("bunny", "Sue", "her"),
                           ("frog", "Ben", "his"), ("bear", "Anna", "her")]]


def test_kv_exhaustion():
    """8 long requests on a 256-token pool: all finish with the text each gives
    alone (greedy), through preemption."""
    d = Daemon("-c", "256", "--max-running", "8")
    try:
        n_tok = [len(requests.post(d.base + "/tokenize", json={"content": p}, timeout=10).json()["tokens"])
                 for p in PROMPTS]
        assert min(n_tok) >= 30, n_tok
        alone = []
        for p in PROMPTS:
            r = complete(d.base, p, 100)
            assert r.status_code == 200, r.text
            alone.append(r.json()["choices"][0]["text"])
        out = [None] * len(PROMPTS)

        def run(i):
            r = complete(d.base, PROMPTS[i], 100)
            out[i] = r.json()["choices"][0]["text"] if r.status_code == 200 else "HTTP %d %s" % (r.status_code, r.text)

        before = d.metrics().get("sparrow_preemptions_total", 0)
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(PROMPTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180 * SLOW)
        for i in range(len(PROMPTS)):
            assert out[i] == alone[i], "request %d: %r != alone %r" % (i, out[i], alone[i])
        assert d.metrics().get("sparrow_preemptions_total", 0) > before, "no preemption happened"
        wait_for(lambda: d.metrics().get("sparrow_kv_blocks_used") == 0, 10, "KV blocks back to 0")
    finally:
        assert d.stop() == 0
        d.kill()


def test_queue_overflow():
    """30 requests at once on a queue of 4: the overflow gets 503/429 with a
    JSON error, the rest 200; a second and third burst cost no memory."""
    d = Daemon("--max-queue", "4", "--max-queue-per-client", "100", "--max-running", "1")
    try:
        def burst():
            codes = []
            lock = threading.Lock()

            def one(i):
                r = complete(d.base, "Once upon a time %d" % i, 40)
                if r.status_code in (429, 503):
                    err = r.json()["error"]
                    assert err["message"] and err["type"], r.text
                with lock:
                    codes.append(r.status_code)

            ts = [threading.Thread(target=one, args=(i,)) for i in range(30)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(120 * SLOW)
            return codes

        first = burst()
        assert len(first) == 30 and set(first) <= {200, 429, 503}, first
        assert first.count(200) >= 1 and len([c for c in first if c != 200]) >= 1, first
        rss1 = d.rss_kib()
        for _ in range(2):
            again = burst()
            assert len(again) == 30 and set(again) <= {200, 429, 503}, again
        rss3 = d.rss_kib()
        margin = (48 if ASAN else 4) * 1024
        assert rss3 - rss1 < margin, "RSS grew from %d to %d KiB" % (rss1, rss3)
        assert d.metrics().get("sparrow_queued_requests", 0) == 0
    finally:
        assert d.stop() == 0
        d.kill()


def test_sigterm_under_load():
    """SIGTERM with requests running and queued: every request accepted by
    then finishes with its whole text, later ones get a clean 503 (or a
    refused connection), and the daemon exits 0."""
    d = Daemon("--max-running", "1", "--drain-timeout-s", "60")
    n = 8
    results_ = [None] * n

    def one(i):
        try:
            r = complete(d.base, PROMPTS[i % len(PROMPTS)], 400)
            results_[i] = (r.status_code, r.json())
        except requests.ConnectionError as e:
            results_[i] = (0, str(e))

    try:
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        in_flight = [0]

        def backlog():
            m = d.metrics()
            in_flight[0] = m.get("sparrow_running_sequences", 0) + m.get("sparrow_queued_requests", 0)
            return in_flight[0] >= 3
        wait_for(backlog, 20, "3 requests in flight")
        d.proc.send_signal(signal.SIGTERM)
        for t in ts:
            t.join(120 * SLOW)
        ok = 0
        for i, (code, body) in enumerate(results_):
            if code == 200:
                assert body["usage"]["completion_tokens"] == 400, body["usage"]
                ok += 1
            elif code == 503:
                assert body["error"]["message"], body
            else:
                assert code == 0, "request %d: %s %s" % (i, code, body)     # refused: arrived after the drain
        assert ok >= in_flight[0], "%d finished, %d were in flight at SIGTERM" % (ok, in_flight[0])
        d.proc.wait(timeout=60 * SLOW)
        assert d.proc.returncode == 0, "exit code %s" % d.proc.returncode
    finally:
        d.kill()


def test_watchdog_stall():
    """A stalled engine step (fault-injection build) stops WATCHDOG=1 pings;
    they come back when the step ends."""
    if not os.path.exists(FAULT_BIN) or os.environ.get("SPARROW_FAULT_BIN") is None:
        subprocess.run(["make", "--no-print-directory", "-s", "fault"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    sock_path = os.path.join(LOG_DIR, "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(sock_path)
    ns.settimeout(0.2)
    pings, stop = [], threading.Event()

    def listen():
        while not stop.is_set():
            try:
                msg = ns.recv(4096).decode("utf-8", "replace")
            except socket.timeout:
                continue
            if "WATCHDOG=1" in msg.split("\n"):
                pings.append(time.monotonic())

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    stall_s = 5.0
    env = {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000000",
           "SPARROW_FAULT_STALL_AFTER_STEPS": "1", "SPARROW_FAULT_STALL_MS": str(int(stall_s * 1000))}
    d = Daemon(binary=FAULT_BIN, env=env)
    try:
        time.sleep(3)                   # idle: pings every 0.5 s (the heartbeat moves while idle)
        idle = [p for p in pings if p > time.monotonic() - 2.5]
        assert len(idle) >= 3, "only %d pings while idle" % len(idle)
        t_req = time.monotonic()
        r = complete(d.base, "Once upon a time", 4, timeout=60)
        t_done = time.monotonic()
        assert r.status_code == 200, r.text
        assert t_done - t_req >= stall_s - 0.5, "no stall happened (%.1f s)" % (t_done - t_req)
        time.sleep(2)
        during = [p for p in pings if t_req <= p <= t_done]
        gaps = [b - a for a, b in zip([t_req] + during, during + [t_done])]
        assert max(gaps) >= 2.0, "pings went on during the stall: gaps %s" % gaps
        after = [p for p in pings if p > t_done]
        assert len(after) >= 2, "pings did not resume after the stall"
        assert "stalled" in d.tail(5000), "no stall logged"
    finally:
        stop.set()
        assert d.stop() == 0
        d.kill()
        ns.close()


def main():
    check("disconnects", test_disconnects)
    check("slowloris", test_slowloris)
    check("kv_exhaustion", test_kv_exhaustion)
    check("queue_overflow", test_queue_overflow)
    check("sigterm_under_load", test_sigterm_under_load)
    check("watchdog_stall", test_watchdog_stall)
    failed = sum(1 for _, e in results if e)
    print("%d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
