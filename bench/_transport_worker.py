"""One publisher or subscriber process of the transport benchmark.

Theory of operation: the orchestrator runs ``python _transport_worker.py CONFIG``
where CONFIG is a :class:`RoleConfig` as JSON. The process speaks a tiny line
protocol on stdout (everything else goes to stderr):

* a subscriber prints ``READY`` once it has joined, then one JSON line with its
  result when its stop rule fires;
* a publisher prints one JSON line with its result when it has sent everything;
* either prints one JSON line ``{"error": ...}`` instead, if its system cannot run
  here (module missing, sockets refused), and exits with status 3.

The system module is imported only after the config is parsed, so a missing
optional system (ganglion not built yet, no ``lcm``) is reported, not a crash.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

from _transport_role import RoleConfig

#: Exit status when the system under test cannot run here.
EXIT_UNAVAILABLE = 3

_MODULES = {"raw": "_transport_raw", "ganglion": "_transport_ganglion",
            "ganglion+key": "_transport_ganglion", "ganglion+aead": "_transport_ganglion",
            "ganglion+hist": "_transport_ganglion",
            "lcm": "_transport_lcm"}


def main(argv: list[str]) -> int:
    """Run the role described by ``argv[0]`` and print its result line.

    Args:
        argv: the command-line arguments after the program name.

    Returns:
        0 on success, 2 on a bad config, :data:`EXIT_UNAVAILABLE` if the system failed.
    """
    if len(argv) != 1:
        print("usage: _transport_worker.py CONFIG_JSON", file=sys.stderr)
        return 2
    try:
        cfg = RoleConfig.from_arg(argv[0])
    except ValueError as exc:
        _emit({"error": f"bad config: {exc}"})
        return 2
    try:
        backend = importlib.import_module(_MODULES[cfg.system])
        result: dict[str, Any]
        if cfg.role == "sub":
            result = backend.run_subscriber(cfg, _ready)
        else:
            result = backend.run_publisher(cfg)
    except Exception as exc:  # report any failure of the system under test as data
        _emit({"error": f"{cfg.system} {cfg.role}: {type(exc).__name__}: {exc}"})
        return EXIT_UNAVAILABLE
    _emit({"result": result})
    return 0


def _ready() -> None:
    """Tell the orchestrator the subscriber has joined."""
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def _emit(obj: dict[str, Any]) -> None:
    """Write one JSON line to stdout and flush it."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
