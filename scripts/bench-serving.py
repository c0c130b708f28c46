#!/usr/bin/env python3
"""bench-serving.py - closed-loop serving benchmark for OpenAI-compatible servers.

usage: scripts/bench-serving.py --base-url http://127.0.0.1:PORT [options]
       scripts/bench-serving.py --help

Python 3 standard library only. Like ../shared/anchors/loadgen.py: each client is a
thread that sends streaming (SSE) requests one after another, each on a new TCP
connection, until the level's request budget is used up (closed loop). Runs the
same way against sparrow and llama.cpp's llama-server. Loopback addresses only.

Workloads
  uniform  every request has its own ~PROMPT_TOKENS-word prompt
  prefix   every request = one common PREFIX_TOKENS-word prefix + its own
           SUFFIX_TOKENS-word suffix (exercises prefix caching)
Prompts are built from the same word list and seeds as loadgen.py (each word one
token in the Llama 2 vocab), so both tools send the same text. By default each
concurrency level gets its own prompts (seed offset per level) so a level does
not hit the prefix cache filled by the previous one; --same-prompts-per-level
sends loadgen.py's exact prompts at every level.

Per level (metrics over successful requests):
  ok/err          requests that streamed at least one token / failed
  req/s           ok requests / level wall time
  out tok/s       sum of completion tokens (usage, else chunk count) / wall time
  TTFT            request start (before connect) -> first streamed text chunk
  TPOT            (last chunk - first chunk) / (completion tokens - 1), per request
  ITL             gaps between arrivals of consecutive text chunks, all requests
  E2E             request start -> end of stream
  prompt/cached   mean usage.prompt_tokens and prompt_tokens_details.cached_tokens
  peak RSS        with --pid: VmHWM of the server after the level (Linux /proc),
                  and max VmRSS sampled every 50 ms during the level

Bounds: --requests per level, --timeout per request, --level-timeout per level
(no new requests start after it; in-flight ones finish or time out).

examples
  scripts/bench-serving.py --base-url http://127.0.0.1:18080 --concurrency 1,4,16 --requests 64
  scripts/bench-serving.py --base-url http://127.0.0.1:18080 --workload prefix \\
      --concurrency 8 --requests 64 --prefix-tokens 512 --suffix-tokens 32
  scripts/bench-serving.py --base-url http://127.0.0.1:18080 --endpoint chat --json-out r.jsonl
"""
import argparse
import http.client
import ipaddress
import json
import math
import random
import socket
import statistics
import sys
import threading
import time
import urllib.parse

# Same list as loadgen.py: each word is a single token (after a space) in the
# Llama 2 SentencePiece vocab, so N words ~ N prompt tokens (+1 for BOS).
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


def make_words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def mean_or_none(values):
    return statistics.mean(values) if values else None


