#!/usr/bin/env bash
# The test command. Installs everything first (outside any namespace, where the
# package registry is reachable), then runs pytest where it cannot reach the real
# network: inside a fresh network namespace with only loopback up when the machine
# allows it (root and `ip netns`), otherwise directly (every test binds to loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh "dev,bench,pi,fast,secure,postgres,dashboard,mqtt"
PYTEST=(.venv/bin/python -m pytest "$@")
# Where the compiled receive path can be built, the tests insist on it, so a build
# that failed quietly cannot pass as tested (ganglion/runtime/_accel.py).
if command -v cc >/dev/null 2>&1 && .venv/bin/python -c \
        "import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"; then
    export GANGLION_SPEEDUPS=require
    export GANGLION_BUS_FAST=require  # the plugin bus's drain loop (ganglion/runtime/_bus_accel.py)
fi

if [ "$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1; then
    ns="ganglion-test-$$"
    if ip netns add "$ns" 2>/dev/null; then
        cleanup() { ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; }
        trap cleanup EXIT INT TERM
        ip netns exec "$ns" ip link set lo up
        # A multicast route through lo: LCM (a benchmark peer) refuses to start without
        # one; ganglion's own sockets name 127.0.0.1 explicitly and do not need it.
        ip netns exec "$ns" ip route add 224.0.0.0/4 dev lo
        echo "running tests inside network namespace $ns (loopback only)"
        ip netns exec "$ns" env GANGLION_TEST_NETNS="$ns" "${PYTEST[@]}"
        exit $?
    fi
    echo "could not create a network namespace; running tests on loopback only" >&2
else
    echo "not root or no iproute2; running tests on loopback only" >&2
fi
"${PYTEST[@]}"
