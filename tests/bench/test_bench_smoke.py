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
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _fake_net(where: Path, *names: str) -> Path:
    for name in names:
        (where / name).mkdir(parents=True)
    return where


_ROUTE_HEAD = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
)


def _route_line(iface: str, dest: str, mask: str) -> str:
    """One /proc/net/route line (addresses in host byte order, as the kernel writes them)."""
    import socket
    import struct

    def hexed(addr: str) -> str:
        order = "<" if sys.byteorder == "little" else ">"
        return f"{struct.unpack(f'{order}I', socket.inet_aton(addr))[0]:08X}"

    return f"{iface}\t{hexed(dest)}\t00000000\t0001\t0\t0\t0\t{hexed(mask)}\t0\t0\t0\n"


def _routes(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "route"
    path.write_text(_ROUTE_HEAD + "".join(lines))
    return path


def test_multicast_route_is_recognised_on_lo_only(tmp_path: Path) -> None:
    netns = _mod("_transport_netns")
    mc_lo = _route_line("lo", "224.0.0.0", "240.0.0.0")
    assert netns.has_multicast_route(_routes(tmp_path, mc_lo))
    assert not netns.has_multicast_route(
        _routes(tmp_path, _route_line("eth0", "224.0.0.0", "240.0.0.0"))
    )
    assert not netns.has_multicast_route(
        _routes(tmp_path, _route_line("lo", "239.0.0.0", "255.0.0.0"))
    )
    assert netns.has_multicast_route(_routes(tmp_path, _route_line("lo", "0.0.0.0", "0.0.0.0")))
    assert not netns.has_multicast_route(
        _routes(tmp_path, "lo\tgarbage\n", "lo\tZZ\t0\t0\t0\t0\t0\tZZ\n")
    )
    assert not netns.has_multicast_route(tmp_path / "missing")


def test_isolation_inside_when_only_loopback_with_the_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netns = _mod("_transport_netns")
    monkeypatch.delenv(netns.ENV_NETNS, raising=False)
    route = _routes(tmp_path, _route_line("lo", "224.0.0.0", "240.0.0.0"))
    net = _fake_net(tmp_path / "net", "lo")
    iso = netns.choose_isolation(allow_create=True, net_dir=net, route_file=route, euid=0)
    assert iso.mode == "inside" and iso.lcm_allowed


def test_isolation_inside_our_own_namespace_trusts_the_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netns = _mod("_transport_netns")
    monkeypatch.setenv(netns.ENV_NETNS, "ganglion-bench-1")
    net = _fake_net(tmp_path / "net", "lo")
    iso = netns.choose_isolation(
        allow_create=True, net_dir=net, route_file=_routes(tmp_path), euid=0
    )
    assert iso == netns.Isolation("inside", "running in namespace ganglion-bench-1")


@pytest.mark.parametrize(("euid", "mode"), [(0, "create"), (1000, "inside")])
def test_loopback_only_namespace_without_route(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, euid: int, mode: str
) -> None:
    netns = _mod("_transport_netns")
    monkeypatch.delenv(netns.ENV_NETNS, raising=False)
    if mode == "create" and shutil.which("ip") is None:
        mode = "inside"
    net = _fake_net(tmp_path / "net", "lo")
    iso = netns.choose_isolation(
        allow_create=True, net_dir=net, route_file=_routes(tmp_path), euid=euid
    )
    assert iso.mode == mode
    assert iso.lcm_allowed == (mode == "inside")


@pytest.mark.parametrize(
    ("allow", "euid", "mode", "why"),
    [
        (True, 0, "create", "creating"),
        (False, 0, "loopback", "--no-netns"),
        (True, 1000, "loopback", "not root"),
    ],
)
def test_isolation_with_a_real_interface(
    tmp_path: Path, allow: bool, euid: int, mode: str, why: str
) -> None:
    netns = _mod("_transport_netns")
    net = _fake_net(tmp_path / "net", "lo", "eth0")
    route = _routes(tmp_path, _route_line("lo", "224.0.0.0", "240.0.0.0"))
    if mode == "create" and shutil.which("ip") is None:
        mode, why = "loopback", "no `ip`"
    iso = netns.choose_isolation(allow_create=allow, net_dir=net, route_file=route, euid=euid)
    assert iso.mode == mode and why in iso.reason
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


def test_run_all_orders_transport_then_agreement_and_skips_helpers(tmp_path: Path) -> None:
    run_all = _mod("run_all")
    for name in ("zeta.py", "_helper.py", "agreement.py", "transport.py", "alpha.py", "notes.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in run_all.discover(tmp_path)] == [
        "transport.py",
        "agreement.py",
        "alpha.py",
        "zeta.py",
    ]


def test_run_all_skips_missing_benchmarks(tmp_path: Path) -> None:
    (tmp_path / "transport.py").write_text("")
    assert [p.name for p in _mod("run_all").discover(tmp_path)] == ["transport.py"]


def test_run_all_reports_status_and_kills_on_timeout(tmp_path: Path) -> None:
    run_all = _mod("run_all")
    ok = tmp_path / "ok.py"
    ok.write_text("import sys; sys.exit(0 if sys.argv[1:] == ['--quick', '-v'] else 5)\n")
    bad = tmp_path / "bad.py"
    bad.write_text("import sys; sys.exit(3 if sys.argv[1:] == ['-v'] else 4)  # no flag\n")
    slow = tmp_path / "slow.py"
    slow.write_text("import time; time.sleep(30)\n")
    started = time.monotonic()
    outcomes = run_all.run_scripts([ok, bad, slow], ["-v"], timeout=1.0, quick=True)
    assert time.monotonic() - started < 15
    assert [(o.script.name, o.returncode, o.ok) for o in outcomes] == [
        ("ok.py", 0, True),
        ("bad.py", 3, False),
        ("slow.py", None, False),
    ]


def _argv_recorders(tmp_path: Path, *names: str) -> dict[str, Path]:
    """Scripts named ``names`` that write their arguments (JSON) to ``<name>.argv``."""
    for name in names:
        (tmp_path / name).write_text(
            "import json, sys, pathlib  # takes --quick\n"
            "pathlib.Path(sys.argv[0] + '.argv').write_text(json.dumps(sys.argv[1:]))\n")
    return {name: tmp_path / f"{name}.argv" for name in names}


@pytest.mark.parametrize(("flags", "expected"), [
    ([], {"forward.py": ["--rows", "200000", "--outage", "60", "-v"],
          "dashboard.py": ["--days", "1", "-v"], "other.py": ["-v"]}),
    (["--full"], {"forward.py": ["-v"], "dashboard.py": ["-v"], "other.py": ["-v"]}),
    (["--quick"], {"forward.py": ["--quick", "-v"], "dashboard.py": ["--quick", "-v"],
                   "other.py": ["--quick", "-v"]}),
])
def test_run_all_gives_the_slow_benchmarks_smaller_sizes_unless_full(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str],
        expected: dict[str, list[str]]) -> None:
    # `make bench` ran forward.py (a 10-minute outage's backlog) and dashboard.py (a week
    # of history, a 90 s rollup) at full size; by default they now get DEFAULT_SIZES.
    run_all = _mod("run_all")
    argv = _argv_recorders(tmp_path, *expected)
    monkeypatch.setattr(run_all, "discover", lambda: [tmp_path / n for n in expected])
    assert run_all.main([*flags, "--timeout", "60", "--", "-v"]) == 0
    assert {name: json.loads(path.read_text()) for name, path in argv.items()} == expected


