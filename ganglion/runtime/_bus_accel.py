"""The plugin bus's compiled drain loop (``ganglion._busfast``), when built and wanted.

Theory of operation: ``ganglion._busfast`` (``ganglion/_c/busfast.c``) is an optional C
extension, built at install time like ``ganglion._speedups`` and skipped where there is
no C compiler. It runs :func:`~ganglion.runtime._bus_drain.drain_python`'s loop on the
same libzmq sockets,
calling the libzmq that pyzmq loaded (found in ``/proc/self/maps``, so Linux only), and
leaves every message it is not sure of to the Python path. Nothing else changes: the
Python path stays the reference, and the tests compare the two message by message.

``GANGLION_BUS_FAST`` chooses: ``auto`` (the default: use it when it loads), ``off``
(pure Python), or ``require`` (fail when it cannot be used).
"""

from __future__ import annotations

import os
from types import ModuleType

#: The C module's interface version this Python side expects (``BUSFAST_ABI``).
ABI = 3
_CHOICES = ("auto", "off", "require")


def libzmq_path() -> str | None:
    """The file of the libzmq this process has loaded (pyzmq's), or None if unknown."""
    import zmq  # noqa: F401  (loads libzmq, so that it shows in the map)

    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as fh:
            for line in fh:
                path = line.rstrip("\n").partition("/")[2]
                if path and "libzmq" in os.path.basename(path) and ".so" in path:
                    return "/" + path
    except OSError:
        return None
    return None


def _candidates() -> list[str]:
    """Where libzmq's functions may be: its shared library, else pyzmq's backend module
    (a pyzmq built with libzmq linked in statically exports them from there)."""
    found = [path] if (path := libzmq_path()) is not None else []
    try:
        from zmq.backend.cython import _zmq
    except ImportError:
        return found
    backend = getattr(_zmq, "__file__", None)
    return found + ([backend] if backend else [])


def load(choice: str | None = None) -> ModuleType | None:
    """The compiled module with libzmq resolved, or None for the pure-Python path.

    Args:
        choice: ``auto``, ``off`` or ``require``; None reads ``GANGLION_BUS_FAST``.

    Raises:
        ValueError: ``choice`` is none of those.
        ImportError: ``require``, and the module is missing, stale, or cannot find libzmq.
    """
    choice = (choice if choice is not None else os.environ.get("GANGLION_BUS_FAST", "auto"))
    choice = choice.strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"GANGLION_BUS_FAST must be one of {', '.join(_CHOICES)}, not {choice!r}")
    if choice == "off":
        return None
    problem = ""
    try:
        from ganglion import _busfast
    except ImportError as exc:
        problem = f"ganglion._busfast is not built ({exc}); reinstall (pip install -e .)"
    else:
        if getattr(_busfast, "ABI", None) != ABI:
            problem = "ganglion._busfast is stale; reinstall (pip install -e .)"
        else:
            problem = "the libzmq pyzmq loaded is not in /proc/self/maps"
            for path in _candidates():
                try:
                    _busfast.load(path)
                except OSError as exc:
                    problem = str(exc)
                else:
                    problem = ""
                    break
    if problem:
        if choice == "require":
            raise ImportError(f"GANGLION_BUS_FAST=require, but {problem}")
        return None
    module: ModuleType = _busfast
    return module
