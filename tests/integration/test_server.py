#!/usr/bin/env python3
"""test_server.py - integration tests of `sparrow serve` over real HTTP.

Starts daemons of the binary under test on free loopback ports and talks to
them with `requests`, raw sockets, the official `openai` npm client, promtool
and a sd_notify socket. Python standard library plus `requests` only.

    SPARROW_BIN     binary under test (default ./sparrow; BIN is used when
                    SPARROW_BIN is unset, as tests/run-tests.sh sets it)
    SPARROW_SHARED  data dir holding models/ (default ../shared)
    SPARROW_TESTS   optional comma-separated test names to run (default all)

Prints `ok NAME` or `FAIL NAME: reason` per test, then exactly one line
`N passed, M failed`; exits non-zero if anything failed. Every daemon is
killed at the end (try/finally and atexit). Under a sanitizer build (detected
from the binary) the load tests use fewer clients; every assertion stays.
"""
import atexit
import json
import os
import re
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

from itest import free_port

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.abspath(os.environ.get("SPARROW_BIN") or os.environ.get("BIN") or "./sparrow")
SHARED = os.path.abspath(os.environ.get("SPARROW_SHARED") or os.environ.get("SHARED") or "../shared")
MODELS = os.path.join(SHARED, "models")
STORIES = os.path.join(MODELS, "stories260K-f32.gguf")
SYNTH = os.path.join(MODELS, "synth15M-q8_0.gguf")
STORIES_NAME = "stories260K-f32"
SYNTH_NAME = "synth15M-q8_0"
OPENAI_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openai_client")


def _is_sanitized(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return b"__asan_init" in data
    except OSError:
        return False


ASAN = _is_sanitized(BIN)
SLOW = 4 if ASAN else 1                 # timeout multiplier
N_LOAD_CLIENTS = 50                      # test 6 (fits the ASan time budget too)
HEALTH_WAIT_S = 60 if ASAN else 30

LOG_DIR = tempfile.mkdtemp(prefix="sparrow-it-")
_daemons = []


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)




# --- daemons ----------------------------------------------------------------


class Daemon:
    """One `sparrow serve` on 127.0.0.1:<free port>, stderr to a log file."""

    def __init__(self, name, model, args=(), env_extra=None, env_drop=(), wait=True):
        self.name = name
        self.model = model
        self.args = list(args)
        self.proc = None
        self.port = None
        self.log_path = os.path.join(LOG_DIR, name + ".log")
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID")}
        # SPARROW_<SETTING> variables would change the daemon's settings.
        env = {k: v for k, v in env.items() if not k.startswith("SPARROW_") or k in ("SPARROW_BIN", "SPARROW_SHARED")}
        for k in env_drop:
            env.pop(k, None)
        env.update(env_extra or {})
        self.env = env
        for attempt in range(3):
            self.port = free_port()
            self._spawn()
            if not wait:
                return
            try:
                self.wait_ready()
                return
            except TestFailure:
                if self.proc.poll() is not None and "cannot listen" in self.log_tail() and attempt < 2:
                    continue    # someone took the port in between: retry on another
                raise

    def _spawn(self):
        self.log = open(self.log_path, "ab")
        cmd = [BIN, "serve", "-m", self.model, "--port", str(self.port), "--threads", "2"] + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=self.env)
        _daemons.append(self)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def log_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout=HEALTH_WAIT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure("daemon %s exited with %s before /health: %s" % (self.name, self.proc.returncode, self.log_tail()))
            try:
                r = requests.get(self.url + "/health", timeout=2)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TestFailure("daemon %s: /health not 200 within %d s: %s" % (self.name, timeout, self.log_tail()))

    def stop(self, timeout=15):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc and not self.log.closed:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def _kill_all():
    for d in _daemons:
        try:
            d.kill()
        except Exception:
            pass


atexit.register(_kill_all)
# A runner that times us out sends SIGTERM: unwind so that finally/atexit kill the daemons.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

_shared = {}


def daemon(key):
    """Lazily started daemons shared by several tests."""
    if key in _shared and _shared[key].proc.poll() is None:
        return _shared[key]
    if key == "main":       # stories260K, small body limit (test 7's 413)
        d = Daemon("main", STORIES, ["--max-body-bytes", "4096"])
    elif key == "auth":     # stories260K behind an API key
        d = Daemon("auth", STORIES, ["--api-key", "sk-test"])
    elif key == "synth":    # synth15M for load and cancellation
        d = Daemon("synth", SYNTH)
    else:
        raise KeyError(key)
    _shared[key] = d
    return d


# --- HTTP helpers ---------------------------------------------------------------


def post(d, path, body, timeout=60 * SLOW, headers=None):
    return requests.post(d.url + path, json=body, timeout=timeout, headers=headers)


def post_json(d, path, body, headers=None, timeout=60 * SLOW):
    r = post(d, path, body, timeout=timeout, headers=headers)
    check(r.status_code == 200, "%s -> %d: %s" % (path, r.status_code, r.text[:300]))
    return r.json()


class SSEResult:
    def __init__(self):
        self.status = None
        self.events = []        # decoded JSON objects, in order
        self.done = False       # saw `data: [DONE]`
        self.after_done = False # anything after [DONE]
        self.raw_errors = []    # events that were not JSON
        self.first_chunk_at = None
        self.error = None
        self.body = b""

    def text(self, kind):
        out = []
        for ev in self.events:
            for ch in ev.get("choices") or []:
                if kind == "chat":
                    out.append((ch.get("delta") or {}).get("content") or "")
                else:
                    out.append(ch.get("text") or "")
        return "".join(out)

    def usage(self):
        us = [ev["usage"] for ev in self.events if ev.get("usage")]
        return us[-1] if us else None

    def finish_reason(self):
        fr = [ch.get("finish_reason") for ev in self.events for ch in (ev.get("choices") or []) if ch.get("finish_reason")]
        return fr[-1] if fr else None


def parse_sse_stream(chunks, res, on_event=None):
    """Feeds byte chunks into res; `data: ...` events split on blank lines."""
    buf = b""
    for chunk in chunks:
        if not chunk:
            continue
        if res.first_chunk_at is None:
            res.first_chunk_at = time.monotonic()
        buf += chunk
        while b"\n\n" in buf:
            raw, buf = buf.split(b"\n\n", 1)
            for line in raw.split(b"\n"):
                if not line.startswith(b"data: "):
                    if line.strip():
                        res.raw_errors.append(line[:200])
                    continue
                data = line[6:]
                if res.done:
                    res.after_done = True
                if data == b"[DONE]":
                    res.done = True
                    continue
                try:
                    ev = json.loads(data)
                except ValueError:
                    res.raw_errors.append(data[:200])
                    continue
                res.events.append(ev)
                if on_event:
                    on_event(res, ev)
    if buf.strip():
        res.raw_errors.append(buf[:200])


def stream(d, path, body, headers=None, timeout=60 * SLOW, on_event=None):
    """POST with stream=true; returns an SSEResult (never raises on HTTP errors)."""
    res = SSEResult()
    try:
        with requests.post(d.url + path, json=body, stream=True, timeout=(10, timeout), headers=headers) as r:
            res.status = r.status_code
            if r.status_code != 200:
                res.body = r.content
                return res
            check(r.headers.get("Content-Type", "").startswith("text/event-stream"),
                  "stream Content-Type is %r" % r.headers.get("Content-Type"))
            parse_sse_stream(r.iter_content(chunk_size=None), res, on_event)
    except (requests.RequestException, TestFailure) as e:
        res.error = e
    return res


