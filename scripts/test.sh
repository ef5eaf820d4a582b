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

exec scripts/netns.sh --multicast-route ganglion-test "running tests" -- "${PYTEST[@]}"
