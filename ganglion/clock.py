"""Clock sanity: is this machine's wall clock synchronised (by NTP, chrony, timesyncd)?

A Raspberry Pi has no real-time clock: until NTP has set it after boot, its wall
clock starts from the last saved time (fake-hwclock) or 1970, and the timestamps
on its readings are wrong. ganglion flags every datagram sent while the clock is
not synchronised (wire flag bit 1) so receivers and the logger can tell.

Detection: Linux's ``adjtimex(2)`` called read-only (``modes = 0``) returns the
kernel's clock state; ``TIME_ERROR`` (5) means the kernel's ``STA_UNSYNC`` status
bit is set, i.e. no time daemon has disciplined the clock. chrony, ntpd and
systemd-timesyncd all clear it once synchronised. Elsewhere (no ``adjtimex``),
the state is unknown and reported as synchronised, so nothing is flagged falsely.
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache

_TIME_ERROR = 5
#: Larger than ``struct timex`` on every Linux ABI (208 bytes on 64-bit); zeroed, so
#: ``modes`` (its first field) is 0 and the call only reads.
_TIMEX_BYTES = 512


@cache
def _adjtimex() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        func = _libc().adjtimex
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_void_p]
    func.restype = ctypes.c_int
    return func


def _libc() -> ctypes.CDLL:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)  # glibc: no search needed
    except OSError:
        # ctypes.util only here: it imports shutil, tempfile, bz2 and lzma (about 1 MB).
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("c"), use_errno=True)


def kernel_clock_state() -> int | None:
    """Return ``adjtimex``'s clock state (0..5), or None where it cannot be read."""
    func = _adjtimex()
    if func is None:
        return None
    buf = ctypes.create_string_buffer(_TIMEX_BYTES)
    state = func(buf)
    return None if state < 0 else int(state)


def clock_synchronized() -> bool:
    """True unless the kernel says no time daemon has synchronised the clock."""
    return kernel_clock_state() != _TIME_ERROR
