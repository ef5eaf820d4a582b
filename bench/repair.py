#!/usr/bin/env python3
"""Repair on a lossy LAN: share held, overhead per lost datagram, added latency.

    sudo .venv/bin/python bench/repair.py            # about 3 minutes
    sudo .venv/bin/python bench/repair.py --quick    # a few seconds per level
    sudo .venv/bin/python bench/repair.py --compare  # each level also with requests alone

Theory of operation: for each loss level (0, 1, 5, 10, 20 %) a fresh lab of
network namespaces on one bridge (``tests/node/node_support.NetnsLab``) holds 2
sensor hosts publishing 50 readings/s each and 3 receiver hosts
(``bench/_repair_worker.py``). Once every receiver hears every sensor, every host
drops that share of the UDP datagrams it receives (``tests/node/packet_loss``:
nftables ``numgen random`` or iptables ``statistic``) for ``--seconds``; then the
loss stops and the run goes on for ``--tail`` seconds so the last gaps can be
repaired. The same-run baseline is a 0 % run with repair off: its control
datagrams per second are the heartbeats (and agreement) that would be sent anyway.

Figures per level:
* **held**: readings published in the lossy window that a receiver holds at the
  end, over all published (the least of the 3 receivers x 2 sensors, and the mean);
  target 100 % up to 20 %.
* **overhead**: control datagrams sent by every host during the window and tail
  beyond the baseline's rate, over the data datagrams the receivers lost (dropped
  by the loss rules on their way to a receiver): (requests + repairs) per lost
  datagram; target at most 1.5.
  The nodes' own counters (requests sent, messages repaired) are printed beside it.
  First requests for a few numbers ride the heartbeats every node sends anyway
  (docs/protocol.md 7.7): they cost no datagram, but they make heartbeats larger,
  so the bytes are counted too: **ctl bytes/lost** is every control byte sent
  beyond the baseline's rate (IP packets, headers included) per lost datagram, and
  **carried** the requests that rode heartbeats and the bytes they added to them.
  ``--compare`` runs every level a second time with every request sent alone (the
  requester's ``carry_wait`` 0), in the same run: rows marked "alone".
* **added latency** of a repaired reading: its receive time minus its publish
  time, minus the median latency of readings that arrived first time (p50, p99).
* at 0 %: control datagrams per published reading beyond the baseline (target:
  none but the tails in heartbeats, which ride in heartbeats already sent).
* **shared** rows (``--shared``, default 10 %): the loss is at the bridge, on what
  the sensors send, so every receiver misses the same datagrams: suppression's
  case. "lost dgrams" counts, as in the other rows, the datagrams *a receiver*
  lost (each datagram lost at the bridge 3 times): about 2/3 of a datagram per
  lost one (one request and one repair for all 3) means the other receivers'
  requests were suppressed.

Needs root, ``ip netns`` and nftables or iptables; without them it says why and
exits 0 (nothing measured). Every process is killed by PID and every namespace
deleted, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parent
_REPO = _BENCH.parent
# the lab and the loss rules are the multi-host tests' own (appended: no shadowing)
sys.path[:] = [str(_REPO), *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
               str(_REPO / "tests"), str(_REPO / "tests" / "node")]

from node_support import NetnsLab, netns_problem  # noqa: E402
from packet_loss import loss_problem  # noqa: E402

DATA_PORT = 47800
CONTROL_PORT = 47801
LEVELS = (0.0, 1.0, 5.0, 10.0, 20.0)
TARGET_OVERHEAD = 1.5


@dataclass
class Outcome:
    """One run's figures (``shared``: the loss was at the sensors' bridge ports)."""

    loss: float
    repair: bool
    seconds: float
    shared: bool = False
    carry: bool = True
    published: int = 0
    held_min: float = 1.0
    held_mean: float = 1.0
    lost_datagrams: int = 0
    control_sent: int = 0
    control_bytes: int = 0
    carried: int = 0
    carried_bytes: int = 0
    requests_sent: int = 0
    suppressed: int = 0
    repaired_received: int = 0
    repaired_sent: int = 0
    permanently_lost: int = 0
    added_latency_ms: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        lat = out.pop("added_latency_ms")
        out["added_latency_p50_ms"] = _pct(lat, 50)
        out["added_latency_p99_ms"] = _pct(lat, 99)
        return out


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Worker:
    """One ``_repair_worker.py`` process on a lab host; output to a file, killed by PID."""

    def __init__(self, lab: NetnsLab, host: int, role: str, config: dict[str, Any],
                 logdir: Path) -> None:
        self.out_path = logdir / f"{role}-{host}.out"
        self.err_path = logdir / f"{role}-{host}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.popen = subprocess.Popen(
                [*lab.prefix(host), sys.executable, str(_BENCH / "_repair_worker.py"), role,
                 json.dumps(config)], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=_REPO)

    def lines(self) -> list[str]:
        return self.out_path.read_text(errors="replace").splitlines()

    def wait_for(self, test: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not test(self.lines()):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker never {what}: "
                                   f"{self.err_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def result(self, timeout: float = 30.0) -> dict[str, Any]:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("worker did not stop") from None
        for line in reversed(self.lines()):
            if line.startswith("{"):
                result: dict[str, Any] = json.loads(line)
                return result
        raise RuntimeError(f"worker printed no result: "
                           f"{self.err_path.read_text(errors='replace')[-2000:]}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)


def run_level(loss: float, *, repair: bool, seconds: float, tail: float, rate: float,
              sensors: int, receivers: int, tag: str, net: int, shared: bool = False,
              carry: bool = True) -> Outcome:
    """One lab, one loss level; returns its figures.

    ``shared``: instead of every host losing on arrival, the bridge drops that share of
    what the sensors send, so every receiver misses the same datagrams."""
    lab = NetnsLab(tag, net=net)
    workers: list[Worker] = []
    with tempfile.TemporaryDirectory(prefix="ganglion-repair-bench-") as tmp:
        logdir = Path(tmp)
        try:
            lab.start()
            for _ in range(sensors + receivers):
                lab.add_host()
            lab.set_loss(0.0, ports=(DATA_PORT, CONTROL_PORT))
            deadline = seconds + tail + 120
            base = {"repair": repair, "rate": rate, "deadline": deadline, "carry": carry}
            rx = [Worker(lab, sensors + i + 1, "receiver",
                         {**base, "name": f"rx{i + 1}", "address": lab.address(sensors + i + 1)},
                         logdir) for i in range(receivers)]
            workers += rx
            for w in rx:
                w.wait_for(lambda lines: "ready" in lines, "got ready", 30)
            tx = [Worker(lab, i + 1, "sensor",
                         {**base, "name": f"sensor{i + 1}", "address": lab.address(i + 1),
                          "state_dir": str(logdir / f"state{i + 1}")}, logdir)
                  for i in range(sensors)]
            workers += tx
            for w in rx:
                w.wait_for(lambda lines: sum(x.startswith("heard ") for x in lines) >= sensors,
                           "heard every sensor", 60)
            time.sleep(1.0)  # the receivers' interest has reached both sensors
            before = {h: lab.loss_counters(h) for h in range(1, len(lab.hosts) + 1)}
            sensor_hosts = list(range(1, sensors + 1))
            if shared:
                lab.set_shared_loss(loss, sensor_hosts, ports=(DATA_PORT, CONTROL_PORT))
            else:
                lab.set_loss(loss)
            window = (time.time_ns(), 0)
            time.sleep(seconds)
            window = (window[0], time.time_ns())
            if shared:
                lab.set_shared_loss(0.0, sensor_hosts, ports=(DATA_PORT, CONTROL_PORT))
            else:
                lab.set_loss(0.0)
            time.sleep(tail)
            after = {h: lab.loss_counters(h) for h in range(1, len(lab.hosts) + 1)}
            sent = [w.result() for w in tx]
            got = [w.result() for w in rx]
        finally:
            for w in workers:
                w.kill()
            lab.close()
    out = Outcome(loss, repair, seconds, shared, carry)
    for h in after:
        out.control_sent += after[h].sent.get(CONTROL_PORT, 0) - before[h].sent.get(
            CONTROL_PORT, 0)
        out.control_bytes += after[h].sent_bytes.get(CONTROL_PORT, 0) - before[
            h].sent_bytes.get(CONTROL_PORT, 0)
    if shared:  # each datagram lost at the bridge is missed by every receiver
        for h in range(1, sensors + 1):
            out.lost_datagrams += receivers * (after[h].dropped_out.get(DATA_PORT, 0)
                                               - before[h].dropped_out.get(DATA_PORT, 0))
    for h in range(sensors + 1, sensors + receivers + 1):
        out.lost_datagrams += after[h].dropped.get(DATA_PORT, 0) - before[h].dropped.get(
            DATA_PORT, 0)
    shares = []
    for s in sent:
        published = {n for n, t in enumerate(s["published"]) if window[0] <= t < window[1]}
        out.published += len(published)
        for r in got:
            records = r["received"].get(s["node"], [])
            held = {n for n, _, _, _ in records} & published
            shares.append(len(held) / len(published) if published else 1.0)
            normal = [(rx_ns - t) / 1e6 for n, t, rx_ns, rep in records if not rep]
            base_latency = statistics.median(normal) if normal else 0.0
            out.added_latency_ms += [(rx_ns - t) / 1e6 - base_latency
                                     for n, t, rx_ns, rep in records
                                     if rep and n in published]
        for counts in s["stats"]["published"].values():
            out.repaired_sent += int(counts.get("repaired_sent", 0))
    out.held_min = min(shares) if shares else 0.0
    out.held_mean = statistics.fmean(shares) if shares else 0.0
    for r in got:
        control = r["stats"].get("control", {})
        out.carried += control.get("repair_requests_carried", 0)
        out.carried_bytes += control.get("repair_carried_bytes", 0)
        streams = r["stats"]["streams"]
        out.requests_sent += streams.get("repair_requests_sent", 0)
        out.suppressed += streams.get("repair_requests_suppressed", 0)
        out.repaired_received += streams.get("repaired", 0)
        out.permanently_lost += streams.get("permanently_lost", 0)
    return out


def report(baseline: Outcome, runs: list[Outcome], tail: float) -> list[str]:
    """The table, against the targets; the baseline's control rate is the heartbeats'."""
    rate = baseline.control_sent / (baseline.seconds + tail)
    byte_rate = baseline.control_bytes / (baseline.seconds + tail)
    lines = [f"baseline (0 % loss, repair off): {rate:.1f} control datagrams/s, "
             f"{byte_rate:.0f} bytes/s (heartbeats) from every host together",
             "loss   held(min) held(mean)  lost dgrams  extra ctl  per lost  requests  "
             "repaired(rx/tx)  perm.lost  added p50/p99 ms  (suppressed)  "
             "ctl bytes/lost  carried (bytes)"]
    failures = 0
    for r in runs:
        extra = r.control_sent - rate * (r.seconds + tail)
        per_lost = extra / r.lost_datagrams if r.lost_datagrams else None
        extra_bytes = r.control_bytes - byte_rate * (r.seconds + tail)
        bytes_lost = f"{extra_bytes / r.lost_datagrams:.0f}" if r.lost_datagrams else "-"
        p50, p99 = _pct(r.added_latency_ms, 50), _pct(r.added_latency_ms, 99)
        lines.append(
            f"{r.loss:4.0f} %  {r.held_min * 100:8.2f} %  {r.held_mean * 100:8.2f} %  "
            f"{r.lost_datagrams:11d}  {extra:9.0f}  "
            f"{'-' if per_lost is None else f'{per_lost:8.2f}':>8}  {r.requests_sent:8d}  "
            f"{r.repaired_received:7d}/{r.repaired_sent:<7d}  {r.permanently_lost:9d}  "
            f"{'-' if p50 is None else f'{p50:.1f}'}/{'-' if p99 is None else f'{p99:.1f}'}"
            f"  ({r.suppressed})  {bytes_lost:>5}  {r.carried} ({r.carried_bytes} B)"
            f"{'  shared: at the sensors' if r.shared else ''}"
            f"{'' if r.carry else '  alone: no request rides a heartbeat'}")
        if r.held_min < 1.0:
            failures += 1
        if (r.carry and per_lost is not None and r.lost_datagrams >= 20
                and per_lost > TARGET_OVERHEAD):
            failures += 1
        if r.loss == 0.0:
            per_reading = extra / r.published if r.published else 0.0
            lines.append(f"       at 0 %: {per_reading:+.4f} control datagrams per reading "
                         "beyond the baseline (target: about 0)")
    lines.append(f"targets: held 100 % up to 20 % loss; at most {TARGET_OVERHEAD} extra "
                 "datagrams per lost one; nothing extra at 0 %. "
                 f"{'all met' if failures == 0 else f'{failures} missed'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="lossy seconds per level (default 20; --quick 3)")
    parser.add_argument("--tail", type=float, default=3.0,
                        help="seconds after the loss stops (repairs finish)")
    parser.add_argument("--rate", type=float, default=50.0, help="readings/s per sensor")
    parser.add_argument("--sensors", type=int, default=2)
    parser.add_argument("--receivers", type=int, default=3)
    parser.add_argument("--levels", default=",".join(f"{x:g}" for x in LEVELS),
                        help="loss levels in %% (comma-separated)")
    parser.add_argument("--shared", default="10",
                        help="levels in %% of shared loss (at the sensors' bridge ports: every "
                        "receiver misses the same datagrams; suppression); '' for none")
    parser.add_argument("--compare", action="store_true",
                        help="run every level again with each request sent alone (as "
                        "before requests rode heartbeats), for same-run ratios")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    problem = netns_problem() or loss_problem()
    if problem is not None:
        print(f"bench/repair.py: not measured: {problem}")
        return 0
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 20.0)
    tail = min(args.tail, 2.0) if args.quick else args.tail
    levels = [float(x) for x in args.levels.split(",") if x.strip()]
    tag = f"gr{os.getpid() % 100000}"
    common = dict(seconds=seconds, tail=tail, rate=args.rate, sensors=args.sensors,
                  receivers=args.receivers)
    print(f"repair: {args.sensors} sensors x {args.rate:g} readings/s, {args.receivers} "
          f"receivers, {seconds:g} s lossy + {tail:g} s per level", flush=True)
    baseline = run_level(0.0, repair=False, tag=f"{tag}b", net=201, **common)  # type: ignore[arg-type]
    runs = []
    for i, loss in enumerate(levels):
        for carry in (True, False) if args.compare else (True,):
            runs.append(run_level(loss, repair=True, tag=f"{tag}l{i}{'' if carry else 'a'}",
                                  net=(202 if carry else 212) + i, carry=carry,
                                  **common))  # type: ignore[arg-type]
            print(f"  {loss:g} %{'' if carry else ' alone'}: done", flush=True)
    for i, loss in enumerate(float(x) for x in args.shared.split(",") if x.strip()):
        for carry in (True, False) if args.compare else (True,):
            runs.append(run_level(loss, repair=True, tag=f"{tag}s{i}{'' if carry else 'a'}",
                                  net=(230 if carry else 240) + i, shared=True, carry=carry,
                                  **common))  # type: ignore[arg-type]
            print(f"  {loss:g} % shared{'' if carry else ' alone'}: done", flush=True)
    lines = report(baseline, runs, tail)
    print("\n".join(lines))
    if args.json is not None:
        args.json.write_text(json.dumps({"baseline": baseline.as_json(),
                                         "runs": [r.as_json() for r in runs]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