def check_stream_ok(res, what, n_tokens=None, usage_required=True):
    check(res.error is None, "%s: %s" % (what, res.error))
    check(res.status == 200, "%s: status %s: %s" % (what, res.status, res.body[:300]))
    check(not res.raw_errors, "%s: unparsable SSE lines %r" % (what, res.raw_errors[:3]))
    check(res.done, "%s: no `data: [DONE]` (events: %d)" % (what, len(res.events)))
    check(not res.after_done, "%s: data after [DONE]" % what)
    for ev in res.events:
        check("error" not in ev, "%s: error event %r" % (what, ev))
    if usage_required:
        u = res.usage()
        check(u is not None, "%s: no usage chunk with include_usage" % what)
        last = res.events[-1]
        check(last.get("usage") and last.get("choices") == [], "%s: the last event before [DONE] is not the usage chunk: %r" % (what, last))
        check(all(not ev.get("usage") for ev in res.events[:-1]), "%s: usage in a non-final chunk" % what)
        if n_tokens is not None:
            check(u["completion_tokens"] == n_tokens, "%s: completion_tokens %s, want %d" % (what, u["completion_tokens"], n_tokens))


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} of a Prometheus text body."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        labels = {}
        if "{" in name_labels:
            name, _, rest = name_labels.partition("{")
            rest = rest.rstrip("}")
            for part in rest.split(",") if rest else []:
                k, _, v = part.partition("=")
                labels[k] = v.strip('"')
        else:
            name = name_labels
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def metric(d, name, **labels):
    r = requests.get(d.url + "/metrics", timeout=10)
    check(r.status_code == 200, "/metrics -> %d" % r.status_code)
    m = parse_metrics(r.text)
    key = (name, frozenset(labels.items()))
    check(key in m, "metric %s%s missing from /metrics" % (name, labels or ""))
    return m[key]


def wait_idle(d, within_s, need_cancelled=0):
    """Polls /metrics until no KV block is used and nothing runs; returns the last values."""
    deadline = time.monotonic() + within_s
    vals = None
    while True:
        vals = (metric(d, "sparrow_kv_blocks_used"), metric(d, "sparrow_running_sequences"),
                metric(d, "sparrow_requests_finished_total", reason="cancelled"))
        if vals[0] == 0 and vals[1] == 0 and vals[2] >= need_cancelled:
            return vals
        if time.monotonic() > deadline:
            return vals
        time.sleep(0.05)


