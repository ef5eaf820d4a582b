"""The properties a fuzz run asserts while it runs: nothing escapes, the loop never
stalls, memory stays bounded, and the log stays bounded.

Theory of operation: :class:`Watch` is started on the event loop that runs the nodes.

* **Escapes.** It installs a loop exception handler (an exception in a callback or a
  task nobody awaited reaches it) and a logging handler on the ``ganglion`` and
  ``consensus`` loggers; a record at ERROR or above, or any record carrying a
  traceback, is an exception the code did not handle as bad input.
* **Stalls.** A task wakes every 10 ms and measures how late it woke with
  ``loop.time()``. Lateness is only the node's fault while the loop's thread could
  have run: on a shared machine the thread may wait for a CPU. Linux reports that
  wait per thread (``/proc/thread-self/schedstat``, run-queue time), so each stall
  is charged the lateness *minus* the run-queue wait in the same interval; blocking
  in a system call (an fsync) is still charged. Both numbers are reported.
* **Memory.** RSS is read from ``/proc/self/statm`` every 100 ms, and the kernel's
  peak RSS (``VmHWM``, reset at the start through ``/proc/self/clear_refs``) catches
  a peak between two samples, such as a gigabyte integer built and freed inside one
  callback.
* **Log.** A peer must not be able to make the node write without bound: every
  record is measured (its formatted message), and the run fails on a record longer
  than :data:`MAX_RECORD_CHARS` or on more than :data:`LOG_BUDGET_BASE` +
  :data:`LOG_BUDGET_PER_SECOND` per second of records.

``violations()`` lists what broke, each with the inputs sent just before it (the
driver's ``context`` callback), so a report names the input, the symptom and where.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import re
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The loggers whose records are watched.
WATCHED_LOGGERS = ("ganglion", "consensus", "asyncio")
#: Longest formatted log message one record may have (a bounded excerpt of input).
MAX_RECORD_CHARS = 4096
#: Records of WARNING or above allowed per run, plus per second of fuzzing.
LOG_BUDGET_BASE = 200
LOG_BUDGET_PER_SECOND = 20
#: How often the stall monitor wakes.
TICK = 0.010
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MB = 1 << 20


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def peak_rss_bytes() -> int | None:
    """The kernel's peak RSS of this process since the last reset (None if unknown)."""
    try:
        with open("/proc/self/status", "rb") as f:
            found = re.search(rb"VmHWM:\s+(\d+) kB", f.read())
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS to the current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _runqueue_wait_ns() -> int | None:
    """Nanoseconds this thread has waited for a CPU so far (None without schedstat)."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None


@dataclasses.dataclass
class Stall:
    """One late wake-up of the monitor."""

    at: float
    wall_ms: float
    charged_ms: float
    context: list[str]


@dataclasses.dataclass
class Escape:
    """An exception the node did not handle: from the loop handler or a log record."""

    source: str
    message: str
    traceback: str
    context: list[str]


class _LogHandler(logging.Handler):
    def __init__(self, watch: Watch) -> None:
        super().__init__(level=logging.WARNING)
        self.watch = watch

    def emit(self, record: logging.LogRecord) -> None:
        self.watch.on_record(record)


class Watch:
    """Watches one event loop for escapes, stalls, memory growth and log floods.

    Args:
        stall_limit: longest stall (seconds, charged to the loop) allowed.
        rss_limit: largest RSS growth (bytes) over the baseline allowed.
        context: returns a few lines naming the inputs sent most recently; called
            when something breaks, so the report says what came before it.
        alive: a file whose modification time the monitor renews every 100 ms, so
            another process can tell a frozen loop from a busy one.
    """

    def __init__(self, *, stall_limit: float = 0.100, rss_limit: int = 100 * _MB,
                 context: Callable[[], list[str]] = list, alive: Path | None = None) -> None:
        self.stall_limit = stall_limit
        self.rss_limit = rss_limit
        self.context = context
        self.alive = alive
        self.escapes: list[Escape] = []
        self.stalls: list[Stall] = []
        self.worst_wall = 0.0
        self.worst_charged = 0.0
        self.baseline_rss = 0
        self.peak_rss = 0
        self.hwm_ok = False
        self.records: collections.Counter[str] = collections.Counter()
        self.record_count = 0
        self.longest_record = 0
        self.long_records: list[str] = []
        self.started = 0.0
        self.stopped: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._old_handler: Any = None
        self._handler = _LogHandler(self)
        self._old_levels: dict[str, int] = {}

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Install the handlers, take the memory baseline and start the monitor task."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._old_handler = loop.get_exception_handler()
        loop.set_exception_handler(self._on_loop_exception)
        for name in WATCHED_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self._handler)
            self._old_levels[name] = logger.level
            if logger.getEffectiveLevel() > logging.WARNING:
                logger.setLevel(logging.WARNING)
        self.baseline_rss = self.peak_rss = rss_bytes()
        self.hwm_ok = reset_peak_rss()
        self.started = time.monotonic()
        self._task = loop.create_task(self._monitor(), name="fuzz-stall-monitor")

    async def stop(self) -> None:
        """Stop the monitor and remove the handlers (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.sample_rss()
        if self._loop is not None:
            self._loop.set_exception_handler(self._old_handler)
            self._loop = None
        for name, level in self._old_levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self._handler)
            logger.setLevel(level)
        self._old_levels.clear()
        if self.stopped is None:
            self.stopped = time.monotonic()

    def rebaseline(self) -> None:
        """Measure memory growth from now on (after the nodes started and warmed up)."""
        self.baseline_rss = self.peak_rss = rss_bytes()
        self.hwm_ok = reset_peak_rss()

    # -- what is watched -------------------------------------------------------------

    def _on_loop_exception(self, loop: asyncio.AbstractEventLoop, ctx: dict[str, Any]) -> None:
        exc = ctx.get("exception")
        tb = "".join(traceback.format_exception(exc)) if isinstance(exc, BaseException) else ""
        self.escapes.append(Escape("event loop", str(ctx.get("message", "")) + f" {exc!r}",
                                   tb, self.context()))

    def on_record(self, record: logging.LogRecord) -> None:
        """Account one log record (called by the logging handler)."""
        try:
            message = record.getMessage()
        except Exception as exc:  # a record whose arguments do not format is a bug too
            message = f"<unformattable: {exc!r}>"
        self.record_count += 1
        self.records[f"{record.name}: {record.msg}"[:120]] += 1
        self.longest_record = max(self.longest_record, len(message))
        if len(message) > MAX_RECORD_CHARS and len(self.long_records) < 5:
            self.long_records.append(f"{record.name} {record.levelname} {len(message)} chars: "
                                     f"{message[:200]}...")
        if record.levelno >= logging.ERROR or record.exc_info:
            tb = "".join(traceback.format_exception(*record.exc_info)) \
                if record.exc_info and record.exc_info[0] is not None else ""
            self.escapes.append(Escape(f"log {record.name} {record.levelname}",
                                       message[:500], tb[-3000:], self.context()))

    def sample_rss(self) -> None:
        """Take an RSS sample now (the monitor also does every 100 ms)."""
        self.peak_rss = max(self.peak_rss, rss_bytes())
        if self.hwm_ok:
            peak = peak_rss_bytes()
            if peak is not None:
                self.peak_rss = max(self.peak_rss, peak)

    async def _monitor(self) -> None:
        loop = asyncio.get_running_loop()
        expected = loop.time() + TICK
        wait = _runqueue_wait_ns()
        ticks = 0
        while True:
            await asyncio.sleep(max(0.0, expected - loop.time()))
            now = loop.time()
            late = now - expected
            waited = _runqueue_wait_ns()
            queued = 0.0 if wait is None or waited is None else (waited - wait) / 1e9
            wait = waited
            charged = max(0.0, late - queued)
            self.worst_wall = max(self.worst_wall, late)
            if charged > self.worst_charged:
                self.worst_charged = charged
            if charged > self.stall_limit and len(self.stalls) < 20:
                self.stalls.append(Stall(now, late * 1000, charged * 1000, self.context()))
            ticks += 1
            if ticks % 10 == 0 or late > self.stall_limit:
                self.sample_rss()
                if self.alive is not None:
                    self.alive.touch()
            expected = now + TICK

    # -- verdict ---------------------------------------------------------------------

    @property
    def rss_growth(self) -> int:
        """Peak RSS over the baseline, in bytes."""
        return max(0, self.peak_rss - self.baseline_rss)

    def log_budget(self) -> int:
        """Records allowed so far."""
        end = self.stopped if self.stopped is not None else time.monotonic()
        return int(LOG_BUDGET_BASE + LOG_BUDGET_PER_SECOND * max(0.0, end - self.started))

    def broken(self) -> bool:
        """True once any property is violated (the driver stops sending then)."""
        return bool(self.violations())

    def violations(self) -> list[str]:
        """Every violated property, one paragraph each, with the inputs before it.

        Escapes are grouped by where they come from and what they say: the first of
        each group is shown with its traceback and inputs, the rest are counted.
        """
        out = []
        groups: dict[str, list[Escape]] = {}
        for e in self.escapes:
            last = e.traceback.strip().rsplit("\n", 1)[-1] if e.traceback else ""
            groups.setdefault(f"{e.source}: {e.message[:120]} {last[:120]}", []).append(e)
        for escapes in list(groups.values())[:5]:
            e = escapes[0]
            out.append(f"exception escaped ({e.source}, {len(escapes)}x): {e.message}\n"
                       f"{e.traceback}" + _ctx(e.context))
        if len(groups) > 5:
            out.append(f"... and {len(groups) - 5} more kinds of escaped exceptions")
        for s in self.stalls[:3]:
            out.append(f"event loop stalled {s.charged_ms:.0f} ms (wall {s.wall_ms:.0f} ms; "
                       f"limit {self.stall_limit * 1000:.0f} ms)" + _ctx(s.context))
        if self.rss_growth > self.rss_limit:
            out.append(f"RSS grew {self.rss_growth / _MB:.0f} MB over the baseline "
                       f"{self.baseline_rss / _MB:.0f} MB (limit {self.rss_limit / _MB:.0f} MB)")
        for line in self.long_records:
            out.append(f"log record over {MAX_RECORD_CHARS} chars: {line}")
        if self.record_count > self.log_budget():
            top = ", ".join(f"{n}x {k!r}" for k, n in self.records.most_common(3))
            out.append(f"log flood: {self.record_count} records at WARNING or above "
                       f"(budget {self.log_budget()}); most: {top}")
        return out

    def summary(self) -> str:
        """One line of the measured numbers."""
        return (f"worst stall {self.worst_charged * 1000:.1f} ms charged "
                f"({self.worst_wall * 1000:.1f} ms wall), RSS +{self.rss_growth / _MB:.1f} MB "
                f"(baseline {self.baseline_rss / _MB:.0f} MB), {self.record_count} log records "
                f"(longest {self.longest_record} chars), {len(self.escapes)} escapes")


#: Inputs shown before a violation (the last ones sent; the culprit is among them).
CONTEXT_LINES = 16


def _ctx(lines: list[str]) -> str:
    if not lines:
        return ""
    shown = lines[-CONTEXT_LINES:]
    more = f" (last {len(shown)} of {len(lines)})" if len(shown) < len(lines) else ""
    return f"\n  inputs sent just before{more}:\n    " + "\n    ".join(shown)
