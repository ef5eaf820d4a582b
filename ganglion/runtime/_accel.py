"""The compiled light-traffic paths (``ganglion._speedups``), when built and wanted.

Theory of operation: ``ganglion._speedups`` (sources in ``ganglion/_c/``) is an
optional C extension, built at install time where a C compiler and the Python
headers are present and skipped
otherwise (``pyproject.toml``: ``optional = true``). Everything it does has a
pure-Python reference that gives the same results (``MulticastReceiver._drain``,
``Incoming._deliver``, and on the publish side the Python steps of
:meth:`Publisher.publish <ganglion.runtime._publishing.Publisher.publish>`:
``Outgoing.add`` with ``Packer.build_one`` and ``Packer.add``); it exists because on a wake-up from sleep, with
the CPU caches cold, the Python paths cost tens of microseconds of latency per
message, and because encoding into a filling datagram is most of a busy publisher's
time.

Keyed traffic takes the same paths: the cryptography stays in Python (``hashlib``'s
BLAKE2b, ``cryptography``'s ChaCha20-Poly1305), called once per *datagram* by the
compiled code: the receive lane hands a keyed datagram to its stream's opener and
reads the clear datagram that comes back as an unsigned one; the send lane builds a
lone datagram in clear and hands it to the packer's sealer (``Packer._seal``), and a
batch is sealed by :meth:`Packer.build <ganglion.wire.Packer.build>` as before.

``GANGLION_SPEEDUPS`` chooses: ``auto`` (the default: use it when it imports),
``off`` (pure Python), or ``require`` (fail at import when it is missing or stale:
the test command sets it, so a build that silently failed cannot pass as tested).
"""

from __future__ import annotations

import os
from types import ModuleType

#: The C module's interface version this Python side expects (``SPEEDUPS_ABI``).
ABI = 13
_CHOICES = ("auto", "off", "require")


def load(choice: str | None = None) -> ModuleType | None:
    """The compiled module, or None for the pure-Python path.

    Args:
        choice: ``auto``, ``off`` or ``require``; None reads ``GANGLION_SPEEDUPS``.

    Raises:
        ValueError: ``choice`` is none of those.
        ImportError: ``require`` and the module is missing or was built for another
            version of this package (reinstall: ``pip install -e .``).
    """
    choice = (choice if choice is not None else os.environ.get("GANGLION_SPEEDUPS", "auto"))
    choice = choice.strip().lower() or "auto"
    if choice not in _CHOICES:
        raise ValueError(f"GANGLION_SPEEDUPS must be one of {', '.join(_CHOICES)}, not {choice!r}")
    if choice == "off":
        return None
    try:
        from ganglion import _speedups
    except ImportError as exc:
        if choice == "require":
            raise ImportError(f"GANGLION_SPEEDUPS=require, but ganglion._speedups is not built "
                              f"({exc}); install a C compiler and the Python headers, then "
                              f"reinstall (pip install -e .)") from exc
        return None
    if getattr(_speedups, "ABI", None) != ABI:
        if choice == "require":
            raise ImportError(f"ganglion._speedups is stale (ABI {getattr(_speedups, 'ABI', '?')},"
                              f" expected {ABI}); reinstall (pip install -e .)")
        return None
    module: ModuleType = _speedups
    return module


#: The module every receiver uses, chosen once at import.
speedups: ModuleType | None = load()