def test_run_all_refuses_full_with_quick() -> None:
    with pytest.raises(SystemExit):
        _mod("run_all").main(["--full", "--quick"])


@pytest.mark.parametrize("script", ["forward.py", "dashboard.py"])
def test_the_default_sizes_are_options_the_benchmarks_take(script: str) -> None:
    source = (BENCH / script).read_text()
    options = [a for a in _mod("run_all").DEFAULT_SIZES[script] if a.startswith("--")]
    assert options and all(f'"{option}"' in source for option in options)


def test_accepts_quick_reads_the_script(tmp_path: Path) -> None:
    run_all = _mod("run_all")
    (tmp_path / "a.py").write_text('p.add_argument("--quick")\n')
    (tmp_path / "b.py").write_text("print('no flags')\n")
    assert run_all.accepts_quick(tmp_path / "a.py")
    assert not run_all.accepts_quick(tmp_path / "b.py")
    assert not run_all.accepts_quick(tmp_path / "missing.py")
    assert run_all.accepts_quick(BENCH / "transport.py")


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


@pytest.mark.timeout(120)
def test_wire_codec_runs_quick_with_its_same_run_baseline() -> None:
    """bench/wire_codec.py: the cbor2 baseline, then every payload row with its ratio."""
    done = subprocess.run([sys.executable, str(BENCH / "wire_codec.py"), "--quick"],
                          capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("baseline, same run: cbor2.dumps")
    ratios = [line for line in lines if line.endswith("x cbor2")]
    assert len(ratios) == 4 and all(float(r.split()[-3]) > 0 for r in ratios), ratios
    assert any(line.startswith("SequenceTracker.observe") for line in lines)


@pytest.mark.timeout(120)
def test_keyed_cost_runs_quick_and_reports_every_keying() -> None:
    """bench/keyed_cost.py: every row and keying measured (each delivered in full, or it
    exits non-zero), over loopback only."""
    done = subprocess.run([sys.executable, str(BENCH / "keyed_cost.py"), "--quick"],
                          capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("receive", "publish"))]
    assert len(rows) == 4
    for row in rows:
        figures = re.findall(r"\d+\.\d+", row)
        assert len(figures) == 5 and all(float(f) > 0 for f in figures), row


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


# --- properties of the pure parts (hypothesis) -------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-3, max_value=40), max_size=200))
def test_tally_property_distinct_plus_duplicates_plus_strays_is_every_arrival(
    seqs: list[int],
) -> None:
    count = 30
    tally = _mod("_transport_common").Tally(count, record_latency=True)
    for i, seq in enumerate(seqs):
        tally.on_message(seq, 0, 1000 * (i + 1))
    valid = [s for s in seqs if 0 <= s < count]
    assert tally.received == len(set(valid))
    assert tally.duplicates == len(valid) - len(set(valid))
    assert tally.out_of_range == len(seqs) - len(valid)
    assert len(tally.latencies_ns) == tally.received
    assert tally.complete == (set(valid) == set(range(count)))
    if tally.received:
        assert tally.first_rx_ns <= tally.last_rx_ns


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=300),
    st.floats(min_value=0.1, max_value=100.0),
)
def test_percentile_property_is_a_sample_bounded_by_min_and_max(
    values: list[float], q: float
) -> None:
    common = _mod("_transport_common")
    p = common.percentile(values, q)
    assert p in values
    assert min(values) <= p <= max(values)
    # nearest rank: at least q% of the samples are <= p, fewer than q% are < p
    assert sum(v <= p for v in values) >= q / 100 * len(values) - 1e-9
    assert sum(v < p for v in values) < q / 100 * len(values) + 1e-9


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=50))
def test_percentile_property_is_monotone_in_q(values: list[float]) -> None:
    common = _mod("_transport_common")
    qs = [1, 10, 25, 50, 75, 90, 99, 100]
    ps = [common.percentile(values, q) for q in qs]
    assert ps == sorted(ps)
    assert ps[-1] == max(values)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=10_000), st.integers(min_value=0, max_value=10_000)
        ),
        min_size=1,
        max_size=8,
    )
)
def test_summarize_property_loss_is_pooled_and_bounded(pairs: list[tuple[int, int]]) -> None:
    report = _mod("_transport_report")
    trials = [_trial(sent=s, received=min(r, s)) for s, r in pairs]
    row = report.summarize("raw", trials)
    total_sent = sum(s for s, _ in pairs)
    total_received = sum(min(r, s) for s, r in pairs)
    assert row.sent == total_sent and row.received == total_received
    assert 0.0 <= row.loss <= 1.0
    assert row.loss == pytest.approx(1 - total_received / total_sent)


