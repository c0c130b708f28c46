"""itest.py - the tiny runner the integration tests share (no pytest here):
check(name, fn) runs one test and records it, free_port() finds a loopback
port, results holds (name, error or None) for the closing `N passed, M failed`
line each test file prints. Imported from the test files' own folder."""
import socket
import sys
import time
import traceback

results = []          # (name, error or None)


def check(name, fn):
    t0 = time.monotonic()
    try:
        fn()
        results.append((name, None))
        print("ok %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
    except Exception as e:  # noqa: BLE001 - report any failure
        reason = str(e) or type(e).__name__
        if not isinstance(e, AssertionError):
            reason = "%s: %s" % (type(e).__name__, reason)
            traceback.print_exc(file=sys.stderr)
        results.append((name, reason))
        print("FAIL %s: %s" % (name, reason), flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
