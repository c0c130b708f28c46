#!/usr/bin/env python3
"""fair-bench.py - the fair-scheduling benchmark (../shared/research/
fair-scheduling.md section 7, scaled down): several clients, each with its own
long shared prefixes, sending open-loop Poisson arrivals at different rates
(one of them overloading the server) to a sparrow daemon; reports throughput,
prefix-cache hit rate, per-client latency and service, and the service
difference between co-backlogged clients.

Python 3 standard library only.

Workload
  Each client (identity = the request's "user" field) owns DOCS documents of
  DOC_TOKENS words (a seeded RNG over a word list whose words are single Llama 2
  tokens, as in ../shared/anchors/loadgen.py). A request is one of its
  documents, chosen at random, plus a unique SUFFIX_TOKENS-word question; it
  streams /v1/completions with stream_options.include_usage, max_tokens
  (default 64) and ignore_eos, so every request generates exactly max_tokens.
  Arrivals per client are Poisson at the client's rate (open loop), for
  --duration seconds or --requests per client.

Clients spec (--clients): comma-separated NAME:RATE[:DOCS[:DOC_TOKENS]], RATE in
  requests/s. Default "A:1.2,B:0.15,C:0.15,D:0.08:0" (A overloads a 2-thread
  synth15M daemon; D has no shared prefix, its prompt is only the suffix).

Report (measurement window = from the first arrival to the end of arrivals)
  out tok/s      sparrow_generation_tokens_total delta / window
  hit rate       cached / (cached + computed) prompt tokens, /metrics deltas
  per client     sent / ok / rejected (429, 503) / unfinished, E2E and TTFT mean
                 and p99 (completed requests only, so an overloaded client's
                 figures are censored by the requests still queued at the end),
                 output tokens and service (sparrow_client_output_tokens_total,
                 sparrow_client_service_total deltas over the window)
  max svc diff   /metrics is sampled every --sample-s (0.5 s); for every pair of
                 clients and every maximal run of consecutive samples in which
                 both have waiting requests, max - min of (S_f - S_g) over the
                 run (the section 6.8 method at sample resolution); the maximum
                 over pairs and runs, with the pair that attains it

After the window, requests in flight get --drain-s seconds to finish; the
rest are abandoned (their connections closed) and counted as unfinished.

Modes
  fair-bench.py --base-url http://127.0.0.1:8080 --duration 60
      run against a running server
  fair-bench.py --policies fcfs,lpm,vtc,dlpm --model M.gguf --sparrow ./sparrow
      start a daemon per policy (-c 8192 --max-running 8 -t 2 on a free
      loopback port, plus --server-args), run, stop it, and print one markdown
      table row per policy
"""
import argparse
import http.client
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

# Single tokens (after a space) in the Llama 2 SentencePiece vocab; copied from
# ../shared/anchors/loadgen.py.
WORDS = (
    "the a and to of was he she it they in on with for his her that said day big "
    "little dog cat ball tree park house girl boy mom friend happy sad play "
    "saw went ran found wanted liked loved looked very but then one time "
    "there named ben tom sue sun sky red blue green small box car bird "
    "fish water flower garden book apple door window bed room school teacher "
    "kind brave tired sleep eat walk run sing dance laugh cry "
    "help share give take make see look come go home away back up down out over "
    "under near far good bad new old long short hot cold soft hard fast slow "
    "together again always never every some many more most other each all no yes"
).split()

DEFAULT_CLIENTS = "A:1.2,B:0.15,C:0.15,D:0.08:0"


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def mean(values):
    return sum(values) / len(values) if values else float("nan")


# ---------------------------------------------------------------- metrics

METRIC_RE = re.compile(r'^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+(\S+)')
CLIENT_RE = re.compile(r'client="((?:[^"\\]|\\.)*)"')


