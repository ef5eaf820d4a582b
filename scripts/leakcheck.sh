#!/usr/bin/env bash
# The leak check of the compiled paths (docs/speedups.md): millions of messages through
# each of ganglion._speedups' paths over loopback and ganglion._busfast's (the plugin
# bus) over ipc, and rows of a SQLite log through ganglion._copyfast (the forwarder's
# encoder), memory and reference counts flat.
#
#   scripts/leakcheck.sh                      every path, 2,000,000 messages (about a minute)
#   scripts/leakcheck.sh --messages 10000000 --path keyed-aead
#
# Options go to `python -m tests.leaks` (--help lists them). Like scripts/test.sh, it
# installs first, insists on the compiled module (GANGLION_SPEEDUPS=require: a build that
# failed must not pass as checked) and runs inside a fresh network namespace with only
# loopback up when the machine allows it; its datagrams go to 127.0.0.1 either way.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh "dev,bench,pi,fast,secure,postgres,dashboard,mqtt"
export GANGLION_SPEEDUPS=require
export GANGLION_BUS_FAST=require  # the plugin bus's compiled loop, checked too
export GANGLION_COPY_FAST=require  # and the forwarder's encoder
CHECK=(.venv/bin/python -m tests.leaks "$@")

exec scripts/netns.sh ganglion-leaks checking -- "${CHECK[@]}"