def sparrow_run(prompt, n, model=STORIES):
    p = subprocess.run([BIN, "run", "-m", model, "-p", prompt, "-n", str(n), "--temp", "0", "--no-echo"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120 * SLOW)
    check(p.returncode == 0, "sparrow run exited %d: %s" % (p.returncode, p.stderr.decode()[-500:]))
    out = p.stdout.decode("utf-8")
    check(out.endswith("\n"), "sparrow run output does not end in a newline")
    return out[:-1]


def chatml(messages):
    s = "".join("<|im_start|>%s\n%s<|im_end|>\n" % (m["role"], m["content"]) for m in messages)
    return s + "<|im_start|>assistant\n"


def tokenize(d, text, add_special=True, headers=None):
    return post_json(d, "/tokenize", {"content": text, "add_special": add_special}, headers=headers)["tokens"]


ONCE = "Once upon a time"
CHAT_MESSAGES = [{"role": "system", "content": "You are a storyteller."},
                 {"role": "user", "content": "Tell me a story about a cat."}]
CHAT_MAX_TOKENS = 48    # chat_stream.mjs sends the same request


# --- 1. completions match `sparrow run` ---------------------------------------------


def test_completions_match_run():
    d = daemon("main")
    want = sparrow_run(ONCE, 64)
    check(len(want) > 100, "sparrow run printed too little: %r" % want)
    body = {"model": STORIES_NAME, "prompt": ONCE, "max_tokens": 64, "temperature": 0}
    r = post_json(d, "/v1/completions", body)
    check(r["object"] == "text_completion", "object %r" % r["object"])
    check(r["model"] == STORIES_NAME, "model %r" % r["model"])
    got = r["choices"][0]["text"]
    check(got == want, "non-stream text differs from sparrow run:\n  server %r\n  run    %r" % (got, want))
    u = r["usage"]
    check(u["completion_tokens"] == 64 and u["prompt_tokens"] == 5 and u["total_tokens"] == 69, "usage %r" % u)
    check(r["choices"][0]["finish_reason"] == "length", "finish_reason %r" % r["choices"][0]["finish_reason"])

    s = stream(d, "/v1/completions", dict(body, stream=True, stream_options={"include_usage": True}))
    check_stream_ok(s, "stream", n_tokens=64)
    check(s.text("completion") == want, "stream text differs from sparrow run:\n  server %r\n  run    %r" % (s.text("completion"), want))
    check(s.usage()["prompt_tokens"] == 5, "stream usage %r" % s.usage())
    check(s.finish_reason() == "length", "stream finish_reason %r" % s.finish_reason())
    ids = {ev.get("id") for ev in s.events}
    check(len(ids) == 1, "stream chunks carry %d different ids" % len(ids))
    # Without include_usage there is no usage chunk.
    s2 = stream(d, "/v1/completions", dict(body, stream=True))
    check_stream_ok(s2, "stream without usage", usage_required=False)
    check(s2.usage() is None, "usage chunk sent without include_usage")
    check(s2.text("completion") == want, "stream (no usage) text differs")

    # Prefix cache: a 5-token prompt holds no full 16-token block.
    r2 = post_json(d, "/v1/completions", body)
    check(r2["choices"][0]["text"] == want, "second identical request gave other text")
    ptd = r2["usage"].get("prompt_tokens_details")
    check(ptd is not None and ptd.get("cached_tokens") == 0, "5-token prompt: prompt_tokens_details %r, want cached_tokens 0" % ptd)

    # A 40..47-token prompt: the second run reuses its two full blocks (32 tokens).
    words = ("Zed the brave frog hopped over a tall green wall and found a shiny blue stone near the old mill "
             "where the miller kept his bread and cheese every single day").split()
    prompt, n = "", 0
    for w in words:
        prompt = (prompt + " " + w).strip()
        n = len(tokenize(d, prompt))
        if n >= 40:
            break
    check(40 <= n <= 47, "could not build a 40..47-token prompt (got %d)" % n)
    lb = {"prompt": prompt, "max_tokens": 8, "temperature": 0}
    a = post_json(d, "/v1/completions", lb)
    b = post_json(d, "/v1/completions", lb)
    check(a["usage"]["prompt_tokens"] == n, "long prompt: prompt_tokens %d, /tokenize says %d" % (a["usage"]["prompt_tokens"], n))
    ca = a["usage"]["prompt_tokens_details"]["cached_tokens"]
    cb = b["usage"]["prompt_tokens_details"]["cached_tokens"]
    check(ca == 0, "first run of a fresh %d-token prompt reports cached_tokens %d" % (n, ca))
    check(cb == 32, "second run of a %d-token prompt reports cached_tokens %d, want 32" % (n, cb))
    check(a["choices"][0]["text"] == b["choices"][0]["text"], "cached run gave other text: %r vs %r" % (a["choices"][0]["text"], b["choices"][0]["text"]))
    want_long = sparrow_run(prompt, 8)
    check(a["choices"][0]["text"] == want_long, "long prompt text %r, sparrow run %r" % (a["choices"][0]["text"], want_long))


# --- 2. chat == completions on the rendered prompt ----------------------------------------


def test_chat_matches_completions():
    d = daemon("main")
    rendered = chatml(CHAT_MESSAGES)
    toks = tokenize(d, rendered, add_special=True)
    check(len(toks) > 10, "rendered prompt tokenized to %d tokens" % len(toks))
    comp = post_json(d, "/v1/completions", {"prompt": rendered, "max_tokens": CHAT_MAX_TOKENS, "temperature": 0})
    comp_tok = post_json(d, "/v1/completions", {"prompt": toks, "max_tokens": CHAT_MAX_TOKENS, "temperature": 0})
    want = comp["choices"][0]["text"]
    check(comp_tok["choices"][0]["text"] == want,
          "token-array prompt (from /tokenize add_special) gives %r, text prompt %r" % (comp_tok["choices"][0]["text"], want))
    check(comp["usage"]["prompt_tokens"] == len(toks), "completion prompt_tokens %d, /tokenize %d" % (comp["usage"]["prompt_tokens"], len(toks)))

    chat_body = {"model": STORIES_NAME, "messages": CHAT_MESSAGES, "max_tokens": CHAT_MAX_TOKENS, "temperature": 0}
    c = post_json(d, "/v1/chat/completions", chat_body)
    check(c["object"] == "chat.completion", "object %r" % c["object"])
    msg = c["choices"][0]["message"]
    check(msg["role"] == "assistant", "role %r" % msg["role"])
    check(msg["content"] == want, "chat text differs from completions on the rendered prompt:\n  chat %r\n  comp %r" % (msg["content"], want))
    check(c["usage"]["prompt_tokens"] == len(toks), "chat prompt_tokens %d, rendered prompt is %d tokens" % (c["usage"]["prompt_tokens"], len(toks)))
    check(c["usage"]["completion_tokens"] == comp["usage"]["completion_tokens"], "completion_tokens differ: %r vs %r" % (c["usage"], comp["usage"]))
    check(c["choices"][0]["finish_reason"] == comp["choices"][0]["finish_reason"], "finish_reason differs")

    s = stream(d, "/v1/chat/completions", dict(chat_body, stream=True, stream_options={"include_usage": True}))
    check_stream_ok(s, "chat stream", n_tokens=comp["usage"]["completion_tokens"])
    check(s.text("chat") == want, "chat stream text %r, completions %r" % (s.text("chat"), want))
    check(all(ev.get("object") == "chat.completion.chunk" for ev in s.events), "chunk object is not chat.completion.chunk")
    first = s.events[0]["choices"][0]["delta"]
    check(first.get("role") == "assistant", "first delta has no role assistant: %r" % first)
    check(s.usage()["prompt_tokens"] == len(toks), "chat stream usage %r" % s.usage())
    # The client-side rendering equals the server's: the same tokens.
    check(tokenize(d, rendered, add_special=True) == toks, "tokenize is not deterministic")


# --- 3. logprobs ------------------------------------------------------------------------


def test_logprobs():
    d = daemon("main")
    r = post_json(d, "/v1/completions", {"prompt": ONCE, "max_tokens": 16, "temperature": 0, "logprobs": 2})
    ch = r["choices"][0]
    lp = ch["logprobs"]
    check(isinstance(lp, dict), "logprobs is %r" % lp)
    n = r["usage"]["completion_tokens"]
    check(n == 16, "completion_tokens %d" % n)
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        check(isinstance(lp.get(key), list) and len(lp[key]) == n, "logprobs.%s has length %s, want %d" % (key, len(lp.get(key) or []), n))
    check("".join(lp["tokens"]) == ch["text"], "tokens do not join to the text: %r vs %r" % ("".join(lp["tokens"]), ch["text"]))
    off = 0
    for i in range(n):
        tok, l, top = lp["tokens"][i], lp["token_logprobs"][i], lp["top_logprobs"][i]
        check(isinstance(l, (int, float)) and l <= 0, "token %d logprob %r > 0" % (i, l))
        check(isinstance(top, dict) and 1 <= len(top) <= 2, "token %d: top_logprobs %r, want 2 entries" % (i, top))
        check(all(v <= 0 for v in top.values()), "token %d: positive top logprob %r" % (i, top))
        best = max(top, key=top.get)
        check(best == tok, "token %d: greedy token %r is not the top-1 %r (%r)" % (i, tok, best, top))
        check(abs(top[best] - l) < 1e-4, "token %d: logprob %r, top-1 logprob %r" % (i, l, top[best]))
        check(lp["text_offset"][i] == off, "token %d: text_offset %r, want %d" % (i, lp["text_offset"][i], off))
        off += len(tok.encode("utf-8"))
    # No logprobs asked: null.
    r0 = post_json(d, "/v1/completions", {"prompt": ONCE, "max_tokens": 4, "temperature": 0})
    check(r0["choices"][0]["logprobs"] is None, "logprobs without asking: %r" % r0["choices"][0]["logprobs"])
    # Chat logprobs: content list of n with top_logprobs of 2.
    c = post_json(d, "/v1/chat/completions", {"messages": CHAT_MESSAGES, "max_tokens": 8, "temperature": 0,
                                               "logprobs": True, "top_logprobs": 2})
    content = c["choices"][0]["logprobs"]["content"]
    check(len(content) == c["usage"]["completion_tokens"], "chat logprobs has %d entries for %d tokens" % (len(content), c["usage"]["completion_tokens"]))
    for i, e in enumerate(content):
        check(e["logprob"] <= 0 and len(e["top_logprobs"]) == 2, "chat logprob entry %d: %r" % (i, e))
        check(e["top_logprobs"][0]["token"] == e["token"] or e["top_logprobs"][0]["logprob"] <= e["logprob"] + 1e-4,
              "chat entry %d: greedy token is not top-1: %r" % (i, e))


# --- 4. models, tokenize/detokenize -------------------------------------------------------


def test_models_and_tokenize():
    d = daemon("main")
    r = requests.get(d.url + "/v1/models", timeout=10)
    check(r.status_code == 200, "/v1/models -> %d" % r.status_code)
    j = r.json()
    check(j.get("object") == "list" and [m["id"] for m in j["data"]] == [STORIES_NAME], "/v1/models %r" % j)
    text = "Once upon a time, there was a little girl named Lily. She said: \"Hi!\"\nThe end."
    toks = tokenize(d, text, add_special=False)
    toks_bos = tokenize(d, text, add_special=True)
    check(len(toks) > 5, "tokenize gave %r" % toks)
    check(toks_bos[1:] == toks and toks_bos[0] != toks[0], "add_special does not just prepend BOS: %r vs %r" % (toks_bos[:3], toks[:3]))
    back = post_json(d, "/detokenize", {"tokens": toks})["content"]
    # SentencePiece adds a dummy space before the first word; accept it.
    check(back in (text, " " + text), "detokenize(tokenize(x)) = %r, x = %r" % (back, text))
    back_bos = post_json(d, "/detokenize", {"tokens": toks_bos})["content"]
    check(back_bos == back, "detokenize with BOS = %r, without = %r" % (back_bos, back))
    wp = post_json(d, "/tokenize", {"content": text, "with_pieces": True})["tokens"]
    check([t["id"] for t in wp] == toks and "".join(t["piece"] for t in wp) == back, "with_pieces mismatch: %r" % wp[:4])


# --- 5. the official openai client ------------------------------------------------------------


def test_openai_node_client():
    d = daemon("auth")
    if not os.path.isdir(os.path.join(OPENAI_DIR, "node_modules", "openai")):
        try:
            p = subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=OPENAI_DIR, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise TestFailure("npm install failed: %s" % e)
        check(p.returncode == 0, "npm install exited %d (no network?): %s" % (p.returncode, p.stdout.decode()[-600:]))
    try:
        p = subprocess.run(["node", "chat_stream.mjs", str(d.port)], cwd=OPENAI_DIR, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60 * SLOW)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TestFailure("node chat_stream.mjs: %s" % e)
    check(p.returncode == 0, "node chat_stream.mjs exited %d: %s" % (p.returncode, p.stderr.decode()[-800:]))
    node_text = p.stdout.decode("utf-8")
    info = json.loads(p.stderr.decode().strip().splitlines()[-1])
    hdr = {"Authorization": "Bearer sk-test"}
    s = stream(d, "/v1/chat/completions", {"model": STORIES_NAME, "messages": CHAT_MESSAGES, "max_tokens": CHAT_MAX_TOKENS,
                                           "temperature": 0, "stream": True, "stream_options": {"include_usage": True}},
               headers=hdr)
    check_stream_ok(s, "python chat stream")
    check(len(node_text) > 0, "the openai client collected no text")
    check(node_text == s.text("chat"), "openai client text %r, python %r" % (node_text, s.text("chat")))
    check(info["usage"] and info["usage"]["completion_tokens"] == s.usage()["completion_tokens"],
          "openai client usage %r, python %r" % (info["usage"], s.usage()))


# --- 6. 50 concurrent streams -----------------------------------------------------------------


def test_concurrent_streams():
    d = daemon("synth")
    n = N_LOAD_CLIENTS
    results = [None] * n
    barrier = threading.Barrier(n, timeout=30)

    def client(i):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        results[i] = stream(d, "/v1/completions", {"prompt": "Client %d says hello" % i, "max_tokens": 32, "ignore_eos": True,
                                                   "temperature": 0, "stream": True, "stream_options": {"include_usage": True}},
                            timeout=120 * SLOW)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1, 180 * SLOW - (time.monotonic() - t0)))
    check(all(not t.is_alive() for t in threads), "some clients still running after %d s" % (180 * SLOW))
    bad = []
    for i, res in enumerate(results):
        try:
            check(res is not None, "no result")
            check_stream_ok(res, "client %d" % i, n_tokens=32)
        except TestFailure as e:
            bad.append(str(e))
    check(not bad, "%d/%d clients failed; first: %s" % (len(bad), n, bad[:3]))
    used, running, _ = wait_idle(d, 2.0)
    check(used == 0 and running == 0, "after the load: sparrow_kv_blocks_used %g, sparrow_running_sequences %g" % (used, running))
    check(metric(d, "sparrow_requests_total", route="completions", status="200") >= n, "requests_total{completions,200} < %d" % n)


