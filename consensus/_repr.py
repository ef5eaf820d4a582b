"""A bounded ``repr`` for values that came off the wire, used in error messages.

``f"{value!r:.60}"`` cuts the text only after building all of it: a CBOR graph of
shared references (or a list nested thousands deep) has a repr whose size doubles
per level, so a 300-byte datagram could make the error message take hours. This
builds at most a few levels and a few items of each, and never raises.
"""

from __future__ import annotations

import reprlib

__all__ = ["short"]

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4
_REPR.maxstring = _REPR.maxother = 40
_REPR.maxlong = 40


def short(value: object, limit: int = 60) -> str:
    """Return a repr of ``value`` of at most ``limit`` characters, built in bounded time."""
    if type(value) is int and value.bit_length() > 128:
        return f"<int of {value.bit_length()} bits>"  # repr() refuses > 4300 digits
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that raises (huge int inside a list, odd objects)
        text = f"<{type(value).__name__}>"
    return text[:limit]
