#!/usr/bin/env bash
# Create (or reuse) the project's virtualenv in .venv and install ganglion into it
# with the given extras. Re-installs only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=".venv/.installed-${extras:-core}"
# The optional C extension (ganglion/_c/) is built by the install: again when its
# sources changed, or when it is missing and a compiler is there to build it.
stale_ext() {
    [ -n "$(find ganglion/_c -newer "$stamp" -print -quit 2>/dev/null)" ] && return 0
    ! compgen -G "ganglion/_speedups*.so" >/dev/null && command -v cc >/dev/null 2>&1
}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || stale_ext; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    if [ -n "$extras" ]; then
        .venv/bin/python -m pip install --quiet -e ".[$extras]"
    else
        .venv/bin/python -m pip install --quiet -e .
    fi
    touch "$stamp"
fi