# --- 7. malformed inputs, with a long stream running alongside -------------------------------


def _error_cases(d):
    long_user = "u" * 65
    big = {"prompt": "x" * 10240, "max_tokens": 4}
    C, T = "/v1/completions", "/v1/chat/completions"
    ok_msgs = [{"role": "user", "content": "hi"}]
    J = {"Content-Type": "application/json"}
    # (name, method, path, headers, raw body bytes or a JSON value, status, type, param, code)
    cases = [
        ("bad json", "POST", C, J, b'{"prompt": "x",', 400, "invalid_request_error", None, None),
        ("empty body", "POST", C, J, b"", 400, "invalid_request_error", None, None),
        ("json array body", "POST", C, J, [1, 2, 3], 400, "invalid_request_error", None, None),
        ("json string body", "POST", C, J, "prompt", 400, "invalid_request_error", None, None),
        ("invalid utf-8", "POST", C, J, b'{"prompt": "\xff\xfe"}', 400, "invalid_request_error", None, None),
        ("duplicate key", "POST", C, J, b'{"prompt": "a", "prompt": "b"}', 400, "invalid_request_error", None, None),
        ("prompt missing", "POST", C, J, {"max_tokens": 4}, 400, "invalid_request_error", "prompt", None),
        ("prompt number", "POST", C, J, {"prompt": 42}, 400, "invalid_request_error", "prompt", None),
        ("prompt object", "POST", C, J, {"prompt": {"a": 1}}, 400, "invalid_request_error", "prompt", None),
        ("two prompts", "POST", C, J, {"prompt": ["a", "b"]}, 400, "invalid_request_error", "prompt", None),
        ("empty token array", "POST", C, J, {"prompt": []}, 400, "invalid_request_error", "prompt", None),
        ("token id out of vocab", "POST", C, J, {"prompt": [1, 403, 512]}, 400, "invalid_request_error", "prompt", None),
        ("token id negative", "POST", C, J, {"prompt": [1, -1]}, 400, "invalid_request_error", "prompt", None),
        ("token id float", "POST", C, J, {"prompt": [1, 2.5]}, 400, "invalid_request_error", "prompt", None),
        ("max_tokens string", "POST", C, J, {"prompt": "a", "max_tokens": "10"}, 400, "invalid_request_error", "max_tokens", None),
        ("max_tokens 0", "POST", C, J, {"prompt": "a", "max_tokens": 0}, 400, "invalid_request_error", "max_tokens", None),
        ("max_tokens over limit", "POST", C, J, {"prompt": "a", "max_tokens": 5000}, 400, "invalid_request_error", "max_tokens", None),
        ("max_tokens over context", "POST", C, J, {"prompt": "a", "max_tokens": 4000}, 400, "invalid_request_error", "max_tokens", "context_length_exceeded"),
        ("prompt over context", "POST", C, J, {"prompt": [1] + [403] * 600, "max_tokens": 4}, 400, "invalid_request_error", "prompt", "context_length_exceeded"),
        ("text prompt over context", "POST", C, J, {"prompt": "a b " * 400, "max_tokens": 4}, 400, "invalid_request_error", "prompt", "context_length_exceeded"),
        ("temperature hot", "POST", C, J, {"prompt": "a", "temperature": "hot"}, 400, "invalid_request_error", "temperature", None),
        ("temperature negative", "POST", C, J, {"prompt": "a", "temperature": -1}, 400, "invalid_request_error", "temperature", None),
        ("top_p 2", "POST", C, J, {"prompt": "a", "top_p": 2}, 400, "invalid_request_error", "top_p", None),
        ("top_k negative", "POST", C, J, {"prompt": "a", "top_k": -1}, 400, "invalid_request_error", "top_k", None),
        ("frequency_penalty 3", "POST", C, J, {"prompt": "a", "frequency_penalty": 3}, 400, "invalid_request_error", "frequency_penalty", None),
        ("n 2", "POST", C, J, {"prompt": "a", "n": 2}, 400, "invalid_request_error", "n", None),
        ("stream yes", "POST", C, J, {"prompt": "a", "stream": "yes"}, 400, "invalid_request_error", "stream", None),
        ("stream_options string", "POST", C, J, {"prompt": "a", "stream": True, "stream_options": "x"}, 400, "invalid_request_error", "stream_options", None),
        ("include_usage string", "POST", C, J, {"prompt": "a", "stream": True, "stream_options": {"include_usage": "y"}}, 400, "invalid_request_error", "include_usage", None),
        ("stop 5", "POST", C, J, {"prompt": "a", "stop": 5}, 400, "invalid_request_error", "stop", None),
        ("stop list of 5", "POST", C, J, {"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_request_error", "stop", None),
        ("stop empty string", "POST", C, J, {"prompt": "a", "stop": [""]}, 400, "invalid_request_error", "stop", None),
        ("stop list with number", "POST", C, J, {"prompt": "a", "stop": ["a", 1]}, 400, "invalid_request_error", "stop", None),
        ("logprobs 99", "POST", C, J, {"prompt": "a", "logprobs": 99}, 400, "invalid_request_error", "logprobs", None),
        ("logprobs string", "POST", C, J, {"prompt": "a", "logprobs": "2"}, 400, "invalid_request_error", "logprobs", None),
        ("echo true", "POST", C, J, {"prompt": "a", "echo": True}, 400, "invalid_request_error", "echo", None),
        ("seed x", "POST", C, J, {"prompt": "a", "seed": "x"}, 400, "invalid_request_error", "seed", None),
        ("ignore_eos string", "POST", C, J, {"prompt": "a", "ignore_eos": "true"}, 400, "invalid_request_error", "ignore_eos", None),
        ("user too long", "POST", C, J, {"prompt": "a", "user": long_user}, 400, "invalid_request_error", "user", None),
        ("user number", "POST", C, J, {"prompt": "a", "user": 7}, 400, "invalid_request_error", "user", None),
        ("model number", "POST", C, J, {"prompt": "a", "model": 3}, 400, "invalid_request_error", "model", None),
        ("unknown model", "POST", C, J, {"prompt": "a", "model": "gpt-4"}, 404, "invalid_request_error", "model", "model_not_found"),
        ("chat unknown model", "POST", T, J, {"messages": ok_msgs, "model": "gpt-4"}, 404, "invalid_request_error", "model", "model_not_found"),
        ("messages missing", "POST", T, J, {"max_tokens": 4}, 400, "invalid_request_error", "messages", None),
        ("messages empty", "POST", T, J, {"messages": []}, 400, "invalid_request_error", "messages", None),
        ("messages object", "POST", T, J, {"messages": {"role": "user"}}, 400, "invalid_request_error", "messages", None),
        ("message not object", "POST", T, J, {"messages": ["hi"]}, 400, "invalid_request_error", "messages", None),
        ("message bad role", "POST", T, J, {"messages": [{"role": "wizard", "content": "hi"}]}, 400, "invalid_request_error", "messages", None),
        ("message role missing", "POST", T, J, {"messages": [{"content": "hi"}]}, 400, "invalid_request_error", "messages", None),
        ("message content number", "POST", T, J, {"messages": [{"role": "user", "content": 5}]}, 400, "invalid_request_error", "messages", None),
        ("message image part", "POST", T, J, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400, "invalid_request_error", "messages", None),
        ("chat max_completion_tokens string", "POST", T, J, {"messages": ok_msgs, "max_completion_tokens": "5"}, 400, "invalid_request_error", "max_completion_tokens", None),
        ("chat top_logprobs without logprobs", "POST", T, J, {"messages": ok_msgs, "top_logprobs": 2}, 400, "invalid_request_error", "top_logprobs", None),
        ("chat top_logprobs 99", "POST", T, J, {"messages": ok_msgs, "logprobs": True, "top_logprobs": 99}, 400, "invalid_request_error", "top_logprobs", None),
        ("chat logprobs number", "POST", T, J, {"messages": ok_msgs, "logprobs": 3}, 400, "invalid_request_error", "logprobs", None),
        ("chat stream yes", "POST", T, J, {"messages": ok_msgs, "stream": "yes"}, 400, "invalid_request_error", "stream", None),
        ("unknown route", "POST", "/v1/nope", J, {"prompt": "a"}, 404, "invalid_request_error", None, None),
        ("unknown route GET", "GET", "/", {}, None, 404, "invalid_request_error", None, None),
        ("GET on completions", "GET", C, {}, None, 405, "invalid_request_error", None, None),
        ("GET on chat", "GET", T, {}, None, 405, "invalid_request_error", None, None),
        ("POST on models", "POST", "/v1/models", J, {}, 405, "invalid_request_error", None, None),
        ("DELETE on completions", "DELETE", C, {}, None, 405, "invalid_request_error", None, None),
        ("body over max_body_bytes", "POST", C, J, big, 413, "invalid_request_error", None, None),
        ("chunked body over max_body_bytes", "POST", C, J, ("chunked", json.dumps(big).encode()), 413, "invalid_request_error", None, None),
        ("tokenize content number", "POST", "/tokenize", J, {"content": 5}, 400, "invalid_request_error", "content", None),
        ("tokenize bad json", "POST", "/tokenize", J, b"{", 400, "invalid_request_error", None, None),
        ("detokenize out of vocab", "POST", "/detokenize", J, {"tokens": [1, 100000]}, 400, "invalid_request_error", "tokens", None),
        ("detokenize not array", "POST", "/detokenize", J, {"tokens": "abc"}, 400, "invalid_request_error", "tokens", None),
    ]
    return cases


def _send_case(d, method, path, headers, body):
    url = d.url + path
    if isinstance(body, tuple) and body[0] == "chunked":
        data = body[1]
        gen = (data[i:i + 1024] for i in range(0, len(data), 1024))
        return requests.request(method, url, headers=headers, data=gen, timeout=30 * SLOW)
    if body is None:
        return requests.request(method, url, headers=headers, timeout=30 * SLOW)
    if isinstance(body, bytes):
        return requests.request(method, url, headers=headers, data=body, timeout=30 * SLOW)
    return requests.request(method, url, headers=headers, data=json.dumps(body).encode(), timeout=30 * SLOW)


def _check_error_response(r, status, etype, param, code, what):
    check(r.status_code == status, "%s: status %d, want %d: %s" % (what, r.status_code, status, r.text[:200]))
    check(r.headers.get("Content-Type", "").startswith("application/json"), "%s: Content-Type %r" % (what, r.headers.get("Content-Type")))
    try:
        j = r.json()
    except ValueError:
        raise TestFailure("%s: body is not JSON: %r" % (what, r.text[:200]))
    e = j.get("error") if isinstance(j, dict) else None
    check(isinstance(e, dict), "%s: no error object: %r" % (what, j))
    check(set(e) >= {"message", "type", "param", "code"}, "%s: error keys %r" % (what, sorted(e)))
    check(isinstance(e["message"], str) and e["message"].strip(), "%s: empty message" % what)
    check(e["type"] == etype, "%s: type %r, want %r" % (what, e["type"], etype))
    if param is not None:
        check(e["param"] == param, "%s: param %r, want %r (%s)" % (what, e["param"], param, e["message"]))
    if code is not None:
        check(e["code"] == code, "%s: code %r, want %r" % (what, e["code"], code))
    return e


def test_malformed_inputs():
    d = daemon("main")
    long_body = {"prompt": ONCE, "max_tokens": 400, "ignore_eos": True, "temperature": 0, "stream": True,
                 "stream_options": {"include_usage": True}}
    # The long stream reads 20 events, then waits until every bad request has
    # been answered before reading the rest: it is mid-response throughout.
    cases_done = threading.Event()
    bg = {}

    def on_event(res, ev):
        if len(res.events) == 20:
            bg["paused"] = time.monotonic()
            cases_done.wait(timeout=120 * SLOW)

    def long_client():
        bg["res"] = stream(d, "/v1/completions", long_body, timeout=120 * SLOW, on_event=on_event)

    t = threading.Thread(target=long_client, daemon=True)
    t.start()
    deadline = time.monotonic() + 30 * SLOW
    while "paused" not in bg and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    failures = []
    try:
        check("paused" in bg, "the long stream did not deliver 20 events (%r)" % (bg["res"].error if "res" in bg else None))
        cases = _error_cases(d)
        check(len(cases) >= 30, "only %d cases" % len(cases))
        for (name, method, path, headers, body, status, etype, param, code) in cases:
            try:
                r = _send_case(d, method, path, headers, body)
                _check_error_response(r, status, etype, param, code, name)
            except TestFailure as e:
                failures.append(str(e))
            except requests.RequestException as e:
                failures.append("%s: %s: %s" % (name, type(e).__name__, e))
        check(t.is_alive(), "the long stream ended while the bad requests ran")
    finally:
        cases_done.set()
        t.join(timeout=120 * SLOW)
    check(not failures, "%d bad-input cases failed:\n    %s" % (len(failures), "\n    ".join(failures)))
    res = bg.get("res")
    check(res is not None, "long stream thread did not finish")
    check_stream_ok(res, "the long stream", n_tokens=400)
    # Untouched: the same request alone gives the same text.
    solo = stream(d, "/v1/completions", long_body)
    check_stream_ok(solo, "the long stream alone", n_tokens=400)
    check(res.text("completion") == solo.text("completion"), "the long stream's text changed when bad requests ran alongside")
    check(metric(d, "sparrow_requests_total", route="completions", status="400") >= 30, "requests_total{completions,400} too low")
    check(metric(d, "sparrow_requests_total", route="other", status="404") >= 2, "requests_total{other,404} too low")


def test_auth():
    d = daemon("auth")
    C = "/v1/completions"
    body = {"prompt": ONCE, "max_tokens": 4}
    cases = [
        ("no Authorization", {}, 401),
        ("wrong key", {"Authorization": "Bearer sk-wrong"}, 401),
        ("key prefix", {"Authorization": "Bearer sk-tes"}, 401),
        ("key with suffix", {"Authorization": "Bearer sk-test2"}, 401),
        ("empty bearer", {"Authorization": "Bearer "}, 401),
        ("basic scheme", {"Authorization": "Basic c2stdGVzdA=="}, 401),
        ("bare key", {"Authorization": "sk-test"}, 401),
    ]
    fails = []
    for name, hdr, status in cases:
        for path, b in ((C, body), ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}), ("/tokenize", {"content": "x"})):
            try:
                r = requests.post(d.url + path, json=b, headers=hdr, timeout=30)
                e = _check_error_response(r, status, "authentication_error", None, None, "%s %s" % (name, path))
                check(r.headers.get("WWW-Authenticate", "").startswith("Bearer"), "%s: no WWW-Authenticate: Bearer" % name)
                del e
            except TestFailure as e:
                fails.append(str(e))
    r = requests.get(d.url + "/v1/models", timeout=10)
    if r.status_code != 401:
        fails.append("/v1/models without a key -> %d, want 401" % r.status_code)
    check(not fails, "\n    ".join(fails))
    ok = requests.post(d.url + C, json=body, headers={"Authorization": "Bearer sk-test"}, timeout=30)
    check(ok.status_code == 200, "valid key -> %d: %s" % (ok.status_code, ok.text[:200]))
    check(requests.get(d.url + "/health", timeout=10).status_code == 200, "/health needs no key")
    check(requests.get(d.url + "/metrics", timeout=10).status_code == 200, "/metrics needs no key")
    check(requests.get(d.url + "/v1/models", headers={"Authorization": "Bearer sk-test"}, timeout=10).status_code == 200,
          "/v1/models with the key")


