#!/usr/bin/env bash
# Runs a command where it cannot reach the real network: inside a fresh network
# namespace with only loopback up when the machine allows it (root and `ip netns`),
# otherwise directly (every caller's traffic goes to 127.0.0.1 anyway). Shared by
# scripts/test.sh, scripts/fuzz.sh and scripts/leakcheck.sh.
#
#   scripts/netns.sh [--multicast-route] NAME VERB -- COMMAND...
#
# NAME prefixes the namespace (NAME-<pid>); VERB is what the messages say is being done
# ("fuzzing" gives "fuzzing inside network namespace ..."). --multicast-route adds a
# multicast route through lo (LCM, a benchmark peer, refuses to start without one;
# ganglion's own sockets name 127.0.0.1 and do not need it). Inside the namespace the
# command sees GANGLION_TEST_NETNS=<namespace>, which the tests that must not run on a
# shared network check. The namespace and whatever still runs in it are removed on exit.
set -euo pipefail
route=0
if [ "${1:-}" = "--multicast-route" ]; then
    route=1
    shift
fi
if [ "$#" -lt 4 ] || [ "$3" != "--" ]; then
    echo "usage: scripts/netns.sh [--multicast-route] NAME VERB -- COMMAND..." >&2
    exit 2
fi
name=$1
verb=$2
shift 3

if [ "$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1; then
    ns="$name-$$"
    if ip netns add "$ns" 2>/dev/null; then
        cleanup() { ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; ip netns del "$ns" 2>/dev/null || true; }
        trap cleanup EXIT INT TERM
        ip netns exec "$ns" ip link set lo up
        if [ "$route" = 1 ]; then
            ip netns exec "$ns" ip route add 224.0.0.0/4 dev lo
        fi
        echo "$verb inside network namespace $ns (loopback only)"
        ip netns exec "$ns" env GANGLION_TEST_NETNS="$ns" "$@"
        exit $?
    fi
    echo "could not create a network namespace; $verb on loopback only" >&2
else
    echo "not root or no iproute2; $verb on loopback only" >&2
fi
"$@"
