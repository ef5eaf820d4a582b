"""Smoke and unit tests for the transport benchmark harness (bench/transport.py).

The harness's pure parts (payload tally, stop rule, statistics, report, isolation
choice, argument parsing, script discovery) are tested directly; the socket parts
run tiny trials over loopback multicast with IP_MULTICAST_IF=127.0.0.1. No test
asserts a speed: only that the harness runs and its numbers are sane.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module", autouse=True)
def bench_on_path() -> Iterator[None]:
    """Make the bench helper modules importable (bench/ is scripts, not a package)."""
    sys.path.insert(0, str(BENCH))
    yield
    sys.path.remove(str(BENCH))


def _mod(name: str) -> ModuleType:
    """Import one bench module by name."""
    import importlib

    return importlib.import_module(name)


def _trial(**kw: Any) -> Any:
    """A TrialResult with harmless defaults, overridden by ``kw``."""
    fields: dict[str, Any] = {
        "system": "raw",
        "mode": "blast",
        "size": 64,
        "sent": 100,
        "received": 100,
        "duplicates": 0,
        "send_seconds": 1.0,
        "rx_seconds": 1.0,
        "p50_us": None,
        "p99_us": None,
        "extra": {},
    }
    fields.update(kw)
    return _mod("_transport_common").TrialResult(**fields)


# --- payload and statistics ------------------------------------------------------


def test_percentile_uses_nearest_rank() -> None:
    common = _mod("_transport_common")
    values = [float(v) for v in range(1, 101)]
    assert common.percentile(values, 50) == 50.0
    assert common.percentile(values, 99) == 99.0
    assert common.percentile(values, 100) == 100.0
    assert common.percentile([7.0], 1) == 7.0
    assert math.isnan(common.percentile([], 50))


@pytest.mark.parametrize("q", [0, -1, 100.5])
def test_percentile_rejects_out_of_range_q(q: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        _mod("_transport_common").percentile([1.0], q)


def test_median_ignores_nan_and_is_nan_when_empty() -> None:
    common = _mod("_transport_common")
    assert common.median_or_nan([1.0, math.nan, 3.0, 2.0]) == 2.0
    assert math.isnan(common.median_or_nan([math.nan]))


def test_make_payload_refuses_sizes_below_the_header() -> None:
    common = _mod("_transport_common")
    assert len(common.make_payload(64)) == 64
    with pytest.raises(ValueError, match="header"):
        common.make_payload(common.HEADER.size - 1)


def test_tally_counts_distinct_duplicates_and_strays() -> None:
    tally = _mod("_transport_common").Tally(3, record_latency=True)
    tally.on_message(0, 100, 1_100)
    tally.on_message(0, 100, 1_200)  # duplicate: no second latency sample
    tally.on_message(7, 100, 1_300)  # outside 0..count-1
    tally.on_message(2, 500, 3_500)
    assert (tally.received, tally.duplicates, tally.out_of_range) == (2, 1, 1)
    assert not tally.complete
    tally.on_message(1, 0, 4_000)
    assert tally.complete
    s = tally.summary()
    assert (s["first_rx_ns"], s["last_rx_ns"], s["latency_samples"]) == (1_100, 4_000, 3)
    assert s["p50_us"] == 3.0  # samples 1.0, 3.0 and 4.0 µs
    assert s["p99_us"] == 4.0


def test_tally_without_latency_reports_none() -> None:
    tally = _mod("_transport_common").Tally(2, record_latency=False)
    tally.on_message(1, 0, 10)
    s = tally.summary()
    assert s["p50_us"] is None and s["latency_samples"] == 0


def test_tally_rejects_empty_trial() -> None:
    with pytest.raises(ValueError, match="positive"):
        _mod("_transport_common").Tally(0, record_latency=False)


def test_trial_result_rates_and_loss() -> None:
    r = _trial(sent=1000, received=900, send_seconds=0.5, rx_seconds=0.25)
    assert r.loss == pytest.approx(0.1)
    assert r.delivered_per_s == pytest.approx(3600.0)
    assert r.sent_per_s == pytest.approx(2000.0)
    j = r.to_json()
    assert j["delivered_per_s"] == pytest.approx(3600.0) and j["loss"] == pytest.approx(0.1)


def test_trial_result_with_nothing_received_has_no_rate() -> None:
    r = _trial(received=0, rx_seconds=0.0)
    assert r.loss == 1.0
    assert math.isnan(r.delivered_per_s)
    assert r.to_json()["delivered_per_s"] is None


# --- role config and stop rule ----------------------------------------------------


def test_role_config_round_trips_through_its_argument() -> None:
    role = _mod("_transport_role")
    cfg = role.RoleConfig(system="lcm", role="pub", mode="paced", size=100, count=5, rate=50.0)
    assert role.RoleConfig.from_arg(cfg.to_arg()) == cfg


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("system", "zmq"),
        ("role", "both"),
        ("mode", "burst"),
        ("size", 15),
        ("count", 0),
        ("rate", 0.0),
        ("yield_every", 0),
    ],
)
def test_role_config_rejects_bad_fields(field: str, value: object) -> None:
    role = _mod("_transport_role")
    kw: dict[str, Any] = {"system": "raw", "role": "sub", "mode": "blast", "size": 64, "count": 1}
    kw[field] = value
    with pytest.raises(ValueError, match=field):
        role.RoleConfig(**kw)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"system": "raw", "bogus": 1}'])
def test_role_config_from_bad_argument_raises_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        _mod("_transport_role").RoleConfig.from_arg(text)


def test_stop_rule_waits_for_first_message_then_for_idle() -> None:
    role = _mod("_transport_role")
    cfg = role.RoleConfig(
        system="raw",
        role="sub",
        mode="blast",
        size=64,
        count=3,
        idle_s=0.5,
        first_timeout_s=2.0,
        deadline_s=10.0,
    )
    tally = cfg.new_tally()
    stop = role.StopRule(cfg, start_ns=0)
    assert not stop.done(tally, 1_900_000_000)
    assert stop.done(tally, 2_000_000_000)  # nobody came
    tally.on_message(0, 0, 3_000_000_000)
    assert not stop.done(tally, 3_400_000_000)
    assert stop.done(tally, 3_500_000_000)  # idle after the last arrival


def test_stop_rule_stops_when_complete_or_past_deadline() -> None:
    role = _mod("_transport_role")
    cfg = role.RoleConfig(
        system="raw",
        role="sub",
        mode="blast",
        size=64,
        count=1,
        idle_s=100.0,
        first_timeout_s=100.0,
        deadline_s=1.0,
    )
    tally = cfg.new_tally()
    stop = role.StopRule(cfg, start_ns=0)
    assert stop.done(tally, 1_000_000_000)
    tally.on_message(0, 0, 10)
    assert stop.done(tally, 20)


# --- report ---------------------------------------------------------------------


def test_summarize_pools_loss_and_takes_medians() -> None:
    report = _mod("_transport_report")
    trials = [
        _trial(sent=100, received=90, rx_seconds=1.0),
        _trial(sent=100, received=100, rx_seconds=0.5),
        _trial(sent=100, received=80, rx_seconds=0.1),
        _trial(mode="paced", sent=10, received=10, p50_us=5.0, p99_us=50.0),
        _trial(mode="paced", sent=10, received=9, p50_us=7.0, p99_us=70.0),
    ]
    row = report.summarize("raw", trials)
    assert (row.blast_trials, row.paced_trials, row.sent, row.received) == (3, 2, 300, 270)
    assert row.loss == pytest.approx(0.1)
    assert row.delivered_per_s == pytest.approx(200.0)  # median of 90, 200, 800
    assert row.p50_us == pytest.approx(6.0) and row.p99_us == pytest.approx(60.0)
    assert row.paced_loss == pytest.approx(0.05)


def test_ratios_compare_ganglion_to_raw_and_lcm() -> None:
    report = _mod("_transport_report")
    rows = [
        report.summarize(
            "raw",
            [_trial(received=400, rx_seconds=1.0), _trial(mode="paced", p50_us=10.0, p99_us=20.0)],
        ),
        report.summarize(
            "ganglion",
            [
                _trial(system="ganglion", received=200, rx_seconds=1.0),
                _trial(system="ganglion", mode="paced", p50_us=15.0),
            ],
        ),
        report.summarize("lcm", [], note="skipped here"),
    ]
    r = report.ratios(rows)
    assert r["throughput b/a"] == pytest.approx(0.5)
    assert r["p50 latency b/a"] == pytest.approx(1.5)
    assert math.isnan(r["throughput b/c"]) and math.isnan(r["p50 latency b/c"])
    text = report.format_table(64, rows)
    assert "skipped: skipped here" in text
    assert "0.50x" in text and "n/a" in text
    blob = report.report_json([64], {64: rows}, [], {"k": 1})
    json.dumps(blob, allow_nan=False)  # NaN must have become null
    assert blob["sizes"]["64"]["ratios"]["throughput b/c"] is None


# --- isolation ------------------------------------------------------------------


def _fake_net(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).mkdir()
    return tmp_path


def test_isolation_inside_when_only_loopback(tmp_path: Path) -> None:
    netns = _mod("_transport_netns")
    iso = netns.choose_isolation(allow_create=True, net_dir=_fake_net(tmp_path, "lo"), euid=1000)
    assert iso.mode == "inside" and iso.lcm_allowed


@pytest.mark.parametrize(
    ("allow", "euid", "mode"),
    [(True, 0, "create"), (False, 0, "loopback"), (True, 1000, "loopback")],
)
def test_isolation_with_a_real_interface(tmp_path: Path, allow: bool, euid: int, mode: str) -> None:
    netns = _mod("_transport_netns")
    net = _fake_net(tmp_path, "lo", "eth0")
    if mode == "create" and shutil.which("ip") is None:
        mode = "loopback"
    iso = netns.choose_isolation(allow_create=allow, net_dir=net, euid=euid)
    assert iso.mode == mode
    assert not iso.lcm_allowed


def test_only_loopback_is_false_for_missing_directory(tmp_path: Path) -> None:
    assert not _mod("_transport_netns").only_loopback(tmp_path / "nope")


# --- command line ---------------------------------------------------------------


def test_quick_plan_and_lcm_skip_reason() -> None:
    transport = _mod("transport")
    netns = _mod("_transport_netns")
    args = transport.parse_args(["--quick", "--sizes", "64", "--systems", "raw,lcm"])
    plan = transport.build_plan(args, netns.Isolation("loopback", "no namespace here"))
    assert (plan.trials, plan.blast_count, plan.paced_count) == (1, transport.QUICK_COUNT, 500)
    assert plan.systems == ("raw", "lcm") and plan.sizes == (64,)
    assert plan.skip_reasons == {"lcm": "no namespace here"}
    sub, pub = plan.configs("lcm", "paced", 64)
    assert (sub.role, pub.role, sub.count, sub.lcm_url) == ("sub", "pub", 500, transport.LCM_URL)
    assert "ttl=0" in transport.LCM_URL and "239.255.76.67" not in transport.LCM_URL


@pytest.mark.parametrize(
    "argv", [["--sizes", "8"], ["--sizes", "2000"], ["--systems", "zmq"], ["--trials", "0"]]
)
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _mod("transport").parse_args(argv)


# --- script discovery (run_all) -------------------------------------------------


def test_run_all_orders_transport_then_consensus_and_skips_helpers(tmp_path: Path) -> None:
    run_all = _mod("run_all")
    for name in ("zeta.py", "_helper.py", "consensus.py", "transport.py", "alpha.py", "notes.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in run_all.discover(tmp_path)] == [
        "transport.py",
        "consensus.py",
        "alpha.py",
        "zeta.py",
    ]


def test_run_all_skips_missing_benchmarks(tmp_path: Path) -> None:
    (tmp_path / "transport.py").write_text("")
    assert [p.name for p in _mod("run_all").discover(tmp_path)] == ["transport.py"]


def test_run_all_reports_status_and_kills_on_timeout(tmp_path: Path) -> None:
    run_all = _mod("run_all")
    ok = tmp_path / "ok.py"
    ok.write_text("import sys; sys.exit(0 if sys.argv[1:] == ['--quick'] else 5)\n")
    bad = tmp_path / "bad.py"
    bad.write_text("import sys; sys.exit(3)\n")
    slow = tmp_path / "slow.py"
    slow.write_text("import time; time.sleep(30)\n")
    started = time.monotonic()
    outcomes = run_all.run_scripts([ok, bad, slow], ["--quick"], timeout=1.0)
    assert time.monotonic() - started < 15
    assert [(o.script.name, o.returncode, o.ok) for o in outcomes] == [
        ("ok.py", 0, True),
        ("bad.py", 3, False),
        ("slow.py", None, False),
    ]


# --- worker and runner over loopback -----------------------------------------------


def _cfgs(system: str, mode: str, port: int, group: str, count: int, **kw: Any) -> tuple[Any, Any]:
    role = _mod("_transport_role")
    common: dict[str, Any] = {
        "system": system,
        "mode": mode,
        "size": 64,
        "count": count,
        "port": port,
        "group": group,
        "idle_s": 0.3,
        "first_timeout_s": 5.0,
        "deadline_s": 20.0,
    }
    common.update(kw)
    return role.RoleConfig(role="sub", **common), role.RoleConfig(role="pub", **common)


def test_worker_reports_a_bad_config_as_an_error_line() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "_transport_worker.py"), '{"system": "nope"}'],
        capture_output=True,
        text=True,
        timeout=30,
        env=_mod("_transport_runner").worker_env(),
    )
    assert proc.returncode == 2
    assert "bad config" in json.loads(proc.stdout.strip())["error"]


@pytest.mark.timeout(60)
def test_raw_blast_and_paced_trials_deliver(
    multicast_loopback: str, free_udp_port: int, test_group: str
) -> None:
    runner = _mod("_transport_runner")
    blast = runner.run_trial(*_cfgs("raw", "blast", free_udp_port, test_group, 2000))
    assert blast.sent == 2000
    assert 0 < blast.received <= blast.sent
    assert 0.0 <= blast.loss <= 1.0 and blast.duplicates == 0
    assert blast.send_seconds > 0 and blast.extra["out_of_range"] == 0
    paced = runner.run_trial(*_cfgs("raw", "paced", free_udp_port, test_group, 50, rate=500.0))
    assert paced.received > 0 and paced.sent == 50
    assert paced.p50_us is not None and paced.p99_us is not None
    assert 0 < paced.p50_us <= paced.p99_us


@pytest.mark.timeout(60)
def test_unusable_system_raises_system_unavailable(free_udp_port: int) -> None:
    runner = _mod("_transport_runner")
    # 192.0.2.1 (TEST-NET-1) is not a local address, so the subscriber's bind fails
    # before anything could be sent.
    with pytest.raises(runner.SystemUnavailable, match="raw sub"):
        runner.run_trial(*_cfgs("raw", "blast", free_udp_port, "192.0.2.1", 10))


@pytest.mark.timeout(60)
def test_ganglion_trial_delivers_when_endpoint_exists(
    multicast_loopback: str, free_udp_port: int
) -> None:
    pytest.importorskip("ganglion.runtime.endpoint", reason="ganglion Endpoint not built yet")
    runner = _mod("_transport_runner")
    result = runner.run_trial(*_cfgs("ganglion", "blast", free_udp_port, "239.255.201.1", 500))
    assert 0 < result.received <= result.sent == 500
    assert result.duplicates == 0


@pytest.mark.timeout(60)
def test_lcm_trial_delivers_inside_loopback_only_namespace(free_udp_port: int) -> None:
    pytest.importorskip("lcm")
    netns = _mod("_transport_netns")
    if not netns.only_loopback():
        pytest.skip("LCM runs only where loopback is the only interface")
    runner = _mod("_transport_runner")
    url = f"udpm://239.255.202.9:{free_udp_port}?ttl=0"
    try:
        result = runner.run_trial(
            *_cfgs("lcm", "paced", free_udp_port, "239.255.202.9", 50, rate=500.0, lcm_url=url)
        )
    except runner.SystemUnavailable as exc:
        pytest.skip(f"LCM cannot start here (needs a 224.0.0.0/4 route): {exc}")
    assert 0 < result.received <= 50 and result.p50_us is not None


# --- the whole command ----------------------------------------------------------


@pytest.mark.timeout(120)
def test_command_runs_end_to_end_and_removes_its_namespace(tmp_path: Path) -> None:
    out_file = tmp_path / "out.json"
    cmd = [
        sys.executable,
        str(BENCH / "transport.py"),
        "--quick",
        "--trials",
        "1",
        "--count",
        "500",
        "--duration",
        "0.1",
        "--sizes",
        "64",
        "--systems",
        "raw,lcm",
        "--json",
        str(out_file),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=110)
    assert proc.returncode in (0, 1), proc.stderr
    assert "payload 64 B" in proc.stdout
    data = json.loads(out_file.read_text())
    rows = {r["system"]: r for r in data["sizes"]["64"]["rows"]}
    assert rows["raw"]["sent"] == 500 and 0 < rows["raw"]["received"] <= 500
    assert 0.0 <= rows["raw"]["loss"] <= 1.0
    if data["meta"]["isolation"]["mode"] != "inside":
        assert rows["lcm"]["blast_trials"] == 0 and rows["lcm"]["note"]
    made = re.search(r"namespace (ganglion-bench-\d+)", proc.stdout)
    if made and os.geteuid() == 0 and shutil.which("ip"):
        assert not _mod("_transport_netns").namespace_exists(made.group(1))