# --- 8. per-client queue cap ---------------------------------------------------------------


def test_per_client_queue_cap():
    d = Daemon("queue", SYNTH, ["--max-running", "1", "--max-queue-per-client", "2"])
    try:
        n_long = 100 if ASAN else 200
        body = {"prompt": "Alice asks a long question", "max_tokens": n_long, "ignore_eos": True, "temperature": 0, "user": "alice"}
        results = [None] * 4
        barrier = threading.Barrier(4, timeout=30)

        def client(i):
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
            try:
                results[i] = requests.post(d.url + "/v1/completions", json=body, timeout=180 * SLOW)
            except requests.RequestException as e:
                results[i] = e

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        # Wait for the first refusal, then have another client ask while alice's queue is full.
        deadline = time.monotonic() + 30 * SLOW
        while time.monotonic() < deadline and not any(isinstance(r, requests.Response) and r.status_code == 429 for r in results):
            if all(r is not None for r in results):
                break
            time.sleep(0.01)
        alice_busy = any(t.is_alive() for t in threads)
        bob = requests.post(d.url + "/v1/completions", json={"prompt": "Bob", "max_tokens": 4, "user": "bob"}, timeout=180 * SLOW)
        for t in threads:
            t.join(timeout=180 * SLOW)
        check(all(isinstance(r, requests.Response) for r in results), "alice's requests: %r" % results)
        codes = sorted(r.status_code for r in results)
        check(codes.count(429) >= 1, "no 429 among alice's 4 requests: %r" % codes)
        check(set(codes) <= {200, 429}, "alice's statuses %r" % codes)
        for r in results:
            if r.status_code == 429:
                _check_error_response(r, 429, "rate_limit_error", None, None, "alice's refused request")
                check(r.headers.get("Retry-After"), "429 without Retry-After")
            else:
                check(r.json()["usage"]["completion_tokens"] == n_long, "alice's accepted request: %r" % r.json()["usage"])
        check(alice_busy, "alice's requests were all done before bob asked (the test did not overlap)")
        check(bob.status_code == 200, "bob (another user) got %d while alice was capped: %s" % (bob.status_code, bob.text[:200]))
    finally:
        d.stop()