# --- more report cases ------------------------------------------------------------


def test_summarize_reports_messages_per_datagram_where_known() -> None:
    report = _mod("_transport_report")
    batched = [
        _trial(system="ganglion", extra={"published": 100, "datagrams_sent": 10}),
        _trial(system="ganglion", extra={"published": 100, "datagrams_sent": 20}),
        _trial(system="ganglion", extra={"published": 100, "datagrams_sent": 0}),
    ]
    row = report.summarize("ganglion", batched)
    assert row.per_datagram == pytest.approx(7.5)  # median of 10 and 5; 0 datagrams ignored
    assert "batching: 7.5 messages per datagram" in report.format_table(64, [row])
    assert math.isnan(report.summarize("raw", [_trial()]).per_datagram)
    progress = _mod("transport")._progress(batched[0])
    assert "(10.0 msg/datagram)" in progress


def test_summarize_with_only_paced_trials_has_no_throughput() -> None:
    report = _mod("_transport_report")
    row = report.summarize("lcm", [_trial(system="lcm", mode="paced", p50_us=3.0, p99_us=9.0)])
    assert row.blast_trials == 0 and row.paced_trials == 1
    assert math.isnan(row.delivered_per_s) and math.isnan(row.loss)
    assert row.p50_us == 3.0
    text = report.format_table(1024, [row])
    assert "payload 1024 B" in text and "(c) lcm" in text and "skipped" not in text


def test_keyed_rows_are_compared_with_keyless_ganglion_of_the_same_run() -> None:
    report = _mod("_transport_report")
    rows = [
        report.summarize("ganglion", [_trial(system="ganglion", received=400)]),
        report.summarize("ganglion+key", [_trial(system="ganglion+key", received=250)]),
        report.summarize("ganglion+aead", [_trial(system="ganglion+aead", received=200)]),
    ]
    costs = report.keyed_costs(rows)
    ratio, extra_us = costs["throughput b+e/b"]
    assert ratio == pytest.approx(0.5)
    assert extra_us == pytest.approx(1e6 / 200 - 1e6 / 400)  # 2,500 us more per message
    assert costs["throughput b+k/b"][0] == pytest.approx(0.625)
    text = report.format_table(64, rows)
    assert "(b+e) ganglion+aead" in text and "0.50x" in text and "+2500.00 us per message" in text
    blob = report.report_json([64], {64: rows}, [], {})
    assert blob["sizes"]["64"]["keyed"]["throughput b+e/b"]["ratio"] == pytest.approx(0.5)


def test_format_table_shows_notes_of_systems_that_ran() -> None:
    report = _mod("_transport_report")
    row = report.summarize("raw", [_trial()], note="paced trial failed: timeout")
    text = report.format_table(64, [row])
    assert "note: paced trial failed: timeout" in text
    assert text.endswith("\n")
    assert all(key in text for key in report.TARGETS)


def test_row_to_json_maps_nan_to_null() -> None:
    report = _mod("_transport_report")
    row = report.summarize("raw", [])
    j = row.to_json()
    assert j["system"] == "raw" and j["delivered_per_s"] is None and j["p50_us"] is None
    json.dumps(j, allow_nan=False)


def test_ratios_with_zero_denominator_are_nan() -> None:
    report = _mod("_transport_report")
    rows = [
        report.summarize("raw", [_trial(mode="paced", p50_us=0.0)]),
        report.summarize("ganglion", [_trial(system="ganglion", mode="paced", p50_us=5.0)]),
    ]
    assert math.isnan(report.ratios(rows)["p50 latency b/a"])


# --- runner internals ---------------------------------------------------------------


def _sh_proc(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)


def test_line_reader_splits_lines_and_reports_eof() -> None:
    runner = _mod("_transport_runner")
    proc = _sh_proc("import sys; sys.stdout.write('one\\ntwo\\nthree'); sys.stdout.flush()")
    try:
        reader = runner._LineReader(proc)
        assert reader.readline(10.0) == "one"
        assert reader.readline(10.0) == "two"
        assert reader.readline(10.0) is None  # 'three' never got its newline
    finally:
        runner._kill(proc)


def test_line_reader_times_out_on_a_silent_child() -> None:
    runner = _mod("_transport_runner")
    proc = _sh_proc("import time; time.sleep(20)")
    try:
        started = time.monotonic()
        assert runner._LineReader(proc).readline(0.3) is None
        assert time.monotonic() - started < 5
    finally:
        runner._kill(proc)
    assert proc.returncode is not None  # killed and reaped


@pytest.mark.parametrize(
    ("line", "error", "match"),
    [
        (None, "TrialError", "timed out"),
        ("garbage", "TrialError", "garbage"),
        ("[1]", "TrialError", "not an object"),
        ('{"nothing": 1}', "TrialError", "no 'result'"),
        ('{"error": "lcm sub: no route"}', "SystemUnavailable", "no route"),
    ],
)
def test_result_line_errors(tmp_path: Path, line: str | None, error: str, match: str) -> None:
    runner = _mod("_transport_runner")
    with (tmp_path / "err").open("w+b") as err:
        err.write(b"some stderr")
        with pytest.raises(getattr(runner, error), match=match):
            runner._result(line, err)


