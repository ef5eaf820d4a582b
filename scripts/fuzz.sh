#!/usr/bin/env bash
# Long fuzz runs of a real node's receive paths (docs/fuzzing.md), on demand.
#
#   scripts/fuzz.sh                          every path, 60 s each, a random seed
#   scripts/fuzz.sh --path control --seconds 600 --rounds 5
#   GANGLION_FUZZ_SEED=123 scripts/fuzz.sh   replay a seed
#
# Options go to `python -m tests.fuzz` (--help lists them); GANGLION_FUZZ_SECONDS and
# GANGLION_FUZZ_SEED give the defaults. Like scripts/test.sh, it installs first and then
# runs inside a fresh network namespace with only loopback up when the machine allows
# it (root and `ip netns`), so not one forged datagram can reach the real network.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh "dev,bench,pi,fast,secure,postgres,dashboard,mqtt"
ARGS=(--seconds "${GANGLION_FUZZ_SECONDS:-60}")
if [ -n "${GANGLION_FUZZ_SEED:-}" ]; then
    ARGS+=(--seed "$GANGLION_FUZZ_SEED")
fi
FUZZ=(.venv/bin/python -m tests.fuzz "${ARGS[@]}" "$@")

if [ "$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1; then
    ns="ganglion-fuzz-$$"
    if ip netns add "$ns" 2>/dev/null; then
        cleanup() { ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; }
        trap cleanup EXIT INT TERM
        ip netns exec "$ns" ip link set lo up
        echo "fuzzing inside network namespace $ns (loopback only)"
        ip netns exec "$ns" "${FUZZ[@]}"
        exit $?
    fi
    echo "could not create a network namespace; fuzzing on loopback only" >&2
else
    echo "not root or no iproute2; fuzzing on loopback only" >&2
fi
"${FUZZ[@]}"
