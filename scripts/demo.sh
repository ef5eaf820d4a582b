#!/usr/bin/env bash
# The main job: a demo network with simulated sensors, over loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh "fast,secure,dashboard"
exec .venv/bin/ganglion demo "$@"