def fetch_metrics(base, timeout=10):
    """{'global': {name: value}, 'client': {name: {client: value}}}."""
    with urllib.request.urlopen(base + "/metrics", timeout=timeout) as r:
        text = r.read().decode("utf-8", "replace")
    g, c = {}, {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = METRIC_RE.match(line)
        if not m:
            continue
        try:
            v = float(m.group(3))
        except ValueError:
            continue
        name, labels = m.group(1), m.group(2)
        if labels:
            cm = CLIENT_RE.search(labels)
            if cm:
                c.setdefault(name, {})[cm.group(1)] = v
            continue
        g[name] = v
    return {"global": g, "client": c}


class Sampler(threading.Thread):
    """Samples per-client service and waiting every period seconds."""

    def __init__(self, base, period):
        super().__init__(daemon=True)
        self.base, self.period = base, period
        self.samples = []       # (t, {client: service}, {client: waiting})
        self.errors = 0
        self.stop_event = threading.Event()

    def run(self):
        nxt = time.monotonic()
        while not self.stop_event.is_set():
            try:
                m = fetch_metrics(self.base, timeout=max(2.0, self.period * 4))
                self.samples.append((time.monotonic(),
                                     dict(m["client"].get("sparrow_client_service_total", {})),
                                     dict(m["client"].get("sparrow_client_waiting_requests", {}))))
            except Exception:  # noqa: BLE001 - a missed sample is only a gap
                self.errors += 1
            nxt += self.period
            self.stop_event.wait(max(0.0, nxt - time.monotonic()))

    def stop(self):
        self.stop_event.set()
        self.join(10)


def max_service_difference(samples, clients):
    """Max over client pairs and maximal runs of consecutive samples where both
    wait of max - min of (S_f - S_g); returns (value, pair, run length)."""
    best = (0.0, None, 0)
    for i, f in enumerate(clients):
        for g in clients[i + 1:]:
            run = []
            for _, svc, wait in samples + [(None, {}, {})]:   # sentinel closes the last run
                if wait.get(f, 0) > 0 and wait.get(g, 0) > 0:
                    run.append(svc.get(f, 0.0) - svc.get(g, 0.0))
                    continue
                if len(run) >= 2:
                    d = max(run) - min(run)
                    if d > best[0]:
                        best = (d, (f, g), len(run))
                run = []
    return best


# ---------------------------------------------------------------- workload

class Client:
    def __init__(self, name, rate, docs, doc_tokens, suffix_tokens, seed):
        self.name, self.rate = name, rate
        rng = random.Random("%s/%s/docs" % (seed, name))
        self.docs = [" ".join(rng.choice(WORDS) for _ in range(doc_tokens)) for _ in range(docs)]
        self.rng = random.Random("%s/%s/requests" % (seed, name))
        self.suffix_tokens = suffix_tokens
        self.results = []       # dicts per request
        self.lock = threading.Lock()

    def prompt(self, i, doc=None):
        """Request i's prompt (call from one thread: the RNG is shared)."""
        q = " ".join(self.rng.choice(WORDS) for _ in range(self.suffix_tokens))
        q = "question %d for %s: %s" % (i, self.name, q)
        if not self.docs:
            return q
        return (self.docs[doc] if doc is not None else self.rng.choice(self.docs)) + "\n" + q


def parse_clients(spec, docs_default, doc_tokens_default):
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        f = part.split(":")
        if len(f) < 2 or len(f) > 4:
            raise SystemExit("bad client spec %r: want NAME:RATE[:DOCS[:DOC_TOKENS]]" % part)
        out.append((f[0], float(f[1]), int(f[2]) if len(f) > 2 else docs_default,
                    int(f[3]) if len(f) > 3 else doc_tokens_default))
    names = [c[0] for c in out]
    if len(set(names)) != len(names):
        raise SystemExit("duplicate client names in %r" % spec)
    return out


class Inflight:
    """Open connections, so that the drain can abandon them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.conns = set()
        self.abandon = False

    def add(self, c):
        with self.lock:
            if self.abandon:
                return False
            self.conns.add(c)
            return True

    def remove(self, c):
        with self.lock:
            self.conns.discard(c)

    def close_all(self):
        with self.lock:
            self.abandon = True
            conns = list(self.conns)
        for c in conns:
            try:
                if c.sock:
                    c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def one_request(base, client, i, prompt, args, inflight):
    u = urllib.parse.urlsplit(base)
    body = json.dumps({
        "prompt": prompt, "max_tokens": args.max_tokens, "ignore_eos": True,
        "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
        "user": client.name,
    })
    res = {"client": client.name, "i": i, "status": None, "ttft": None, "e2e": None,
           "completion_tokens": 0, "prompt_tokens": 0, "cached_tokens": 0, "error": None}
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=args.request_timeout)
    t0 = time.perf_counter()
    res["t_send"] = time.monotonic()
    try:
        if not inflight.add(conn):
            res["error"] = "abandoned"
            return res
        conn.request("POST", "/v1/completions", body=body, headers={
            "Content-Type": "application/json", "Accept": "text/event-stream"})
        resp = conn.getresponse()
        res["status"] = resp.status
        if resp.status != 200:
            res["error"] = resp.read()[:200].decode("utf-8", "replace")
            return res
        done = False
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            ev = json.loads(data)
            if "error" in ev:
                res["error"] = str(ev["error"])[:200]
                break
            if ev.get("choices") and res["ttft"] is None:
                res["ttft"] = time.perf_counter() - t0
            us = ev.get("usage")
            if us:
                res["completion_tokens"] = us.get("completion_tokens", 0)
                res["prompt_tokens"] = us.get("prompt_tokens", 0)
                res["cached_tokens"] = (us.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        if done and res["error"] is None:
            res["e2e"] = time.perf_counter() - t0
        elif res["error"] is None:
            res["error"] = "stream ended without [DONE]"
    except (OSError, http.client.HTTPException, ValueError) as e:
        res["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        if res["e2e"] is None and inflight.abandon:
            res["error"] = "abandoned after the drain (%s)" % ("streaming" if res["ttft"] else "queued")
        inflight.remove(conn)
        conn.close()
    return res


def arrivals(client, base, args, t_start, t_stop, n_max, inflight, threads, tlock, seed):
    rng = random.Random("%s/%s/arrivals" % (seed, client.name))
    t = t_start
    i = 0
    while True:
        t += rng.expovariate(client.rate) if client.rate > 0 else float("inf")
        if (t_stop is not None and t >= t_stop) or (n_max is not None and i >= n_max):
            return
        delay = t - time.monotonic()
        if delay > 0:
            time.sleep(delay)

        def work(i=i, prompt=client.prompt(i)):
            r = one_request(base, client, i, prompt, args, inflight)
            with client.lock:
                client.results.append(r)

        th = threading.Thread(target=work, daemon=True)
        th.start()
        with tlock:
            threads.append(th)
        i += 1


def run_workload(base, args):
    specs = parse_clients(args.clients, args.docs, args.doc_tokens)
    clients = [Client(n, r, d, dt, args.suffix_tokens, args.seed) for n, r, d, dt in specs]
    names = [c.name for c in clients]
    inflight = Inflight()
    threads, tlock = [], threading.Lock()

    if args.warmup:
        # one request per client, serially, so the first timed requests do not
        # pay for the documents' first prefill all at once
        for c in clients:
            for d in range(len(c.docs)):
                w = one_request(base, c, -1 - d, c.prompt(-1 - d, d), args, inflight)
                if w["e2e"] is None:
                    raise SystemExit("warm-up request failed: %s %s" % (w["status"], w["error"]))
    m0 = fetch_metrics(base)
    sampler = Sampler(base, args.sample_s)
    sampler.start()
    t_start = time.monotonic() + 0.05
    t_stop = t_start + args.duration if args.requests is None else None
    gens = [threading.Thread(target=arrivals, args=(c, base, args, t_start, t_stop, args.requests,
                                                    inflight, threads, tlock, args.seed), daemon=True)
            for c in clients]
    for g in gens:
        g.start()
    for g in gens:
        g.join()
    t_end = time.monotonic()
    m1 = fetch_metrics(base)        # end of the arrival window
    # drain
    deadline = time.monotonic() + (args.drain_s if args.requests is None else args.request_timeout)
    with tlock:
        pending = list(threads)
    for th in pending:
        th.join(max(0.0, deadline - time.monotonic()))
    inflight.close_all()
    for th in pending:
        th.join(5)
    sampler.stop()
    m2 = fetch_metrics(base)
    window = t_end - t_start
    if args.requests is not None:
        # request-count mode: the window ends when the last request finished
        window = time.monotonic() - t_start
        m1 = m2

    def gdelta(name, a=m0, b=m1):
        return b["global"].get(name, 0.0) - a["global"].get(name, 0.0)

    def cdelta(name, client, a=m0, b=m1):
        return b["client"].get(name, {}).get(client, 0.0) - a["client"].get(name, {}).get(client, 0.0)

    cached = gdelta("sparrow_prompt_tokens_cached_total")
    computed = gdelta("sparrow_prompt_tokens_total")
    samples = [s for s in sampler.samples if s[0] <= t_end + args.sample_s] if args.requests is None else sampler.samples
    diff, pair, runlen = max_service_difference(samples, names)
    out = {
        "window_s": window,
        "out_tok_s": gdelta("sparrow_generation_tokens_total") / window if window > 0 else 0.0,
        "computed_tok_s": (computed + gdelta("sparrow_generation_tokens_total")) / window if window > 0 else 0.0,
        "prefix_hit_rate": cached / (cached + computed) if cached + computed > 0 else 0.0,
        "preemptions": gdelta("sparrow_preemptions_total"),
        "kv_evictions": gdelta("sparrow_kv_evictions_total"),
        "max_service_diff": diff, "max_service_diff_pair": pair, "max_service_diff_samples": runlen,
        "samples": len(sampler.samples), "sample_errors": sampler.errors,
        # per-client normalized service over time (seconds from the first
        # sample), for scripts/plot-fairness.sh
        "service_over_time": [[round(t - samples[0][0], 3), svc] for t, svc, _ in samples] if samples else [],
        "clients": {},
    }
    for c in clients:
        rs = sorted(c.results, key=lambda r: r["i"])
        ok = [r for r in rs if r["e2e"] is not None]
        e2e = [r["e2e"] for r in ok]
        ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
        rejected = [r for r in rs if r["status"] in (429, 503)]
        errors = [r["error"] for r in rs if r["e2e"] is None and r["status"] not in (429, 503)]
        out["clients"][c.name] = {
            "rate": c.rate, "docs": len(c.docs),
            "sent": len(rs), "ok": len(ok), "rejected": len(rejected), "unfinished": len(errors),
            "errors_sample": errors[:3],
            "e2e_mean": mean(e2e), "e2e_p99": percentile(e2e, 99) if e2e else float("nan"),
            "ttft_mean": mean(ttft), "ttft_p99": percentile(ttft, 99) if ttft else float("nan"),
            "prompt_tokens_mean": mean([r["prompt_tokens"] for r in ok]),
            "client_output_tokens": sum(r["completion_tokens"] for r in ok),
            "output_tokens": cdelta("sparrow_client_output_tokens_total", c.name),
            "service": cdelta("sparrow_client_service_total", c.name),
            "hit_rate": (cdelta("sparrow_client_cached_prompt_tokens_total", c.name)
                         / max(1.0, cdelta("sparrow_client_prompt_tokens_total", c.name))),
        }
    return out


# ---------------------------------------------------------------- report

def fmt(x, nd=2):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else ("%.*f" % (nd, x))


def table_header(names):
    cols = ["policy", "out tok/s", "hit rate", "max svc diff (pair)"] + \
        ["%s: E2E mean/p99 s · TTFT mean/p99 s · ok/sent · out tok · service" % n for n in names]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def table_row(policy, r):
    pair = "%s-%s" % r["max_service_diff_pair"] if r["max_service_diff_pair"] else "none"
    cells = [policy, fmt(r["out_tok_s"], 1), fmt(r["prefix_hit_rate"], 3),
             "%s (%s)" % (fmt(r["max_service_diff"], 0), pair)]
    for n, c in r["clients"].items():
        cells.append("%s/%s · %s/%s · %d/%d · %d · %d" % (
            fmt(c["e2e_mean"]), fmt(c["e2e_p99"]), fmt(c["ttft_mean"]), fmt(c["ttft_p99"]),
            c["ok"], c["sent"], c["output_tokens"], c["service"]))
    return "| " + " | ".join(cells) + " |"


def print_report(r, label=""):
    print("== %s window %.1fs: %.1f output tok/s, %.1f computed tok/s, prefix hit rate %.3f, "
          "preemptions %d, evictions %d" % (label, r["window_s"], r["out_tok_s"], r["computed_tok_s"],
                                            r["prefix_hit_rate"], r["preemptions"], r["kv_evictions"]))
    print("   max service difference among co-backlogged clients: %.0f (%s, %d samples); %d samples, %d errors"
          % (r["max_service_diff"], r["max_service_diff_pair"], r["max_service_diff_samples"],
             r["samples"], r["sample_errors"]))
    print("   %-6s %6s %5s %5s %5s %5s  %8s %8s  %8s %8s  %7s %9s %5s" % (
        "client", "rate", "sent", "ok", "rej", "unfin", "E2E mean", "E2E p99", "TTFTmean", "TTFT p99",
        "out tok", "service", "hit"))
    for n, c in r["clients"].items():
        print("   %-6s %6.2f %5d %5d %5d %5d  %8s %8s  %8s %8s  %7d %9.0f %5.2f" % (
            n, c["rate"], c["sent"], c["ok"], c["rejected"], c["unfinished"], fmt(c["e2e_mean"]),
            fmt(c["e2e_p99"]), fmt(c["ttft_mean"]), fmt(c["ttft_p99"]), c["output_tokens"], c["service"],
            c["hit_rate"]))
        if c["errors_sample"]:
            print("          e.g. %s" % "; ".join(e or "?" for e in c["errors_sample"]))
    sys.stdout.flush()


# ---------------------------------------------------------------- daemon

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(args, policy):
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="fair-bench-%s-" % policy, suffix=".log", delete=False)
    cmd = [args.sparrow, "serve", "-m", args.model, "--port", str(port), "--scheduler-policy", policy,
           "-c", "8192", "--max-running", "8", "-t", "2", "--max-queue-per-client", "256",
           "--drain-timeout-s", "5", "--log-level", "warn"] + args.server_args.split()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:%d" % port
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("daemon exited (%s); log %s" % (proc.returncode, log.name))
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, base, log.name
        except OSError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("daemon not ready in 60 s; log %s" % log.name)


def stop_daemon(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", help="a running server (single-run mode)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals (default 60)")
    ap.add_argument("--requests", type=int, help="requests per client instead of --duration")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clients", default=DEFAULT_CLIENTS, help="NAME:RATE[:DOCS[:DOC_TOKENS]],... (default %(default)s)")
    ap.add_argument("--docs", type=int, default=2, help="shared documents per client (default 2)")
    ap.add_argument("--doc-tokens", type=int, default=384, help="words per document (default 384)")
    ap.add_argument("--suffix-tokens", type=int, default=16, help="unique question words (default 16)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--sample-s", type=float, default=0.5, help="/metrics sampling period (default 0.5)")
    ap.add_argument("--drain-s", type=float, default=10.0, help="grace for in-flight requests after the window")
    ap.add_argument("--request-timeout", type=float, default=300.0)
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip one untimed request per client document before the window")
    ap.add_argument("--json-out", help="write all results here")
    ap.add_argument("--policies", help="wrapper mode: comma-separated policies to run a daemon for")
    ap.add_argument("--model", help="wrapper mode: GGUF model")
    ap.add_argument("--sparrow", default="./sparrow", help="wrapper mode: binary (default ./sparrow)")
    ap.add_argument("--server-args", default="", help="wrapper mode: extra daemon flags (space separated)")
    args = ap.parse_args()

    results = {"args": vars(args), "command": " ".join(["scripts/fair-bench.py"] + sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d"), "runs": {}}
    names = [c[0] for c in parse_clients(args.clients, args.docs, args.doc_tokens)]
    if args.policies:
        if not args.model:
            ap.error("--policies needs --model")
        rows = []
        for p in [x.strip() for x in args.policies.split(",") if x.strip()]:
            proc, base, logname = start_daemon(args, p)
            try:
                r = run_workload(base, args)
            finally:
                rc = stop_daemon(proc)
            r["daemon_exit"] = rc
            if rc != 0:
                print("warning: %s daemon exit %s, log %s" % (p, rc, logname), file=sys.stderr)
            else:
                os.unlink(logname)
            results["runs"][p] = r
            print_report(r, p)
            rows.append(table_row(p, r))
        print()
        print(table_header(names))
        for row in rows:
            print(row)
    else:
        if not args.base_url:
            ap.error("give --base-url, or --policies with --model")
        r = run_workload(args.base_url.rstrip("/"), args)
        results["runs"]["server"] = r
        print_report(r, args.base_url)
        print()
        print(table_header(names))
        print(table_row("server", r))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(results, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
