"""Sharing the network key with a one-time code: ``ganglion invite`` and ``ganglion join``.

The sans-IO parts live here: the code format (:mod:`.codes`), the framing
(:mod:`.frames`), the SPAKE2 exchange with key confirmation (:mod:`.exchange`),
the invite's budget of time, attempts and failures (:mod:`.invitation`), and the
key file a join writes (:mod:`.keyfile`). The sockets and mDNS are in
:mod:`ganglion.runtime.pairing`.

:mod:`.exchange` needs the optional packages ``spake2`` and ``cryptography``
(``pip install ganglion-net[secure]``); call :func:`require_secure` before
importing it, so a missing package is a one-line error and not a traceback.
"""

from __future__ import annotations

import importlib.util

from ganglion.errors import PairingUnavailable

__all__ = ["SECURE_PACKAGES", "require_secure"]

#: The import names the ``secure`` extra provides.
SECURE_PACKAGES = ("spake2", "cryptography")


def require_secure() -> None:
    """Check that the ``secure`` extra is installed.

    Raises:
        PairingUnavailable: ``spake2`` or ``cryptography`` cannot be imported; the
            message names the packages and the pip command.
    """
    missing = [name for name in SECURE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise PairingUnavailable(
            f"invite and join need {' and '.join(missing)}: "
            f"pip install 'ganglion-net[secure]'")
