#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv in .venv and install ganglion into it
# with the given extras (comma-separated). Installs only when something is missing:
# an extra not installed yet, a newer pyproject.toml, or a changed C extension.
#
# One stamp, .venv/.installed, lists the extras installed (one a line); its mtime is
# when. A set of extras already covered needs nothing, so `make demo` ("fast,secure,dashboard")
# after `make test` ("dev,bench,pi,fast,secure,postgres,dashboard,mqtt") runs offline. A re-install installs
# the union of what was there and what is wanted, so it never narrows the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=".venv/.installed"
# Stamps of the older one-per-extras-string scheme (.installed-<extras>|core) are
# folded into the one stamp, keeping the newest one's time.
if [ ! -f "$stamp" ] && compgen -G ".venv/.installed-*" >/dev/null; then
    newest=$(ls -t .venv/.installed-* | head -n 1)
    for old in .venv/.installed-*; do
        name="${old#.venv/.installed-}"
        [ "$name" = core ] || tr ',' '\n' <<<"$name"
    done | sed '/^$/d' | sort -u >"$stamp"
    touch -r "$newest" "$stamp"
fi
words() { tr ', ' '\n\n' | sed '/^$/d' | sort -u; }
wanted=$(printf '%s' "${1:-}" | words)
have=$( { [ -f "$stamp" ] && cat "$stamp"; } | words || true)
missing=$(comm -23 <(printf '%s\n' "$wanted" | sed '/^$/d') <(printf '%s\n' "$have" | sed '/^$/d'))
# The optional C extension (ganglion/_c/) is built by the install: again when its
# sources changed, or when it is missing and a compiler is there to build it.
stale_ext() {
    [ -n "$(find ganglion/_c -newer "$stamp" -print -quit 2>/dev/null)" ] && return 0
    ! compgen -G "ganglion/_speedups*.so" >/dev/null && command -v cc >/dev/null 2>&1
}
if [ ! -f "$stamp" ] || [ -n "$missing" ] || [ pyproject.toml -nt "$stamp" ] || stale_ext; then
    all=$(printf '%s\n%s\n' "$wanted" "$have" | words)
    extras=$(printf '%s\n' "$all" | paste -sd, -)
    .venv/bin/python -m pip install --quiet --upgrade pip
    if [ -n "$extras" ]; then
        .venv/bin/python -m pip install --quiet -e ".[$extras]"
    else
        .venv/bin/python -m pip install --quiet -e .
    fi
    printf '%s\n' "$all" | sed '/^$/d' >"$stamp"
fi
