"""Repair on a lossy LAN: three hosts, two sensor nodes at 20 Hz, a logger, real packet loss.

Theory of operation: the ``lab`` fixture builds three hosts (network namespaces
on one bridge); hosts 1 and 2 run ``ganglion node`` with a simulated sensor
publishing every 50 ms (20 Hz), host 3 runs ``ganglion log``. Once the logger
has readings of both streams, every host starts dropping a share of the UDP
datagrams it receives (:mod:`packet_loss`: nftables ``numgen random`` or
iptables ``statistic``), so every link loses independently -- data, heartbeats,
repair requests and repairs alike. After the lossy period the loss is turned off
for a few seconds (so the last gaps can be repaired) and the logger stops. The
log's SQLite file is then read: per stream, the sequence numbers held, the ones
flagged ``repaired`` and the recorded gaps.

What each test proves:
* 10 % loss for 60 s (the issue's figure; this test takes about 80 s): the log
  holds every number from the first to the last, no gap is recorded, and the
  repaired readings account for what the network dropped (the logger's own count
  of repaired readings equals the rows flagged repaired).
* 30 % loss (20 s; about 40 s): nothing is lost silently -- every missing number
  is a recorded gap, and no recorded gap covers a number the log holds.
* 10 % loss with repair turned off (logger ``--no-repair --no-history``: it
  asks for nothing; 20 s, about 35 s): the same test shows the loss as gaps,
  so the first test's completeness is the feature's doing.
* A logger started 20 s after its publishers (about 35 s): it gets what they
  published before it started from their history, with no hole.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from node_support import NetnsLab, NodeProc, Spawner, wait_sync

pytestmark = pytest.mark.netns

IFACE = ["--iface", "eth0"]
TYPES = {"temperature": "sensors.Temperature", "humidity": "sensors.Humidity"}
DATA_PORT = 47800
PERIOD = 0.05  # 20 Hz


@dataclasses.dataclass
class Stream:
    """What the log holds of one (type, sender) stream: every number held (live, repaired
    or the last value fetched at start: the node delivers each number once, so the
    newest reading at start may come only as the last value)."""

    seqs: set[int] = dataclasses.field(default_factory=set)
    repaired: set[int] = dataclasses.field(default_factory=set)
    last_values: set[int] = dataclasses.field(default_factory=set)
    gaps: set[int] = dataclasses.field(default_factory=set)
    first_sent_ns: int = 0

    @property
    def missing(self) -> set[int]:
        """Numbers between the first and the last held that the log lacks."""
        return set(range(min(self.seqs), max(self.seqs) + 1)) - self.seqs


def read_log(db: Path) -> dict[tuple[str, str], Stream]:
    """Every live stream of the sensor types in the log, by (type, node id)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out: dict[tuple[str, str], Stream] = {}
        for type_name, node, seq, sent_ns, repaired, last_value in conn.execute(
                "SELECT type, node, seq, sent_ns, repaired, last_value FROM readings "
                "WHERE type IN (?, ?)", tuple(TYPES.values())):
            stream = out.setdefault((type_name, node), Stream(first_sent_ns=sent_ns))
            stream.seqs.add(seq)
            stream.first_sent_ns = min(stream.first_sent_ns, sent_ns)
            if repaired:
                stream.repaired.add(seq)
            if last_value:
                stream.last_values.add(seq)
        for type_name, node, first, last in conn.execute(
                "SELECT type, node, first_missing, last_missing FROM gaps"):
            if (type_name, node) in out:
                out[(type_name, node)].gaps.update(range(first, last + 1))
        return out
    finally:
        conn.close()


