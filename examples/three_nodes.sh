#!/usr/bin/env bash
# The three-node demo, by hand: three sensor nodes and a tail, over loopback.
# On real Raspberry Pis run one `ganglion node` per Pi (without --iface lo) instead.
#
#   examples/three_nodes.sh [SECONDS]     (default 10; needs `ganglion` on PATH)
set -euo pipefail
seconds="${1:-10}"
port="${GANGLION_EXAMPLE_PORT:-47920}"
state="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$state"
}
trap cleanup EXIT INT TERM

common=(--iface lo --port "$port" --no-mdns --no-hardware --interval 0.5)
ganglion node --name brewery --state-dir "$state/brewery" --sim temperature --sim flow "${common[@]}" & pids+=($!)
ganglion node --name cellar --state-dir "$state/cellar" --sim temperature --sim humidity "${common[@]}" & pids+=($!)
ganglion node --name roof --state-dir "$state/roof" --sim pressure "${common[@]}" & pids+=($!)

sleep 2
ganglion types --iface lo --port "$port"
ganglion nodes --iface lo --port "$port" --no-mdns
ganglion tail sensors.Temperature sensors.Humidity sensors.Pressure sensors.Flow \
    --iface lo --port "$port" --timeout "$seconds"
