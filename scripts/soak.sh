#!/usr/bin/env bash
# soak.sh - bounded soak of `sparrow serve` on loopback: several clients send a
# mix of valid greedy (checked against reference texts), streamed, chat,
# invalid and abandoned requests; RSS, open fds and threads are sampled every
# 5 s. Fails if an accepted request is lost or wrong, the daemon does not exit
# 0 on SIGTERM, or a resource grows (last third of the run vs the first).
# Usage: scripts/soak.sh [--minutes N (10)] [--model stories260K-f32|synth15M-q8_0|PATH]
#                        [--clients N (6)] [--bin ./sparrow] [--out build/soak]
# Output: a markdown report on stdout; samples in OUT/samples.csv, daemon log in OUT/daemon.log.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/soak.py "$@"