def repaired_rows_in(db: Path) -> int:
    """Rows flagged repaired in the whole log (every type the logger logged)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM readings WHERE repaired").fetchone()[0])
    finally:
        conn.close()


def live_rows(db: Path) -> int:
    """Streams of the sensor types with live readings logged so far (0 before the file)."""
    if not db.exists():
        return 0
    try:
        return sum(1 for s in read_log(db).values() if s.seqs - s.last_values - s.repaired)
    except sqlite3.Error:  # the logger is creating the file
        return 0


class LossyLan:
    """Three hosts: two sensor nodes and a logger, and the loss between them."""

    def __init__(self, lab: NetnsLab, spawn: Spawner, tmp: Path) -> None:
        self.lab = lab
        self.spawn = spawn
        self.tmp = tmp
        for _ in range(3):
            lab.add_host()
        lab.set_loss(0.0)  # counters from the start
        self.db = tmp / "log.db"
        self.logger: NodeProc | None = None

    def start_sensors(self, *extra: str) -> None:
        for host, kind in ((1, "temperature"), (2, "humidity")):
            name = f"host{host}"
            proc = self.spawn("node", "--name", name, "--state-dir", str(self.tmp / name),
                              *IFACE, "--no-mdns", "-v", "--sim", kind, "--interval",
                              str(PERIOD), *extra, label=f"node-{name}",
                              prefix=self.lab.prefix(host))
            proc.wait_for_err(f"node {name} (")

    def start_logger(self, *extra: str) -> NodeProc:
        self.logger = self.spawn("log", "--db", str(self.db), *IFACE, *extra, label="log",
                                 prefix=self.lab.prefix(3))
        return self.logger

    def wait_for_both_streams(self, timeout: float = 40.0) -> None:
        assert self.logger is not None
        logger = self.logger

        def both() -> bool:
            if logger.popen.poll() is not None:
                raise AssertionError(f"the logger exited:\n{logger.describe()}")
            return live_rows(self.db) == 2

        wait_sync(both, "the logger to hold both sensor streams", timeout, 0.25)

    def finish_logger(self, timeout: float = 30.0) -> str:
        """Stop the logger as Ctrl-C does (it writes what is left) and return its stderr."""
        assert self.logger is not None
        self.logger.popen.send_signal(signal.SIGINT)
        code = self.logger.finish(timeout)
        assert code == 0, self.logger.describe()
        return self.logger.err


def logged_counts(stderr: str) -> tuple[int, int, int]:
    """(repaired, requests sent, permanently lost) from ``ganglion log``'s repair line
    (its node's counters)."""
    found = re.search(r"repair: (\d+) repaired, (\d+) requests sent, (\d+) suppressed, "
                      r"(\d+) permanently lost", stderr)
    assert found is not None, stderr[-2000:]
    return int(found.group(1)), int(found.group(2)), int(found.group(4))


def lossy_run(lab: NetnsLab, spawn: Spawner, tmp: Path, *, loss: float, seconds: float,
              repair: bool) -> tuple[dict[tuple[str, str], Stream], str, LossyLan]:
    """Sensors and a logger; ``loss`` % on every link for ``seconds``; the log as read back."""
    lan = LossyLan(lab, spawn, tmp)
    lan.start_sensors()
    lan.start_logger(*([] if repair else ["--no-repair", "--no-history"]))
    lan.wait_for_both_streams()
    lab.set_loss(loss)
    time.sleep(seconds)
    lab.set_loss(0.0)
    # loss off at the end: the last gaps are repaired (or given up on) meanwhile; repair
    # gives up within about 5 s (RequesterConfig), so a gap left at the stop is permanent
    time.sleep(8.0)
    stderr = lan.finish_logger()
    streams = read_log(lan.db)
    assert len(streams) == 2, streams.keys()
    return streams, stderr, lan


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_at_10_percent_loss_for_60_s_the_log_holds_every_reading(
        lab: NetnsLab, spawn: Spawner, tmp_path: Path, loss_available: None) -> None:
    streams, stderr, lan = lossy_run(lab, spawn, tmp_path, loss=10.0, seconds=60.0, repair=True)
    dropped_at_logger = lan.lab.loss_counters(3).dropped.get(DATA_PORT, 0)
    assert dropped_at_logger > 100, "the loss rule dropped (almost) nothing"
    repaired_rows = repaired_live = 0
    for key, stream in streams.items():
        assert len(stream.seqs) >= 60 / PERIOD * 0.8, (key, len(stream.seqs))
        assert not stream.missing, (f"{key}: {len(stream.missing)} readings missing "
                                    f"({len(stream.missing & stream.gaps)} recorded as gaps); "
                                    f"{stderr[-600:]}")
        assert not stream.gaps, f"{key}: gaps recorded for {sorted(stream.gaps)[:20]}"
        repaired_rows += len(stream.repaired)
        first_live = min(stream.seqs - stream.repaired - stream.last_values)
        repaired_live += sum(1 for seq in stream.repaired if seq > first_live)
    # the repairs explain it: the logger's own counter agrees with the rows flagged
    # repaired, and those after its first live reading (the others came from history at
    # start) are about the data datagrams its host dropped: each was lost and got back
    repaired, requests, lost = logged_counts(stderr)
    assert lost == 0
    # every type the logger logged (the sensor nodes publish more than the two readings)
    assert repaired == repaired_rows_in(lan.db) >= repaired_rows
    assert requests > 0
    assert 0.5 * dropped_at_logger <= repaired_live <= dropped_at_logger, (
        repaired_live, dropped_at_logger)


@pytest.mark.timeout(180)
def test_at_30_percent_loss_nothing_is_lost_silently(
        lab: NetnsLab, spawn: Spawner, tmp_path: Path, loss_available: None) -> None:
    streams, stderr, lan = lossy_run(lab, spawn, tmp_path, loss=30.0, seconds=20.0,
                                     repair=True)
    for key, stream in streams.items():
        assert stream.missing == stream.gaps, (
            f"{key}: missing but not recorded {sorted(stream.missing - stream.gaps)[:20]}, "
            f"recorded but held {sorted(stream.gaps - stream.missing)[:20]}")
        assert stream.repaired, f"{key}: nothing repaired at 30 % loss"
    repaired, requests, _ = logged_counts(stderr)
    assert repaired == repaired_rows_in(lan.db) >= sum(len(s.repaired) for s in streams.values())
    # the losses during the run were asked for (not only the history at start)
    assert requests > 0
    for key, stream in streams.items():
        first_live = min(stream.seqs - stream.repaired - stream.last_values)
        assert any(seq > first_live for seq in stream.repaired), key


@pytest.mark.timeout(180)
def test_with_repair_off_the_same_loss_shows_in_the_log(
        lab: NetnsLab, spawn: Spawner, tmp_path: Path, loss_available: None) -> None:
    streams, _, lan = lossy_run(lab, spawn, tmp_path, loss=10.0, seconds=20.0, repair=False)
    missing = 0
    for key, stream in streams.items():
        assert not stream.repaired, key
        assert stream.missing == stream.gaps, key  # still every loss is recorded
        missing += len(stream.missing)
    # about a tenth of 2 x 400 readings; the loss rule saw them go
    assert missing >= 20, f"only {missing} readings missing at 10 % loss without repair"
    assert missing <= lan.lab.loss_counters(3).dropped.get(DATA_PORT, 0)


@pytest.mark.timeout(180)
def test_a_logger_started_20_s_late_gets_the_last_20_s_from_history(
        lab: NetnsLab, spawn: Spawner, tmp_path: Path, netns_available: None) -> None:
    lan = LossyLan(lab, spawn, tmp_path)
    lan.start_sensors()
    time.sleep(21.0)
    started_ns = time.time_ns()
    lan.start_logger()
    lan.wait_for_both_streams()
    time.sleep(8.0)  # history answers come in within a few seconds
    lan.finish_logger()
    streams = read_log(lan.db)
    assert len(streams) == 2
    for key, stream in streams.items():
        assert not stream.missing, f"{key}: {len(stream.missing)} readings missing"
        assert not stream.gaps, key
        assert stream.first_sent_ns <= started_ns - 20 * 10**9, (
            f"{key}: the oldest reading is {(started_ns - stream.first_sent_ns) / 1e9:.1f} s "
            "older than the logger")
        assert len(stream.repaired) >= 20 / PERIOD * 0.9, (key, len(stream.repaired))
