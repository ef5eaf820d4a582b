"""Whether a path leaks: memory and reference counts before and after many messages.

A path is run once to warm up (first datagrams of a stream take the Python path, caches
and free lists fill), then in ``rounds`` equal rounds. After the first measured round
the baseline is taken; after the last, the same figures again. A leak of one object
per message shows as that many more allocated blocks (``sys.getallocatedblocks``: every
Python object, whether made in C or in Python), a leaked buffer as resident memory,
and a reference taken and never given back (which costs no memory and shows nowhere
else) as a changed reference count of an object every message passes through.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Most allocated blocks a run may gain after its baseline (free lists, caches of
#: bounded size); a leak of one object per message over 100,000 messages is far above.
BLOCKS_SLACK = 2_000
#: Most resident memory, in KiB, a run may gain after its baseline.
RSS_SLACK_KIB = 2_048


class Runnable(Protocol):
    sent: int
    delivered: int
    fallbacks: int
    errors: list[str]

    def run(self, count: int) -> None: ...
    def watched(self) -> dict[str, object]: ...
    def close(self) -> None: ...


def rss_kib() -> int:
    """This process's resident memory now, in KiB (from /proc; the peak where not Linux)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclass
class Result:
    """What one path did and whether it held steady."""

    name: str
    messages: int
    seconds: float
    blocks: int  # allocated blocks gained after the baseline
    rss_kib: int  # resident memory gained after the baseline
    refs: dict[str, int] = field(default_factory=dict)  # reference counts that moved
    fallbacks: int = 0  # messages the Python paths took after the baseline
    delivered: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def leaks(self) -> list[str]:
        """Why the path looks like it leaks (empty: it does not)."""
        found = []
        if self.blocks > BLOCKS_SLACK:
            found.append(f"{self.blocks} more allocated blocks")
        if self.rss_kib > RSS_SLACK_KIB:
            found.append(f"{self.rss_kib} KiB more resident memory")
        found.extend(f"{name}: {delta:+d} references" for name, delta in self.refs.items())
        return found

    def line(self, problems: list[str]) -> str:
        """The report line, with ``problems`` (nothing: "flat")."""
        rate = self.messages / self.seconds if self.seconds else 0.0
        verdict = f"FAILED: {'; '.join(problems)}" if problems else "flat"
        return (f"{self.name:<26} {self.messages:>9,} msgs {rate:>10,.0f}/s  "
                f"blocks {self.blocks:+7,}  rss {self.rss_kib:+6,} KiB  "
                f"python {self.fallbacks:>7,}  {verdict}")


def _refcounts(watched: dict[str, object]) -> dict[str, int]:
    return {name: sys.getrefcount(obj) for name, obj in watched.items() if obj is not None}


def measure(name: str, make: Callable[[], Runnable], messages: int, *, rounds: int = 4,
            warmup: int = 2_000) -> Result:
    """Run ``messages`` messages through the path ``make`` builds and measure it.

    Args:
        name: the path's name, for the report.
        make: builds the path (a :class:`Runnable`).
        messages: messages after the warm-up, in ``rounds`` rounds; the first round is
            not measured (the baseline is taken after it).
        rounds: at least 2.
        warmup: messages before the first round.
    """
    path = make()
    try:
        per_round = max(1, messages // rounds)
        path.run(warmup)
        path.run(per_round)
        gc.collect()
        base_refs = _refcounts(path.watched())
        base_blocks, base_rss = sys.getallocatedblocks(), rss_kib()
        base_fallbacks, base_delivered = path.fallbacks, path.delivered
        start = time.perf_counter()
        for _ in range(rounds - 1):
            path.run(per_round)
        seconds = time.perf_counter() - start
        gc.collect()
        blocks, rss = sys.getallocatedblocks() - base_blocks, rss_kib() - base_rss
        refs = {k: v - base_refs[k] for k, v in _refcounts(path.watched()).items()
                if k in base_refs and v != base_refs[k]}
        return Result(name, per_round * (rounds - 1), seconds, blocks, rss, refs,
                      path.fallbacks - base_fallbacks, path.delivered - base_delivered,
                      path.errors[:5])
    finally:
        path.close()


def leaky(store: list[Any], *, references: bool = False) -> Callable[[], Runnable]:
    """A path that keeps one object per message, or with ``references`` one more
    reference to an object it watches (what the check must catch); nothing is sent."""
    thing = object()

    class Leaky:
        sent = delivered = fallbacks = 0
        errors: list[str] = []

        def run(self, count: int) -> None:
            store.extend(thing if references else object() for _ in range(count))
            self.sent += count
            self.delivered += count

        def watched(self) -> dict[str, object]:
            return {"thing": thing}

        def close(self) -> None:
            pass

    return Leaky