def test_result_timeout_message_includes_stderr_tail(tmp_path: Path) -> None:
    runner = _mod("_transport_runner")
    with (tmp_path / "err").open("w+b") as err:
        err.write(b"Traceback: boom")
        with pytest.raises(runner.TrialError, match="boom"):
            runner._result(None, err)


def test_expect_ready_refuses_other_lines(tmp_path: Path) -> None:
    runner = _mod("_transport_runner")
    with (tmp_path / "err").open("w+b") as err:
        runner._expect_ready("READY", err)
        with pytest.raises(runner.TrialError, match="instead of READY"):
            runner._expect_ready('{"result": {}}', err)


def test_combine_builds_a_trial_result() -> None:
    runner = _mod("_transport_runner")
    sub_cfg, _ = _cfgs("raw", "paced", 1, "239.255.201.1", 10)
    pub = {"sent": 10, "t_start_ns": 1_000, "t_end_ns": 1_000_001_000}
    sub = {
        "received": 9,
        "duplicates": 1,
        "first_rx_ns": 0,
        "last_rx_ns": 500_000_000,
        "p50_us": 12.5,
        "p99_us": 40,
        "out_of_range": 0,
        "rcvbuf": 1234,
        "ignored": 1,
    }
    r = runner._combine(sub_cfg, pub, sub)
    assert (r.system, r.mode, r.size, r.sent, r.received, r.duplicates) == (
        "raw",
        "paced",
        64,
        10,
        9,
        1,
    )
    assert r.send_seconds == pytest.approx(1.0) and r.rx_seconds == pytest.approx(0.5)
    assert r.p50_us == 12.5 and r.p99_us == 40.0
    assert r.extra == {"out_of_range": 0, "rcvbuf": 1234}


@pytest.mark.parametrize("broken", [{"received": "x"}, {"p50_us": "fast"}, {"last_rx_ns": None}])
def test_combine_refuses_incomplete_results(broken: dict[str, Any]) -> None:
    runner = _mod("_transport_runner")
    sub_cfg, _ = _cfgs("raw", "paced", 1, "239.255.201.1", 10)
    pub = {"sent": 10, "t_start_ns": 0, "t_end_ns": 1}
    sub = {"received": 9, "duplicates": 0, "first_rx_ns": 0, "last_rx_ns": 5}
    sub.update(broken)
    with pytest.raises(runner.TrialError, match="incomplete"):
        runner._combine(sub_cfg, pub, sub)


def test_run_trial_refuses_swapped_roles() -> None:
    runner = _mod("_transport_runner")
    sub_cfg, pub_cfg = _cfgs("raw", "blast", 1, "239.255.201.1", 10)
    with pytest.raises(ValueError, match="'sub' config"):
        runner.run_trial(pub_cfg, sub_cfg)


