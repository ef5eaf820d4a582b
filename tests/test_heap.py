"""``ganglion._heap.trim_heap`` hands the C heap's free pages back (what ``ganglion node``
does once after start), in a fresh process so the numbers are its own."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ganglion._heap import trim_heap

#: Frees 60 MB of malloc'd blocks below a block kept at the top of the heap (so
#: glibc's automatic trim at the top cannot return them), then trims.
SCRIPT = textwrap.dedent("""
    import re
    from ganglion._heap import trim_heap

    def rss():
        return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read()).group(1))

    blocks = [bytes(600) for _ in range(100_000)]  # > 512 bytes: malloc, not pymalloc
    keep = bytes(600)
    del blocks
    before = rss()
    ran = trim_heap()
    print(ran, before, rss(), keep[:0])
""")


def _glibc() -> bool:
    return sys.platform.startswith("linux") and "glibc" in " ".join(
        __import__("platform").libc_ver())


@pytest.mark.skipif(not _glibc(), reason="malloc_trim is glibc's")
def test_trim_gives_freed_heap_pages_back() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    ran, before, after = out[0], int(out[1]), int(out[2])
    assert ran == "True"
    assert before - after > 20_000, (before, after)  # KiB: most of the 60 MB freed


def test_without_malloc_trim_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert trim_heap() is False
