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

exec scripts/netns.sh ganglion-fuzz fuzzing -- "${FUZZ[@]}"
