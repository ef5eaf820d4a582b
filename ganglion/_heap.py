"""Give the C heap's free pages back to the system once a node has started.

Why: starting ``ganglion node`` imports some 400 modules and generates the codecs of
its message types (``exec`` of generated source). The C allocator's heap grows to
hold what that needs for a moment, and the pages those temporaries freed stay
mapped in the middle of the heap, resident and counted in the node's RSS for as long
as it runs. glibc's ``malloc_trim(0)`` hands free pages back (measured: 0.9 MB of
an idle node's 37 MB on asyncio's loop, as much on uvloop; bench/node.py "RSS idle").
Only the ``ganglion node`` command calls it, once, shortly after start; a program
that embeds a node is left alone. Where there is no ``malloc_trim`` (musl, macOS)
nothing happens.
"""

from __future__ import annotations

import sys

__all__ = ["trim_heap"]


def trim_heap() -> bool:
    """Return the C heap's free pages to the system; True if ``malloc_trim`` ran."""
    if not sys.platform.startswith("linux"):
        return False
    from ganglion.clock import _libc  # ctypes and libc, already loaded by the node

    try:
        trim = _libc().malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True
