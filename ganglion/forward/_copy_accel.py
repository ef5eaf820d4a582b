"""The forwarder's compiled batch encoder (``ganglion._copyfast``), when built and wanted.

Theory of operation: ``ganglion._copyfast`` (``ganglion/_c/copyfast.c``) is an optional C
extension, built at install time like ``ganglion._speedups`` and skipped where there is
no C compiler. Its ``Reader`` reads a batch of the log with the plain row query
(:data:`ganglion.forward.pgcopy.READ_ROWS`) on a read-only connection of its own and
writes the binary COPY stream itself, the GIL released, calling the SQLite library the
``sqlite3`` module loaded (found in ``/proc/self/maps``, so Linux only). The Python path
(:data:`~ganglion.forward.pgcopy.SELECT_TUPLES`, :func:`~ganglion.forward.pgcopy.payload`)
stays the reference: the tests compare the two byte for byte, and a batch the compiled
path is not sure of goes the Python way.

``GANGLION_COPY_FAST`` chooses: ``auto`` (the default: use it when it loads), ``off``
(pure Python), or ``require`` (fail when it cannot be used).
"""

from __future__ import annotations

import os
from types import ModuleType

#: The C module's interface version this Python side expects (``COPYFAST_ABI``).
ABI = 1
_CHOICES = ("auto", "off", "require")


def libsqlite_path() -> str | None:
    """The file of the SQLite library this process has loaded (the sqlite3 module's),
    or None if unknown (a Python with SQLite linked in statically)."""
    import sqlite3  # noqa: F401  (loads libsqlite3, so that it shows in the map)

    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as fh:
            for line in fh:
                path = line.rstrip("\n").partition("/")[2]
                if path and os.path.basename(path).startswith("libsqlite3") and ".so" in path:
                    return "/" + path
    except OSError:
        return None
    return None


def _candidates() -> list[str]:
    """Where SQLite's functions may be: its shared library, else the ``_sqlite3`` module
    (a Python built with SQLite linked in may export them from there)."""
    found = [path] if (path := libsqlite_path()) is not None else []
    try:
        import _sqlite3
    except ImportError:
        return found
    module = getattr(_sqlite3, "__file__", None)
    return found + ([module] if module else [])


def load(choice: str | None = None) -> ModuleType | None:
    """The compiled module with SQLite resolved, or None for the pure-Python path.

    Args:
        choice: ``auto``, ``off`` or ``require``; None reads ``GANGLION_COPY_FAST``.

    Raises:
        ValueError: ``choice`` is none of those.
        ImportError: ``require``, and the module is missing, stale, or cannot find SQLite.
    """
    choice = choice if choice is not None else os.environ.get("GANGLION_COPY_FAST", "auto")
    choice = choice.strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"GANGLION_COPY_FAST must be one of {', '.join(_CHOICES)}, "
                         f"not {choice!r}")
    if choice == "off":
        return None
    problem = ""
    try:
        from ganglion import _copyfast
    except ImportError as exc:
        problem = f"ganglion._copyfast is not built ({exc}); reinstall (pip install -e .)"
    else:
        if getattr(_copyfast, "ABI", None) != ABI:
            problem = "ganglion._copyfast is stale; reinstall (pip install -e .)"
        else:
            problem = "the SQLite library of the sqlite3 module is not in /proc/self/maps"
            for path in _candidates():
                try:
                    _copyfast.load(path)
                except OSError as exc:
                    problem = str(exc)
                else:
                    problem = ""
                    break
    if problem:
        if choice == "require":
            raise ImportError(f"GANGLION_COPY_FAST=require, but {problem}")
        return None
    module: ModuleType = _copyfast
    return module
