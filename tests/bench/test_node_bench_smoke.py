"""Smoke and unit tests for the node benchmark (bench/node.py and its _node_* helpers).

The pure parts (tally, line protocol, report, plan, arguments, VmRSS parsing,
pyplexo fallback) are tested directly. One test runs the real harness -- start-up,
agreement, node-to-node and plugin-bus traffic, in-process -- with one trial of
quick counts inside the fresh network namespace the script creates; it is skipped
with the reason where namespaces cannot be made. No test asserts a speed: only
that the harness runs, cleans up, and its numbers are sane.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


@pytest.fixture(scope="module", autouse=True)
def bench_on_path() -> Iterator[None]:
    """Make the bench helper modules importable (bench/ is scripts, not a package).

    Appended, not prepended: no script in bench/ may shadow an installed package.
    """
    sys.path.append(str(BENCH))
    yield
    sys.path.remove(str(BENCH))


def _mod(name: str) -> ModuleType:
    import importlib

    return importlib.import_module(name)


# --- tally and line protocol --------------------------------------------------------


def test_tally_counts_distinct_messages_and_ignores_out_of_range() -> None:
    tally = _mod("_node_common").Tally(3, keep_latency=True)
    tally.add(0, 1_000, 3_000)
    tally.add(0, 1_000, 4_000)
    tally.add(7, 1_000, 4_000)
    assert not tally.complete
    tally.add(1, 2_000, 5_000)
    tally.add(2, 2_000, 1_000_003_000)
    assert tally.complete
    result = tally.result()
    assert (result["received"], result["duplicates"]) == (3, 1)
    assert result["rx_seconds"] == pytest.approx(1.0)
    assert result["delivered_per_s"] == pytest.approx(3.0)
    assert result["latencies_us"] == [2.0, 3.0, 1_000_001.0]


def test_tally_without_arrivals_has_zero_rate() -> None:
    result = _mod("_node_common").Tally(5, keep_latency=False).result()
    assert result["received"] == 0 and result["delivered_per_s"] == 0.0


def test_parse_line_accepts_only_event_objects(capsys: pytest.CaptureFixture[str]) -> None:
    common = _mod("_node_common")
    common.emit("ready", peers=2)
    line = capsys.readouterr().out
    assert common.parse_line(line) == {"event": "ready", "peers": 2}
    for bad in ("", "hello", "{not json", '{"peers": 2}', '{"event": 3}', "[1]"):
        assert common.parse_line(bad) is None


def test_every_measurement_has_its_own_port_pair() -> None:
    ports = list(_mod("_node_common").PORTS.values())
    used = ports + [p + 1 for p in ports]
    assert len(set(used)) == len(used)


# --- report ---------------------------------------------------------------------------


def test_row_ratio_and_verdict() -> None:
    row_cls = _mod("_node_report").Row
    assert row_cls("x", (10.0, 30.0, 20.0), "ms", "<", 50.0).met is True
    assert row_cls("x", (60.0,), "ms", "<", 50.0).met is False
    high = row_cls("x", (500.0,), "msg/s", ">=", 410.0)
    assert high.met is True and high.ratio == pytest.approx(500 / 410)
    assert row_cls("x", (), "ms", "<", 50.0).met is None
    assert math.isnan(row_cls("x", (1.0,), "ms").ratio)


def test_build_rows_and_table_show_values_targets_and_failures() -> None:
    report = _mod("_node_report")
    results = {"agree10": [{"publisher_ms": 30.0, "all_ms": 40.0},
                           {"publisher_ms": 35.0, "all_ms": 60.0},
                           {"publisher_ms": 20.0, "all_ms": 45.0}],
               "e2e_internal_blast": [{"loss": 0.25}]}
    rows = report.build_rows(results, {"startup": "boom"}, reference=41_000.0,
                             reference_label="quoted")
    by_label = {r.label: r for r in rows}
    agreed = by_label["new type, 10 nodes: all maps have it"]
    assert agreed.median == 45.0 and agreed.met is True
    assert by_label["node->node (internal) blast loss"].values == (25.0,)
    inproc = by_label["in-process publish->callback"]
    assert inproc.target == 410_000.0 and inproc.op == ">="
    text = report.format_table(rows)
    assert "not run: boom" in text
    assert "45.0" in text and "met" in text


# --- plan, arguments, processes ---------------------------------------------------------


def test_trials_override_every_trial_count() -> None:
    node = _mod("node")
    quick = node.make_plan(True, None)
    assert quick.startup_trials == 2 and quick.agree_trials == 3
    plan = node.make_plan(False, 4)
    assert {plan.startup_trials, plan.agree_trials, plan.e2e_trials, plan.rss_trials,
            plan.inprocess_trials, plan.plexo_trials} == {4}
    assert plan.blast_count == node.make_plan(False, None).blast_count


def test_arguments_reject_unknown_steps_and_bad_trials() -> None:
    node = _mod("node")
    assert node.parse_args(["--only", "agree, rss"]).only == ["agree", "rss"]
    for bad in (["--only", "agree,nope"], ["--only", ""], ["--trials", "0"]):
        with pytest.raises(SystemExit):
            node.parse_args(bad)


def test_rss_reads_vmrss_and_reports_a_missing_process(tmp_path: Path) -> None:
    procs = _mod("_node_procs")
    assert procs.rss_kib(os.getpid()) > 1000
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "status").write_text("Name:\tx\nVmRSS:\t  1234 kB\n")
    assert procs.rss_kib(42, tmp_path) == 1234
    (tmp_path / "43").mkdir()
    (tmp_path / "43" / "status").write_text("Name:\tzombie\n")
    with pytest.raises(procs.ProcError, match="no VmRSS"):
        procs.rss_kib(43, tmp_path)
    with pytest.raises(procs.ProcError, match="cannot read"):
        procs.rss_kib(44, tmp_path)


def test_cpu_and_wakeups_sum_threads_and_report_a_missing_process(tmp_path: Path) -> None:
    procs = _mod("_node_procs")
    cpu, switches = procs.cpu_and_wakeups(os.getpid())
    assert cpu > 0 and switches >= 0
    base = tmp_path / "42"
    (base / "task" / "42").mkdir(parents=True)
    (base / "task" / "43").mkdir()
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S"] + ["0"] * 10 + [str(3 * ticks), str(ticks)] + ["0"] * 30
    (base / "stat").write_text("42 (a (b) c) " + " ".join(fields) + "\n")
    (base / "task" / "42" / "status").write_text("voluntary_ctxt_switches:\t100\n")
    (base / "task" / "43" / "status").write_text("voluntary_ctxt_switches:\t23\n"
                                                 "nonvoluntary_ctxt_switches:\t9\n")
    assert procs.cpu_and_wakeups(42, tmp_path) == (4.0, 123), "ticks without schedstat"
    (base / "task" / "42" / "schedstat").write_text("1500000000 77 12\n")
    (base / "task" / "43" / "schedstat").write_text("250000001 5 3\n")
    assert procs.cpu_and_wakeups(42, tmp_path) == (1.750000001, 123), "nanoseconds with it"
    with pytest.raises(procs.ProcError, match="cannot read"):
        procs.cpu_and_wakeups(44, tmp_path)


def test_idle_window_sets_the_plan_and_must_be_positive() -> None:
    node = _mod("node")
    args = node.parse_args(["--only", "idle", "--idle-window", "2.5"])
    assert args.only == ["idle"]
    plan = node.make_plan(True, 4, args.idle_window)
    assert plan.idle_window_s == 2.5 and plan.idle_trials == 4
    assert node.make_plan(False, None).idle_window_s == 60.0
    with pytest.raises(SystemExit):
        node.parse_args(["--idle-window", "0"])


@pytest.mark.timeout(120)
def test_idle_trial_measures_a_real_idle_node_and_its_peer() -> None:
    if not os.environ.get("GANGLION_TEST_NETNS"):
        pytest.skip("`ganglion node` sends mDNS to 224.0.0.251:5353; runs only in a private "
                    "namespace (GANGLION_TEST_NETNS set by the test command)")
    measure = _mod("_node_measure")
    got = measure.idle_trial(peers=1, window_s=2.0, settle_s=1.0)
    assert got["peers"] == 1 and got["loop"] == "asyncio"
    assert 1.5 < got["window_s"] < 10
    # Heartbeats alone wake it: some wake-ups and some CPU, far from a busy loop.
    assert 0 < got["wakeups_s"] < 200 and 0 <= got["cpu_pct"] < 50
    assert got["rss_mb"] > 5


def test_proc_waits_bounded_and_is_stopped_by_pid() -> None:
    procs = _mod("_node_procs")
    script = ("import sys, json; print(json.dumps({'event': 'hi', 'n': 1}), flush=True); "
              "print('warming up', file=sys.stderr, flush=True); sys.stdin.readline()")
    with procs.ProcGroup("smoke") as group:
        proc = procs.Proc("echo", [sys.executable, "-c", script])
        group.procs.append(proc)
        _, event = proc.wait_event("hi", 10)
        assert event["n"] == 1
        assert proc.wait_stderr("warming", 10) >= proc.started_ns
        with pytest.raises(procs.ProcError, match="gave no event 'never'"):
            proc.wait_event("never", 0.2)
        tmp = group.tmp
    assert proc.popen.returncode is not None
    assert not tmp.exists()


def test_plexo_without_its_venv_gives_a_reason(tmp_path: Path) -> None:
    plexo = _mod("_node_plexo")
    result = plexo.measure_plexo(10, 1, venv=tmp_path / "no-venv")
    assert not result.inproc and "not installed" in result.reason
    assert result.reference == plexo.QUOTED_MSG_S


# --- the real harness, in a namespace ------------------------------------------------------


def _namespace_reason() -> str | None:
    """None when this test can create network namespaces, else why not."""
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    if shutil.which("ip") is None:
        return "no `ip` command"
    name = f"ganglion-nbsmoke-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                          timeout=10, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)
    return None


@pytest.mark.timeout(90)
def test_quick_run_in_a_namespace_measures_and_cleans_up(tmp_path: Path) -> None:
    reason = _namespace_reason()
    if reason is not None:
        pytest.skip(reason)
    out = tmp_path / "node.json"
    # Started from a namespace of the test's own with nothing in it: a namespace that
    # is loopback-only with a multicast route (make test's) is run in place, and this
    # test is about the bench making its own namespace and removing it.
    outer = f"ganglion-nbsmoke-run-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", outer], check=True, timeout=10)
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", outer, sys.executable, str(BENCH / "node.py"), "--quick",
             "--trials", "1", "--only", "inprocess,startup,agree,e2e", "--json", str(out),
             "--timeout", "75"],
            capture_output=True, text=True, timeout=85, cwd=str(REPO), check=False)
    finally:
        subprocess.run(["ip", "netns", "del", outer], check=False, timeout=10)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "creating a network namespace" in done.stdout
    data = json.loads(out.read_text())
    assert data["failures"] == {}
    res = data["results"]
    assert res["inprocess"][0]["rate"] > 0
    startup = res["startup"][0]
    assert 0 < startup["started_ms"] < startup["first_reading_ms"]
    for nodes in (3, 10):
        trial = res[f"agree{nodes}"][0]
        assert 0 < trial["publisher_ms"] <= trial["all_ms"]
    for path in ("internal", "bus"):
        blast, paced = res[f"e2e_{path}_blast"][0], res[f"e2e_{path}_paced"][0]
        assert blast["received"] > 0 and blast["delivered_per_s"] > 0
        assert 0 < paced["p50_us"] <= paced["p99_us"]
    assert res["e2e_bus_paced"][0]["hop_p50_us"] > 0  # the same trial's bare zmq hop
    # and the bare relay chain (zmq -> UDP -> zmq through two relay processes)
    assert res["e2e_bus_paced"][0]["chain_p50_us"] > 0
    assert res["e2e_bus_paced"][0]["p50_per_chain"] > 0
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=10, check=False).stdout
    assert f"ganglion-bench-{_child_pid(done.stdout)}" not in listed


def _child_pid(stdout: str) -> str:
    """The pid in ``running in namespace ganglion-bench-<pid>`` (the namespace's name)."""
    for line in stdout.splitlines():
        if "namespace ganglion-bench-" in line:
            return line.rsplit("ganglion-bench-", 1)[1].split()[0]
    raise AssertionError(f"no namespace line in: {stdout[:500]}")