def read_status(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssSampler(threading.Thread):
    """Samples VmRSS of a process every period seconds until stopped."""

    def __init__(self, pid, period=0.05):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.max_rss_kb = 0
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            v = read_status(self.pid, "VmRSS")
            if v is not None and v > self.max_rss_kb:
                self.max_rss_kb = v
            self.stop_event.wait(self.period)

    def stop(self):
        self.stop_event.set()
        self.join()


def is_loopback(host):
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def request_body(args, prompt):
    if args.endpoint == "chat":
        req = {"messages": [{"role": "user", "content": prompt}]}
    else:
        req = {"prompt": prompt}
    req.update({"max_tokens": args.max_tokens, "temperature": 0.0, "stream": True,
                "stream_options": {"include_usage": True}})
    if args.model:
        req["model"] = args.model
    if args.ignore_eos:
        req["ignore_eos"] = True
    return json.dumps(req)


def chunk_text(args, choice):
    if args.endpoint == "chat":
        return (choice.get("delta") or {}).get("content")
    return choice.get("text")


def one_request(args, host, port, path, body):
    """Send one streaming request on a new connection; return timings and counts.
    t0 is taken before connecting, so TTFT includes the TCP connect."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=args.timeout)
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/json", "Accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status != 200:
            text = resp.read(300).decode("utf-8", "replace")
            raise RuntimeError("HTTP %d: %s" % (resp.status, text))
        arrivals = []
        usage = None
        finish = None
        done = False
        while True:
            line = resp.readline()
            if not line:
                break
            if time.perf_counter() - t0 > args.timeout:
                raise RuntimeError("request exceeded %.0f s" % args.timeout)
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            ev = json.loads(data)
            if ev.get("error"):
                raise RuntimeError("error event in stream: %s" % str(ev["error"])[:200])
            if ev.get("usage"):
                usage = ev["usage"]
            now = time.perf_counter()
            for ch in ev.get("choices") or []:
                if chunk_text(args, ch):
                    arrivals.append(now)
                if ch.get("finish_reason"):
                    finish = ch["finish_reason"]
        resp.read()  # drain whatever follows [DONE]
        t_end = time.perf_counter()
    finally:
        conn.close()
    if not arrivals:
        raise RuntimeError("stream had no text chunks (finish_reason %s)" % finish)
    n_out = usage.get("completion_tokens") if usage else None
    if n_out is None:
        n_out = len(arrivals)  # fallback: one streamed chunk ~ one token
    details = (usage or {}).get("prompt_tokens_details") or {}
    return {
        "ttft": arrivals[0] - t0,
        "e2e": t_end - t0,
        "gen_time": arrivals[-1] - arrivals[0],
        "itl": [b - a for a, b in zip(arrivals, arrivals[1:])],
        "n_out": n_out,
        "n_chunks": len(arrivals),
        "n_prompt": usage.get("prompt_tokens") if usage else None,
        "n_cached": details.get("cached_tokens"),
        "finish": finish,
        "done_marker": done,
    }


def run_level(args, concurrency, prompts, pid):
    url = urllib.parse.urlparse(args.base_url)
    host, port = url.hostname, url.port or 80
    path = url.path.rstrip("/") + ("/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions")
    results, errors = [], []
    lock = threading.Lock()
    next_idx = [0]
    t_start = time.perf_counter()
    deadline = t_start + args.level_timeout

    def client():
        while True:
            with lock:
                i = next_idx[0]
                if i >= len(prompts) or time.perf_counter() > deadline:
                    break
                next_idx[0] += 1
            try:
                r = one_request(args, host, port, path, request_body(args, prompts[i]))
                with lock:
                    results.append(r)
            except Exception as e:  # record it; the level goes on
                with lock:
                    errors.append("%s: %s" % (type(e).__name__, e))

    sampler = RssSampler(pid) if pid else None
    if sampler:
        sampler.start()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t_start
    if sampler:
        sampler.stop()

    out = {"workload": args.workload, "endpoint": args.endpoint, "concurrency": concurrency,
           "requests": len(prompts), "sent": next_idx[0], "ok": len(results),
           "err": len(errors), "error_samples": errors[:3], "wall_s": wall,
           "missing_done": sum(1 for r in results if not r["done_marker"])}
    if results:
        ttft = [r["ttft"] for r in results]
        e2e = [r["e2e"] for r in results]
        tpot = [r["gen_time"] / (r["n_out"] - 1) for r in results if r["n_out"] > 1]
        itl = [g for r in results for g in r["itl"]]
        n_out = sum(r["n_out"] for r in results)
        prompts_n = [r["n_prompt"] for r in results if r["n_prompt"] is not None]
        cached_n = [r["n_cached"] for r in results if r["n_cached"] is not None]
        out.update({
            "output_tokens": n_out,
            "output_tok_s": n_out / wall,
            "req_s": len(results) / wall,
            "ttft_mean_ms": 1e3 * statistics.mean(ttft),
            "ttft_p50_ms": 1e3 * percentile(ttft, 50),
            "ttft_p99_ms": 1e3 * percentile(ttft, 99),
            "tpot_mean_ms": 1e3 * statistics.mean(tpot) if tpot else None,
            "itl_mean_ms": 1e3 * statistics.mean(itl) if itl else None,
            "itl_p50_ms": 1e3 * percentile(itl, 50) if itl else None,
            "itl_p99_ms": 1e3 * percentile(itl, 99) if itl else None,
            "e2e_mean_ms": 1e3 * statistics.mean(e2e),
            "e2e_p99_ms": 1e3 * percentile(e2e, 99),
            "mean_output_tokens": n_out / len(results),
            "mean_chunks": statistics.mean(r["n_chunks"] for r in results),
            "mean_prompt_tokens": mean_or_none(prompts_n),
            "mean_cached_tokens": mean_or_none(cached_n),
        })
    if sampler:
        out["peak_rss_mib_during_level"] = sampler.max_rss_kb / 1024.0
        hwm = read_status(pid, "VmHWM")
        out["vmhwm_mib_after_level"] = hwm / 1024.0 if hwm else None
    return out


def build_prompts(args, n, level_index):
    """loadgen.py's prompts, with the seed moved per level unless --same-prompts-per-level."""
    seed = args.seed if args.same_prompts_per_level else args.seed + 1000 * level_index
    if args.workload == "uniform":
        return [make_words(random.Random(seed * 100003 + i), args.prompt_tokens) for i in range(n)]
    prefix = make_words(random.Random(seed), args.prefix_tokens)
    return ["%s %s" % (prefix, make_words(random.Random(seed * 100003 + 7919 + i), args.suffix_tokens))
            for i in range(n)]


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


COLUMNS = [  # header, key, format
    ("clients", "concurrency", "d"), ("ok", "ok", "d"), ("err", "err", "d"),
    ("req/s", "req_s", ".2f"), ("out tok/s", "output_tok_s", ".1f"),
    ("TTFT mean ms", "ttft_mean_ms", ".1f"), ("TTFT p50 ms", "ttft_p50_ms", ".1f"),
    ("TTFT p99 ms", "ttft_p99_ms", ".1f"), ("TPOT mean ms", "tpot_mean_ms", ".2f"),
    ("ITL mean ms", "itl_mean_ms", ".2f"), ("ITL p99 ms", "itl_p99_ms", ".2f"),
    ("E2E mean ms", "e2e_mean_ms", ".0f"), ("prompt tok", "mean_prompt_tokens", ".1f"),
    ("cached tok", "mean_cached_tokens", ".1f"), ("out tok/req", "mean_output_tokens", ".1f"),
    ("peak RSS MiB", "vmhwm_mib_after_level", ".1f"),
]


def positive_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8080", help="loopback only (default %(default)s)")
    ap.add_argument("--endpoint", choices=("completions", "chat"), default="completions")
    ap.add_argument("--model", default="", help="value of the request's model field (optional)")
    ap.add_argument("--workload", choices=("uniform", "prefix"), default="uniform")
    ap.add_argument("--concurrency", default="1,4,16", help="comma-separated client counts (default %(default)s)")
    ap.add_argument("--requests", type=positive_int, default=64, help="requests per level (default %(default)s)")
    ap.add_argument("--prompt-tokens", type=positive_int, default=64, help="uniform: prompt length in words")
    ap.add_argument("--prefix-tokens", type=positive_int, default=512, help="prefix: shared prefix length in words")
    ap.add_argument("--suffix-tokens", type=positive_int, default=32, help="prefix: unique suffix length in words")
    ap.add_argument("--max-tokens", type=positive_int, default=128)
    ap.add_argument("--ignore-eos", dest="ignore_eos", action="store_true", default=True,
                    help="send ignore_eos=true (default on)")
    ap.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                    help="do not send the non-standard ignore_eos field")
    ap.add_argument("--same-prompts-per-level", action="store_true",
                    help="send loadgen.py's exact prompts at every level (later levels may hit the prefix cache)")
    ap.add_argument("--warmup", type=int, default=2, help="sequential warm-up requests (default %(default)s)")
    ap.add_argument("--pid", type=int, default=0, help="server PID on this machine, for VmRSS/VmHWM")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per request (default %(default)s)")
    ap.add_argument("--level-timeout", type=float, default=1800.0,
                    help="no new requests start after this many seconds of a level (default %(default)s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json-out", default="", help="append one JSON object per level to this file")
    ap.add_argument("--label", default="", help="free text stored with each JSON record")
    args = ap.parse_args()

    url = urllib.parse.urlparse(args.base_url)
    if url.scheme != "http" or not url.hostname:
        ap.error("--base-url must look like http://127.0.0.1:PORT")
    if not is_loopback(url.hostname):
        ap.error("--base-url must be a loopback address (127.0.0.0/8, ::1, localhost)")
    try:
        levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    except ValueError:
        ap.error("--concurrency must be comma-separated integers")
    if not levels or min(levels) < 1 or max(levels) > 1024:
        ap.error("--concurrency levels must be in 1..1024")
    if args.pid and read_status(args.pid, "VmRSS") is None:
        ap.error("--pid %d: no such process (or no /proc)" % args.pid)
    if not 0 <= args.warmup <= 100:
        ap.error("--warmup must be in 0..100")

    print("# bench-serving %s %s workload=%s max_tokens=%d requests/level=%d ignore_eos=%s" % (
        args.base_url, args.endpoint, args.workload, args.max_tokens, args.requests, args.ignore_eos),
        flush=True)
    if args.warmup:
        wargs = argparse.Namespace(**vars(args))
        wargs.workload = "warmup"
        w = run_level(wargs, 1, ["Warm up. " + make_words(random.Random(-1), 16)] * args.warmup, 0)
        if w["ok"] == 0:
            print("warm-up failed: %s" % w["error_samples"], file=sys.stderr)
            sys.exit(1)

    print("| workload | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    any_err = False
    for li, c in enumerate(levels):
        r = run_level(args, c, build_prompts(args, args.requests, li), args.pid)
        r.update({"label": args.label, "base_url": args.base_url, "max_tokens": args.max_tokens,
                  "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:],
                  "args": vars(args)})
        print("| %s | " % r["workload"] + " | ".join(fmt(r.get(k), f) for _, k, f in COLUMNS) + " |",
              flush=True)
        if r["error_samples"]:
            any_err = True
            print("  errors: %s" % r["error_samples"], file=sys.stderr)
        if r["missing_done"]:
            print("  note: %d streams ended without data: [DONE]" % r["missing_done"], file=sys.stderr)
        if r["sent"] < r["requests"]:
            print("  note: level timeout hit, %d of %d requests sent" % (r["sent"], r["requests"]),
                  file=sys.stderr)
        if args.json_out:
            with open(args.json_out, "a") as f:
                f.write(json.dumps(r) + "\n")
    sys.exit(1 if any_err else 0)


if __name__ == "__main__":
    main()