# --- 9. client disconnect mid-stream -----------------------------------------------------------


def test_disconnect_mid_stream():
    d = daemon("synth")
    before = metric(d, "sparrow_requests_finished_total", reason="cancelled")
    body = json.dumps({"prompt": "A long story", "max_tokens": 400, "ignore_eos": True, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", d.port), timeout=30 * SLOW)
    try:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        got = b""
        deadline = time.monotonic() + 30 * SLOW
        while got.count(b"data: ") < 3 and time.monotonic() < deadline:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        check(got.startswith(b"HTTP/1.1 200"), "stream start: %r" % got[:200])
        check(got.count(b"data: ") >= 3, "fewer than 3 events before the deadline: %r" % got[-200:])
        check(b"[DONE]" not in got, "the stream finished before we could disconnect")
        check(metric(d, "sparrow_running_sequences") >= 1, "nothing running while the stream is open")
    finally:
        s.close()
    t_close = time.monotonic()
    used, running, cancelled = wait_idle(d, 2.0, need_cancelled=before + 1)
    check(used == 0 and running == 0 and cancelled >= before + 1,
          "%.1f s after the disconnect: kv_blocks_used %g, running %g, finished{cancelled} %g (was %g)"
          % (time.monotonic() - t_close, used, running, cancelled, before))
    # The server still serves.
    r = post_json(d, "/v1/completions", {"prompt": "Still there?", "max_tokens": 4})
    check(r["usage"]["completion_tokens"] >= 1, "after the disconnect: %r" % r)


# --- 10. promtool ----------------------------------------------------------------------------------


def test_promtool_metrics():
    d = daemon("main")
    # Some traffic first, so that labelled series exist.
    post_json(d, "/v1/completions", {"prompt": ONCE, "max_tokens": 4, "user": 'we"ird\\user'})
    requests.get(d.url + "/nope", timeout=10)
    r = requests.get(d.url + "/metrics", timeout=10)
    check(r.status_code == 200, "/metrics -> %d" % r.status_code)
    check(r.headers.get("Content-Type", "").startswith("text/plain"), "/metrics Content-Type %r" % r.headers.get("Content-Type"))
    for name in ("sparrow_kv_blocks_used", "sparrow_running_sequences", "sparrow_requests_total",
                 "sparrow_requests_finished_total", "sparrow_time_to_first_token_seconds_bucket"):
        check(name in r.text, "%s missing from /metrics" % name)
    promtool = None
    for p in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/bin"]:
        if os.access(os.path.join(p, "promtool"), os.X_OK):
            promtool = os.path.join(p, "promtool")
            break
    check(promtool is not None, "promtool not found (Debian package prometheus; see scripts/install-deps.sh)")
    p = subprocess.run([promtool, "check", "metrics"], input=r.content, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    check(p.returncode == 0, "promtool check metrics exited %d:\n%s" % (p.returncode, p.stdout.decode()[-1500:]))


# --- 11. SIGTERM under load --------------------------------------------------------------------------


def test_sigterm_drain():
    drain_s = 20
    d = Daemon("drain", SYNTH, ["--drain-timeout-s", str(drain_s)])
    try:
        n = 8
        results = [None] * n
        firsts = [threading.Event() for _ in range(n)]

        def client(i):
            def ev(res, e):
                firsts[i].set()
            results[i] = stream(d, "/v1/completions", {"prompt": "Drain test %d" % i, "max_tokens": 64, "ignore_eos": True,
                                                       "stream": True, "stream_options": {"include_usage": True}},
                                timeout=60 * SLOW, on_event=ev)
            firsts[i].set()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30 * SLOW
        for e in firsts:
            e.wait(timeout=max(0.1, deadline - time.monotonic()))
        had_first = [i for i in range(n) if firsts[i].is_set() and (results[i] is None or results[i].events)]
        check(len(had_first) >= 1, "no stream got a first chunk")
        in_flight = [i for i in had_first if results[i] is None]
        t_term = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        # /health turns 503 and new generations are refused while draining.
        health, fresh = [], []
        while time.monotonic() - t_term < 5 * SLOW and d.proc.poll() is None and (503 not in health or not fresh):
            try:
                health.append(requests.get(d.url + "/health", timeout=5).status_code)
            except requests.RequestException:
                health.append("refused")
            if 503 in health and not fresh:
                try:
                    fresh.append(requests.post(d.url + "/v1/completions", json={"prompt": "late", "max_tokens": 4}, timeout=10))
                except requests.ConnectionError:
                    fresh.append("refused")
        for t in threads:
            t.join(timeout=60 * SLOW)
        try:
            rc = d.proc.wait(timeout=drain_s + 5)
        except subprocess.TimeoutExpired:
            raise TestFailure("daemon still running %d s after SIGTERM" % (drain_s + 5))
        t_exit = time.monotonic() - t_term
        check(rc == 0, "exit status %d after SIGTERM: %s" % (rc, d.log_tail()))
        check(in_flight, "every stream was done before SIGTERM (the test did not overlap)")
        bad = []
        for i in had_first:
            try:
                check_stream_ok(results[i], "stream %d" % i, n_tokens=64)
            except TestFailure as e:
                bad.append(str(e))
        check(not bad, "streams in flight at SIGTERM did not complete: %s" % bad[:3])
        check(503 in health, "/health during the drain: %r (no 503)" % health[:10])
        # (the first probe may beat the signal's delivery; once 503, it stays so)
        check(200 not in health[health.index(503):], "/health went back to 200 during the drain: %r" % health[:10])
        check(fresh, "could not send a request during the drain")
        for f in fresh:
            if f != "refused":
                _check_error_response(f, 503, "server_error", None, None, "request during the drain")
        # After exit, nothing listens.
        try:
            requests.get(d.url + "/health", timeout=2)
            raise TestFailure("the port still answers after the daemon exited")
        except requests.ConnectionError:
            pass
        check(t_exit < drain_s + 5, "exit took %.1f s" % t_exit)
    finally:
        d.kill()


# --- 12. sd_notify ----------------------------------------------------------------------------------


def test_sd_notify():
    tmp = tempfile.mkdtemp(prefix="sp-notify-", dir="/tmp")
    path = os.path.join(tmp, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    d = None
    try:
        d = Daemon("notify", STORIES, env_extra={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"},
                   env_drop=("WATCHDOG_PID",), wait=False)
        msgs = []

        def read_until(pred, timeout):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    data = sock.recv(4096).decode("utf-8", "replace")
                except socket.timeout:
                    break
                msgs.append((time.monotonic(), data))
                if pred(data):
                    return True
            return False

        check(read_until(lambda m: "READY=1" in m.split("\n"), HEALTH_WAIT_S), "no READY=1 (got %r): %s" % ([m for _, m in msgs][:5], d.log_tail()))
        t_ready = time.monotonic()
        r = requests.get(d.url + "/health", timeout=5)
        check(r.status_code == 200, "/health after READY=1 -> %d" % r.status_code)
        n_before = len(msgs)
        read_until(lambda m: False, 3.0)
        wd = [t for t, m in msgs[n_before:] if "WATCHDOG=1" in m.split("\n") and t - t_ready <= 3.0]
        check(len(wd) >= 2, "%d WATCHDOG=1 within 3 s of READY (got %r)" % (len(wd), [m for _, m in msgs][-6:]))
        check(not any("READY=1" in m.split("\n") for _, m in msgs[n_before:]), "READY=1 sent twice")
        d.proc.send_signal(signal.SIGTERM)
        check(read_until(lambda m: "STOPPING=1" in m.split("\n"), 10 * SLOW), "no STOPPING=1 after SIGTERM (last %r)" % [m for _, m in msgs][-4:])
        rc = d.proc.wait(timeout=30)
        check(rc == 0, "exit status %d" % rc)
    finally:
        if d:
            d.kill()
        sock.close()
        try:
            os.unlink(path)
            os.rmdir(tmp)
        except OSError:
            pass


# --- 13. a non-stream client that leaves is cancelled too ---------------------------------------


def test_disconnect_non_stream():
    d = Daemon("nsdisc", SYNTH)
    try:
        body = json.dumps({"prompt": "A long story", "max_tokens": 1500, "ignore_eos": True}).encode()
        s = socket.create_connection(("127.0.0.1", d.port), timeout=30 * SLOW)
        try:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            deadline = time.monotonic() + 30 * SLOW
            while metric(d, "sparrow_generation_tokens_total") < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            check(metric(d, "sparrow_running_sequences") == 1, "the request is not running")
        finally:
            s.close()
        t_close = time.monotonic()
        used, running, cancelled = wait_idle(d, 2.0, need_cancelled=1)
        check(used == 0 and running == 0 and cancelled >= 1,
              "%.1f s after a non-stream client closed its connection: kv_blocks_used %g, running %g, "
              "finished{cancelled} %g (the generation goes on for nobody)" % (time.monotonic() - t_close, used, running, cancelled))
    finally:
        d.kill()


# --- 14. SIGTERM when requests outlast drain_timeout_s -------------------------------------------------


def test_drain_deadline():
    trials = 6
    bad = []
    for trial in range(trials):
        d = Daemon("deadline%d" % trial, SYNTH, ["--max-running", "1", "--drain-timeout-s", "1"])
        try:
            res = [None] * 4

            def streamer(i):
                res[i] = stream(d, "/v1/completions", {"prompt": "s%d" % i, "max_tokens": 1900, "ignore_eos": True, "stream": True,
                                                       "stream_options": {"include_usage": True}},
                                timeout=30 * SLOW)

            def whole(i):
                try:
                    res[i] = requests.post(d.url + "/v1/completions", json={"prompt": "w%d" % i, "max_tokens": 1900, "ignore_eos": True},
                                           timeout=30 * SLOW)
                except requests.RequestException as e:
                    res[i] = e

            threads = [threading.Thread(target=streamer, args=(i,), daemon=True) for i in (0, 1)] + \
                      [threading.Thread(target=whole, args=(i,), daemon=True) for i in (2, 3)]
            for t in threads:
                t.start()
            # SIGTERM once one request generates and the others wait (parked connections).
            deadline = time.monotonic() + 30 * SLOW
            while time.monotonic() < deadline and not (metric(d, "sparrow_generation_tokens_total") >= 2 and
                                                       metric(d, "sparrow_queued_requests") >= 1):
                time.sleep(0.02)
            time.sleep(0.05 * trial)
            t0 = time.monotonic()
            d.proc.send_signal(signal.SIGTERM)
            try:
                rc = d.proc.wait(timeout=1 + 5)
            except subprocess.TimeoutExpired:
                rc = "still running after 6 s"
            for t in threads:
                t.join(timeout=10)
            if rc != 0:
                bad.append("trial %d: exit %s %.1f s after SIGTERM: %s" % (trial, rc, time.monotonic() - t0,
                                                                        d.log_tail(2).replace("\n", " | ")))
            if any(t.is_alive() for t in threads):
                bad.append("trial %d: a client still waits after the daemon exited" % trial)
        finally:
            d.kill()
    check(not bad, "%d/%d trials failed:\n    %s" % (len(bad), trials, "\n    ".join(bad)))


# --- runner ---------------------------------------------------------------------------------------------

# --- client identity behind a proxy ------------------------------------------------------------


def test_trusted_proxies():
    """X-Forwarded-For names the client only when the peer is a trusted proxy,
    and then only its last address (the one the proxy appended)."""
    def clients(d):
        text = requests.get(d.url + "/metrics", timeout=10).text
        return set(re.findall(r'^sparrow_client_prompt_tokens_total\{client="([^"]*)"\}', text, re.M))

    body = {"prompt": ONCE, "max_tokens": 2}
    xff = {"X-Forwarded-For": "6.6.6.6, 10.1.2.3"}
    d = Daemon("proxy-trusted", STORIES, ["--trusted-proxies", "10.0.0.9, 127.0.0.1"])
    try:
        for hdr in (xff, {"X-Forwarded-For": "not-an-address"}, {}):
            r = requests.post(d.url + "/v1/completions", json=body, headers=hdr, timeout=30)
            check(r.status_code == 200, "completion -> %d: %s" % (r.status_code, r.text[:200]))
        r = requests.post(d.url + "/v1/completions", json=dict(body, user="carol"), headers=xff, timeout=30)
        check(r.status_code == 200, "completion with user -> %d" % r.status_code)
        got = clients(d)
        check(got == {"10.1.2.3", "127.0.0.1", "carol"},
              "trusted proxy: clients %r, want the forwarded 10.1.2.3, the peer for a bad/missing header, carol by user" % got)
    finally:
        d.stop()
    d = Daemon("proxy-untrusted", STORIES, ["--trusted-proxies", "127.0.0.2"])
    try:
        r = requests.post(d.url + "/v1/completions", json=body, headers=xff, timeout=30)
        check(r.status_code == 200, "completion -> %d" % r.status_code)
        got = clients(d)
        check(got == {"127.0.0.1"}, "untrusted peer: clients %r, want only the peer 127.0.0.1" % got)
    finally:
        d.stop()


TESTS = [
    test_completions_match_run,
    test_chat_matches_completions,
    test_logprobs,
    test_models_and_tokenize,
    test_openai_node_client,
    test_concurrent_streams,
    test_malformed_inputs,
    test_auth,
    test_per_client_queue_cap,
    test_disconnect_mid_stream,
    test_promtool_metrics,
    test_sigterm_drain,
    test_sd_notify,
    test_disconnect_non_stream,
    test_drain_deadline,
    test_trusted_proxies,
]


def main():
    only = [s.strip() for s in os.environ.get("SPARROW_TESTS", "").split(",") if s.strip()]
    tests = [t for t in TESTS if not only or t.__name__ in only or t.__name__[5:] in only]
    print("# binary %s%s, models in %s, logs in %s" % (BIN, " (sanitizer build)" if ASAN else "", MODELS, LOG_DIR), flush=True)
    passed = failed = 0
    try:
        if not os.access(BIN, os.X_OK):
            print("FAIL setup: %s is not executable" % BIN)
            failed += 1
            tests = []
        for t in tests:
            name = t.__name__[5:]
            t0 = time.monotonic()
            try:
                t()
                passed += 1
                print("ok %s (%.1f s)" % (name, time.monotonic() - t0), flush=True)
            except TestFailure as e:
                failed += 1
                print("FAIL %s: %s" % (name, str(e).strip().replace("\n", "\n    ")), flush=True)
            except Exception as e:
                failed += 1
                print("FAIL %s: %s: %s" % (name, type(e).__name__, e), flush=True)
                traceback.print_exc(limit=4, file=sys.stdout)
        # A daemon that died under the tests (a sanitizer report, a crash) fails too.
        for key, d in list(_shared.items()):
            rc = d.stop()
            if rc != 0:
                failed += 1
                print("FAIL daemon %s exited with %s: %s" % (key, rc, d.log_tail()), flush=True)
    finally:
        _kill_all()
    if failed == 0:
        import shutil
        shutil.rmtree(LOG_DIR, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