def test_worker_env_puts_repo_and_bench_first(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = _mod("_transport_runner")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    parts = runner.worker_env()["PYTHONPATH"].split(os.pathsep)
    assert parts == [str(BENCH.parent), str(BENCH), "/elsewhere"]


def test_worker_usage_without_a_config() -> None:
    assert _mod("_transport_worker").main([]) == 2


def test_worker_reports_a_failing_system_as_unavailable(
    capsys: pytest.CaptureFixture[str], free_udp_port: int
) -> None:
    worker = _mod("_transport_worker")
    sub_cfg, _ = _cfgs("raw", "blast", free_udp_port, "192.0.2.1", 5)
    assert worker.main([sub_cfg.to_arg()]) == worker.EXIT_UNAVAILABLE
    assert json.loads(capsys.readouterr().out)["error"].startswith("raw sub: ")


def test_worker_publisher_prints_its_result(
    capsys: pytest.CaptureFixture[str], multicast_loopback: str, free_udp_port: int, test_group: str
) -> None:
    worker = _mod("_transport_worker")
    _, pub_cfg = _cfgs("raw", "blast", free_udp_port, test_group, 20)
    assert worker.main([pub_cfg.to_arg()]) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    assert result["sent"] == 20 and result["t_end_ns"] >= result["t_start_ns"]


# --- raw backend in-process ---------------------------------------------------------


def test_raw_sockets_are_pinned_to_loopback(
    multicast_loopback: str, free_udp_port: int, test_group: str
) -> None:
    import socket

    raw = _mod("_transport_raw")
    with raw.open_sender() as tx:
        iface = tx.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
        assert socket.inet_ntoa(iface) == "127.0.0.1"
        assert tx.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
    with raw.open_receiver(test_group, free_udp_port) as rx:
        assert rx.getsockopt(socket.IPPROTO_IP, raw.IP_MULTICAST_ALL) == 0
        assert rx.getsockname() == (test_group, free_udp_port)
        assert rx.gettimeout() is None  # blocking: SO_RCVTIMEO wakes it, not a poll


def test_raw_receiver_wakes_on_its_timeout(
    multicast_loopback: str, free_udp_port: int, test_group: str
) -> None:
    raw = _mod("_transport_raw")
    with raw.open_receiver(test_group, free_udp_port) as rx:
        started = time.monotonic()
        with pytest.raises(BlockingIOError):
            rx.recv_into(bytearray(64))
        assert time.monotonic() - started < 2.0


def test_raw_receiver_rejects_a_non_local_bind(free_udp_port: int) -> None:
    with pytest.raises(OSError):
        _mod("_transport_raw").open_receiver("192.0.2.1", free_udp_port)


@pytest.mark.timeout(30)
def test_raw_subscriber_and_publisher_in_threads(
    multicast_loopback: str, free_udp_port: int, test_group: str
) -> None:
    import threading

    raw = _mod("_transport_raw")
    sub_cfg, pub_cfg = _cfgs("raw", "paced", free_udp_port, test_group, 30, rate=1000.0)
    ready = threading.Event()
    summary: dict[str, Any] = {}

    def subscribe() -> None:
        summary.update(raw.run_subscriber(sub_cfg, ready.set))

    thread = threading.Thread(target=subscribe)
    thread.start()
    try:
        assert ready.wait(5.0)
        pub = raw.run_publisher(pub_cfg)
    finally:
        thread.join(timeout=25.0)
    assert not thread.is_alive()
    assert pub["sent"] == 30
    assert pub["t_end_ns"] - pub["t_start_ns"] >= 25_000_000  # 29 gaps of 1 ms
    assert 0 < summary["received"] <= 30 and summary["latency_samples"] == summary["received"]
    assert summary["rcvbuf"] > 0 and summary["p50_us"] > 0


def test_sleep_until_waits_for_the_target_and_not_for_the_past() -> None:
    role = _mod("_transport_role")
    started = time.monotonic_ns()
    role.sleep_until(started + 20_000_000)
    assert time.monotonic_ns() - started >= 20_000_000
    before = time.monotonic_ns()
    role.sleep_until(before - 1_000_000_000)
    assert time.monotonic_ns() - before < 500_000_000


# --- the orchestration loop with a fake trial runner ------------------------------


class _FakeTrials:
    """Stands in for run_trial: scripted failures, otherwise a plausible result."""

    def __init__(self, fail: dict[tuple[str, str], Exception] | None = None) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.fail = fail or {}

    def __call__(self, sub_cfg: Any, pub_cfg: Any) -> Any:
        assert sub_cfg.role == "sub" and pub_cfg.role == "pub"
        assert (sub_cfg.system, sub_cfg.mode, sub_cfg.size) == (
            pub_cfg.system,
            pub_cfg.mode,
            pub_cfg.size,
        )
        self.calls.append((sub_cfg.system, sub_cfg.mode, sub_cfg.size))
        exc = self.fail.get((sub_cfg.system, sub_cfg.mode))
        if exc is not None:
            raise exc
        paced = sub_cfg.mode == "paced"
        return _trial(
            system=sub_cfg.system,
            mode=sub_cfg.mode,
            size=sub_cfg.size,
            sent=sub_cfg.count,
            received=sub_cfg.count,
            p50_us=10.0 if paced else None,
            p99_us=20.0 if paced else None,
        )


def _plan(**kw: Any) -> Any:
    fields: dict[str, Any] = {
        "sizes": (64, 1024),
        "systems": ("raw", "ganglion", "lcm"),
        "trials": 2,
        "blast_count": 100,
        "paced_count": 10,
        "rate": 1000.0,
    }
    fields.update(kw)
    return _mod("transport").Plan(**fields)


def test_run_benchmark_runs_every_system_mode_size_and_trial() -> None:
    transport = _mod("transport")
    fake = _FakeTrials()
    lines: list[str] = []
    out = transport.run_benchmark(_plan(), log=lines.append, trial=fake)
    assert len(fake.calls) == 2 * 2 * 3 * 2
    assert fake.calls[:6] == [
        ("raw", "blast", 64),
        ("raw", "paced", 64),
        ("ganglion", "blast", 64),
        ("ganglion", "paced", 64),
        ("lcm", "blast", 64),
        ("lcm", "paced", 64),
    ]
    assert len(out.trials) == 24 and out.notes == {}
    assert len(lines) == 24 and "trial 2/2" in lines[-1]


def test_run_benchmark_drops_an_unavailable_system_for_the_rest_of_the_run() -> None:
    transport = _mod("transport")
    runner = _mod("_transport_runner")
    fake = _FakeTrials({("ganglion", "blast"): runner.SystemUnavailable("no Endpoint")})
    out = transport.run_benchmark(_plan(), log=lambda _l: None, trial=fake)
    assert [c for c in fake.calls if c[0] == "ganglion"] == [("ganglion", "blast", 64)]
    assert out.notes == {(64, "ganglion"): "no Endpoint", (1024, "ganglion"): "no Endpoint"}
    assert {t.system for t in out.trials} == {"raw", "lcm"}


def test_run_benchmark_notes_a_failed_trial_and_carries_on() -> None:
    transport = _mod("transport")
    runner = _mod("_transport_runner")
    fake = _FakeTrials({("lcm", "paced"): runner.TrialError("timed out")})
    out = transport.run_benchmark(_plan(sizes=(64,), trials=2), log=lambda _l: None, trial=fake)
    assert ("lcm", "blast", 64) in fake.calls
    note = out.notes[(64, "lcm")]
    assert note == "paced trial failed: timed out; paced trial failed: timed out"
    assert sum(t.system == "lcm" for t in out.trials) == 2  # both blast trials kept


def test_run_benchmark_honours_skip_reasons() -> None:
    transport = _mod("transport")
    fake = _FakeTrials()
    plan = _plan(sizes=(64,), trials=1, skip_reasons={"lcm": "not isolated"})
    out = transport.run_benchmark(plan, log=lambda _l: None, trial=fake)
    assert all(c[0] != "lcm" for c in fake.calls)
    assert out.notes == {(64, "lcm"): "not isolated"}


def test_outcome_notes_stay_short() -> None:
    out = _mod("transport").Outcome()
    for _ in range(100):
        out.add_note(64, "raw", "x" * 50)
    assert len(out.notes[(64, "raw")]) == 400


def test_main_in_loopback_mode_writes_json_and_exits_zero_when_only_lcm_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    transport = _mod("transport")
    netns = _mod("_transport_netns")
    monkeypatch.setattr(
        transport,
        "choose_isolation",
        lambda allow_create: netns.Isolation("loopback", "test: no namespace"),
    )
    monkeypatch.setattr(transport, "run_trial", _FakeTrials())
    out_file = tmp_path / "r.json"
    code = transport.main(
        ["--trials", "2", "--count", "50", "--duration", "0.01", "--json", str(out_file)]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "skipped: test: no namespace" in text and "throughput b/a" in text
    data = json.loads(out_file.read_text())
    assert data["meta"]["isolation"] == {"mode": "loopback", "reason": "test: no namespace"}
    assert data["meta"]["trials"] == 2 and data["meta"]["blast_count"] == 50
    # sizes x trials x (raw, ganglion, ganglion+key, ganglion+aead) x modes
    assert len(data["trials"]) == 2 * 2 * 4 * 2
    assert data["sizes"]["64"]["ratios"]["throughput b/a"] == pytest.approx(1.0)


def test_main_exits_one_when_a_trial_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = _mod("transport")
    netns = _mod("_transport_netns")
    runner = _mod("_transport_runner")
    monkeypatch.setattr(
        transport, "choose_isolation", lambda allow_create: netns.Isolation("inside", "test")
    )
    monkeypatch.setattr(
        transport, "run_trial", _FakeTrials({("raw", "blast"): runner.TrialError("crashed")})
    )
    assert transport.main(["--quick", "--sizes", "64"]) == 1


def test_main_reexecutes_itself_in_a_namespace_when_it_can(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = _mod("transport")
    netns = _mod("_transport_netns")
    seen: dict[str, Any] = {}

    def fake_run_in_namespace(argv: list[str], *, timeout: float) -> int:
        seen["argv"], seen["timeout"] = argv, timeout
        return 7

    monkeypatch.setattr(
        transport, "choose_isolation", lambda allow_create: netns.Isolation("create", "root")
    )
    monkeypatch.setattr(transport, "run_in_namespace", fake_run_in_namespace)
    assert transport.main(["--quick", "--timeout", "99"]) == 7
    assert seen["argv"][1:] == [str(BENCH / "transport.py"), "--quick", "--timeout", "99"]
    assert seen["timeout"] == 99.0


def test_no_netns_flag_is_passed_to_the_isolation_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    transport = _mod("transport")
    netns = _mod("_transport_netns")
    seen: list[bool] = []

    def choose(allow_create: bool) -> Any:
        seen.append(allow_create)
        return netns.Isolation("loopback", "t")

    monkeypatch.setattr(transport, "choose_isolation", choose)
    monkeypatch.setattr(transport, "run_trial", _FakeTrials())
    transport.main(["--no-netns", "--quick", "--systems", "raw", "--sizes", "64"])
    assert seen == [False]


# --- run_all main --------------------------------------------------------------------


def test_run_all_main_passes_quick_and_extra_args(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_all = _mod("run_all")
    seen: dict[str, Any] = {}

    def fake_run(
        scripts: list[Path], extra: list[str], *, timeout: float, quick: bool, sizes: Any
    ) -> list[Any]:
        seen.update(scripts=scripts, extra=extra, timeout=timeout, quick=quick)
        return [run_all.Outcome(s, 0, 0.1) for s in scripts]

    monkeypatch.setattr(run_all, "discover", lambda: [Path("transport.py")])
    monkeypatch.setattr(run_all, "run_scripts", fake_run)
    assert run_all.main(["--quick", "--timeout", "5", "--", "--trials", "2"]) == 0
    assert seen["extra"] == ["--trials", "2"] and seen["quick"] and seen["timeout"] == 5.0
    assert "transport.py" in capsys.readouterr().out


def test_run_all_main_fails_when_nothing_or_something_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_all = _mod("run_all")
    monkeypatch.setattr(run_all, "discover", lambda: [])
    assert run_all.main([]) == 2
    monkeypatch.setattr(run_all, "discover", lambda: [Path("a.py"), Path("b.py")])
    monkeypatch.setattr(
        run_all,
        "run_scripts",
        lambda scripts, extra, *, timeout, quick, sizes: [
            run_all.Outcome(scripts[0], 0, 1.0),
            run_all.Outcome(scripts[1], None, 1.0),
        ],
    )
    assert run_all.main([]) == 1


# --- namespaces (root with ip netns only) -----------------------------------------


def _need_netns() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and ip netns")


@pytest.mark.timeout(60)
def test_run_in_namespace_gives_only_loopback_and_removes_the_namespace() -> None:
    _need_netns()
    netns = _mod("_transport_netns")
    name = f"gbench-t-{os.getpid()}"
    code = netns.run_in_namespace(
        [
            sys.executable,
            "-c",
            "import os, sys; sys.exit(0 if os.listdir('/sys/class/net') == ['lo'] "
            f"and os.environ['{netns.ENV_NETNS}'] == '{name}' else 9)",
        ],
        timeout=30,
        name=name,
    )
    assert code == 0
    assert not netns.namespace_exists(name)


@pytest.mark.timeout(60)
def test_run_in_namespace_removes_it_after_failure_and_timeout() -> None:
    _need_netns()
    netns = _mod("_transport_netns")
    name = f"gbench-f-{os.getpid()}"
    assert (
        netns.run_in_namespace([sys.executable, "-c", "raise SystemExit(4)"], timeout=30, name=name)
        == 4
    )
    assert not netns.namespace_exists(name)
    started = time.monotonic()
    code = netns.run_in_namespace(
        [sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5, name=name
    )
    assert code == 124 and time.monotonic() - started < 20
    assert not netns.namespace_exists(name)


@pytest.mark.timeout(60)
def test_run_in_namespace_cleans_up_when_setup_fails() -> None:
    _need_netns()
    netns = _mod("_transport_netns")
    with pytest.raises(subprocess.CalledProcessError):
        netns.run_in_namespace(["true"], timeout=5, name="bad/name")
    assert not netns.namespace_exists("bad/name")


# --- timeouts and clean-up of the orchestration ------------------------------------


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable that stands in for the interpreter and ignores its arguments."""
    path = tmp_path / "fake-python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.timeout(30)
def test_run_trial_times_out_a_subscriber_that_never_gets_ready(tmp_path: Path) -> None:
    runner = _mod("_transport_runner")
    fake = _fake_python(tmp_path, "echo $$ > " + str(tmp_path / "pid") + "; exec sleep 30")
    sub_cfg, pub_cfg = _cfgs("raw", "blast", 1, "239.255.201.1", 10)
    started = time.monotonic()
    with pytest.raises(runner.TrialError, match="timed out"):
        runner.run_trial(sub_cfg, pub_cfg, startup_timeout=0.5, python=fake)
    assert time.monotonic() - started < 10
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped, not left behind


@pytest.mark.timeout(30)
def test_run_trial_kills_both_children_when_the_publisher_hangs(tmp_path: Path) -> None:
    runner = _mod("_transport_runner")
    # Both roles run this: print READY (subscriber's cue), then hang.
    fake = _fake_python(
        tmp_path, "echo $$ >> " + str(tmp_path / "pids") + "; echo READY; exec sleep 30"
    )
    role = _mod("_transport_role")
    common: dict[str, Any] = {
        "system": "raw",
        "mode": "blast",
        "size": 64,
        "count": 1,
        "deadline_s": 0.5,
    }
    sub_cfg, pub_cfg = role.RoleConfig(role="sub", **common), role.RoleConfig(role="pub", **common)
    with pytest.raises(runner.TrialError):
        runner.run_trial(sub_cfg, pub_cfg, startup_timeout=0.5, python=fake)
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.timeout(30)
def test_raw_subscriber_gives_up_when_nobody_publishes(
    multicast_loopback: str, free_udp_port: int, test_group: str
) -> None:
    raw = _mod("_transport_raw")
    sub_cfg, _ = _cfgs("raw", "blast", free_udp_port, test_group, 10, first_timeout_s=0.2)
    started = time.monotonic()
    summary = raw.run_subscriber(sub_cfg, lambda: None)
    assert 0.2 <= time.monotonic() - started < 5
    assert summary["received"] == 0 and summary["p50_us"] is None


@pytest.mark.timeout(60)
def test_run_in_namespace_removes_it_when_terminated(tmp_path: Path) -> None:
    _need_netns()
    import signal

    name = f"gbench-s-{os.getpid()}"
    ready = tmp_path / "ready"
    inner = tmp_path / "inner.py"
    inner.write_text(
        f"import pathlib, time\npathlib.Path({str(ready)!r}).touch()\ntime.sleep(30)\n"
    )
    code = (
        f"import sys; sys.path.insert(0, {str(BENCH)!r}); import _transport_netns as n; "
        f"sys.exit(n.run_in_namespace([sys.executable, {str(inner)!r}], timeout=40, name={name!r}))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the command never started inside the namespace"
        assert _mod("_transport_netns").namespace_exists(name)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert not _mod("_transport_netns").namespace_exists(name)


@pytest.mark.timeout(90)
def test_lcm_trials_run_in_a_namespace_with_the_route() -> None:
    """System (c) end to end in a namespace this test makes (root only)."""
    _need_netns()
    pytest.importorskip("lcm")
    netns = _mod("_transport_netns")
    script = (
        f"import sys; sys.path.insert(0, {str(BENCH)!r})\n"
        "from _transport_role import RoleConfig\n"
        "from _transport_runner import run_trial\n"
        "for mode, count in (('blast', 2000), ('paced', 50)):\n"
        "    kw = dict(system='lcm', mode=mode, size=64, count=count, idle_s=0.3,\n"
        "              lcm_url='udpm://239.255.202.3:47993?ttl=0')\n"
        "    r = run_trial(RoleConfig(role='sub', **kw), RoleConfig(role='pub', **kw))\n"
        "    assert r.sent == count and 0 < r.received <= count, r\n"
        "    assert r.duplicates == 0 and 0.0 <= r.loss <= 1.0, r\n"
        "    if mode == 'paced':\n"
        "        assert r.p50_us is not None and 0 < r.p50_us <= r.p99_us, r\n"
    )
    name = f"gbench-l-{os.getpid()}"
    assert netns.run_in_namespace([sys.executable, "-c", script], timeout=60, name=name) == 0
    assert not netns.namespace_exists(name)


# --- small helpers of the command ------------------------------------------------


def test_progress_lines_for_both_modes() -> None:
    transport = _mod("transport")
    blast = transport._progress(_trial(sent=10, received=9, rx_seconds=0.5))
    assert blast.startswith("recv 9/10") and "10.00%" in blast and "18 msg/s" in blast
    paced = transport._progress(_trial(mode="paced", p50_us=12.34, p99_us=56.78))
    assert "p50 12.3 us" in paced and "p99 56.8 us" in paced


@pytest.mark.parametrize(
    ("text", "sizes"), [("64", [64]), ("64,1024", [64, 1024]), (" 16 , 1300 ", [16, 1300])]
)
def test_sizes_argument(text: str, sizes: list[int]) -> None:
    assert _mod("transport")._sizes(text) == sizes


def test_systems_argument_keeps_order() -> None:
    assert _mod("transport")._systems("lcm, raw") == ["lcm", "raw"]


def test_default_plan_is_the_full_run() -> None:
    transport = _mod("transport")
    netns = _mod("_transport_netns")
    plan = transport.build_plan(transport.parse_args([]), netns.Isolation("inside", "ns"))
    assert plan.trials == 5 and plan.blast_count == transport.DEFAULT_COUNT
    assert plan.paced_count == 2000 and plan.rate == 1000.0
    assert plan.sizes == (64, 1024)
    assert plan.systems == ("raw", "ganglion", "ganglion+key", "ganglion+aead", "lcm")
    assert plan.skip_reasons == {}
    ports = {plan.configs(s, "blast", 64)[0].port for s in plan.systems}
    assert len(ports) == 5  # one port per system: no cross-talk between systems


# --- the ganglion backend against an in-memory stand-in for Endpoint -----------------


class _FakeBus:
    """Connects fake endpoints in one event loop: publish hands messages to subscribers."""

    def __init__(self) -> None:
        self.published: list[Any] = []
        self.callbacks: list[tuple[type, Any]] = []
        self.flushes = 0
        self.opened: list[dict[str, Any]] = []


def _fake_endpoint_module(bus: _FakeBus) -> ModuleType:
    import asyncio

    class FakeEndpoint:
        def __init__(self, *, interface: str, port: int) -> None:
            bus.opened.append({"interface": interface, "port": port})
            self._pending: list[Any] = []

        async def __aenter__(self) -> FakeEndpoint:
            return self

        async def __aexit__(self, *exc: object) -> None:
            self._flush()

        def publish(self, msg: Any) -> None:
            # Like the real one: batch within a loop iteration, flush on the next.
            if not self._pending:
                asyncio.get_running_loop().call_soon(self._flush)
            self._pending.append(msg)

        def _flush(self) -> None:
            if self._pending:
                bus.flushes += 1
            for msg in self._pending:
                bus.published.append(msg)
                for cls, callback in bus.callbacks:
                    if isinstance(msg, cls):
                        callback(msg, {"sender": "fake"})
            self._pending = []

        def subscribe(self, cls: type, *, callback: Any) -> object:
            bus.callbacks.append((cls, callback))
            return object()

        def stats(self) -> Any:
            from types import SimpleNamespace

            n = len(bus.published)
            return SimpleNamespace(
                received=n,
                lost=0,
                published=n,
                datagrams_sent=bus.flushes,
                streams={"not": "an int"},
            )

    module = ModuleType("ganglion.runtime.endpoint")
    module.Endpoint = FakeEndpoint  # type: ignore[attr-defined]
    return module


@pytest.fixture
def fake_ganglion(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, _FakeBus]]:
    """Import the ganglion backend against a fake Endpoint and a pass-through @message."""
    import ganglion

    bus = _FakeBus()
    monkeypatch.setitem(sys.modules, "ganglion.runtime.endpoint", _fake_endpoint_module(bus))
    monkeypatch.setattr(ganglion, "message", lambda _name: lambda cls: cls, raising=False)
    monkeypatch.delitem(sys.modules, "_transport_ganglion", raising=False)
    backend = _mod("_transport_ganglion")
    monkeypatch.setattr(backend, "FLUSH_SECONDS", 0.0)
    yield backend, bus
    sys.modules.pop("_transport_ganglion", None)


def test_ganglion_blast_publisher_yields_so_batches_flush(
    fake_ganglion: tuple[ModuleType, _FakeBus],
) -> None:
    backend, bus = fake_ganglion
    _, pub_cfg = _cfgs("ganglion", "blast", 47000, "239.255.201.1", 100, size=100, yield_every=8)
    result = backend.run_publisher(pub_cfg)
    assert result["sent"] == 100
    assert [m.seq for m in bus.published] == list(range(100))
    assert all(len(m.data) == 100 - 16 for m in bus.published)
    assert 12 <= bus.flushes <= 14  # one flush per 8 publishes, plus the tail
    assert result["published"] == 100 and result["datagrams_sent"] == bus.flushes
    assert bus.opened == [{"interface": "127.0.0.1", "port": 47000}]


def test_ganglion_paced_publisher_flushes_every_message(
    fake_ganglion: tuple[ModuleType, _FakeBus],
) -> None:
    backend, bus = fake_ganglion
    _, pub_cfg = _cfgs("ganglion", "paced", 47000, "239.255.201.1", 20, rate=2000.0)
    result = backend.run_publisher(pub_cfg)
    assert bus.flushes == 20
    assert result["t_end_ns"] - result["t_start_ns"] >= 19 * 500_000
    stamps = [m.t_ns for m in bus.published]
    assert stamps == sorted(stamps) and stamps[0] >= result["t_start_ns"]


def test_ganglion_subscriber_tallies_what_the_endpoint_delivers(
    fake_ganglion: tuple[ModuleType, _FakeBus],
) -> None:
    import asyncio

    backend, _bus = fake_ganglion
    sub_cfg, pub_cfg = _cfgs("ganglion", "paced", 47000, "239.255.201.1", 30, rate=5000.0)

    async def both() -> dict[str, Any]:
        ready = asyncio.Event()
        sub = asyncio.ensure_future(backend._subscribe(sub_cfg, ready.set))
        await asyncio.wait_for(ready.wait(), 5.0)
        await backend._publish(pub_cfg)
        return await asyncio.wait_for(sub, 10.0)

    summary = asyncio.run(both())
    assert summary["received"] == 30 and summary["duplicates"] == 0
    assert summary["latency_samples"] == 30 and summary["p50_us"] >= 0
    assert summary["endpoint_stats"] == {"received": 30, "lost": 0}
