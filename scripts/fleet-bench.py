#!/usr/bin/env python3
"""fleet-bench.py - run the fair-bench workload (scripts/fair-bench.py) through
a load balancer in front of several sparrow replicas, and measure the fleet.

  fleet-bench.py --lb http://127.0.0.1:8080 \
      --replicas http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 \
      [--label bounded] [--json-out F] [fair-bench flags: --duration 60 --clients ... ]

The requests go to --lb; every /metrics reading is the sum over --replicas
(fair-bench's fetch_metrics is replaced), so "out tok/s", "hit rate" and the
per-client service are fleet figures. Added: the load imbalance, max/mean over
replicas of the completions each served during the run (sparrow_requests_total
{route="completions"} deltas), and each replica's share.
Prints fair-bench's report plus one line "fleet: ..."; --json-out writes it all.
Python 3 standard library only. scripts/fleet-bench.sh runs it per LB mode.
"""
import importlib.util
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("fair_bench", os.path.join(here, "fair-bench.py"))
fb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fb)

_single = fb.fetch_metrics


def main():
    argv = sys.argv[1:]

    def take(flag, default=None):
        if flag in argv:
            i = argv.index(flag)
            v = argv[i + 1]
            del argv[i:i + 2]
            return v
        return default
    lb = take("--lb")
    replicas = take("--replicas")
    label = take("--label", "fleet")
    json_out = take("--json-out")
    if not lb or not replicas:
        sys.exit("usage: fleet-bench.py --lb URL --replicas URL,URL,... [--label L] [--json-out F] [fair-bench flags]")
    reps = [u.rstrip("/") for u in replicas.split(",") if u]

    def fleet_metrics(base, timeout=10):
        tot = {"global": {}, "client": {}}
        for u in reps:
            m = _single(u, timeout)
            for k, v in m["global"].items():
                tot["global"][k] = tot["global"].get(k, 0.0) + v
            for name, per in m["client"].items():
                d = tot["client"].setdefault(name, {})
                for c, v in per.items():
                    d[c] = d.get(c, 0.0) + v
        return tot
    fb.fetch_metrics = fleet_metrics

    def served():
        out = []
        for u in reps:
            with fb.urllib.request.urlopen(u + "/metrics", timeout=10) as r:
                text = r.read().decode()
            n = 0.0
            for line in text.splitlines():
                if line.startswith('sparrow_requests_total{route="completions"'):
                    n += float(line.split()[-1])
            out.append(n)
        return out

    ap = fb.argparse.ArgumentParser()
    for a, kw in (("--duration", dict(type=float, default=60.0)), ("--requests", dict(type=int)),
                  ("--seed", dict(type=int, default=1)), ("--clients", dict(default=fb.DEFAULT_CLIENTS)),
                  ("--docs", dict(type=int, default=2)), ("--doc-tokens", dict(type=int, default=384)),
                  ("--suffix-tokens", dict(type=int, default=16)), ("--max-tokens", dict(type=int, default=64)),
                  ("--sample-s", dict(type=float, default=0.5)), ("--drain-s", dict(type=float, default=10.0)),
                  ("--request-timeout", dict(type=float, default=300.0))):
        ap.add_argument(a, **kw)
    ap.add_argument("--no-warmup", dest="warmup", action="store_false")
    args = ap.parse_args(argv)

    # count from the start of the measurement (after fair-bench's warm-up,
    # when it starts its /metrics sampler)
    s0 = []
    base_sampler = fb.Sampler

    class Sampler(base_sampler):
        def start(self):
            s0.extend(served())
            super().start()
    fb.Sampler = Sampler
    r = fb.run_workload(lb.rstrip("/"), args)
    s1 = served()
    per = [b - a for a, b in zip(s0, s1)]
    mean = sum(per) / len(per) if per else 0.0
    r["replica_completions"] = per
    r["imbalance"] = (max(per) / mean) if mean > 0 else float("nan")
    fb.print_report(r, label)
    print("fleet: completions per replica %s, max/mean %.2f" % ([int(x) for x in per], r["imbalance"]))
    if json_out:
        with open(json_out, "w") as f:
            json.dump({"label": label, "args": vars(args), "run": r}, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
