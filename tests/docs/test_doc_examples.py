"""Every example in README.md and docs/*.md, run as written (on loopback).

Each fenced block is one test, named by its place (``docs/config.md:12``), run by
its language:

- ``toml``: a node config. A real ``ganglion node --config FILE --iface lo`` starts
  with it (state, port, the bus and dashboard ports moved out of the way; absolute paths
  re-rooted into the test's directory, so ``/var/lib/ganglion/log.db`` is written
  under it), and must run and stop cleanly. A block that is a ``pyproject.toml``
  (``<!-- file: pyproject.toml -->``) must declare entry points the node can load.
- ``sh`` / ``console``: each command line is checked: ``ganglion ...`` is parsed
  by the real click CLI (every value converted and checked, in a directory that
  holds the files the docs name: a real log ``brewery.db``, ``net.key``), and
  ``ganglion info``/``export`` are run for real; ``make T`` must be a target
  (``make -n``); ``pip install`` must name this project, its extras or a checkout;
  ``sqlite3`` queries run against the real log. Any other program fails the test
  until the block is marked ``not-run`` or the test learns to check it.
- ``python``: run in a fresh interpreter with ``GANGLION_IFACE=lo`` and a private
  HOME, bounded in time; top-level ``await`` runs as in ``python -m asyncio``.
- ``ini`` naming a unit (``<!-- file: ganglion.service -->``): must be what
  ``ganglion install-service`` writes.
- ``text``: output and diagrams, not run.

Blocks that cannot run here (real hardware, ``sudo``, systemd, another host) are
marked ``<!-- not-run: REASON -->`` in the markdown and reported as skipped with
that reason, so a new example is run unless someone says why not
(directives: :mod:`doc_blocks`).
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from doc_blocks import REPO, Block, all_blocks
from doc_shell import command_lines, parse_ganglion

from ganglion.cli.cmd_install_service import render_unit

BLOCKS = all_blocks()
RUNNABLE = [b for b in BLOCKS if b.lang != "text"]
KNOWN_LANGS = {"toml", "sh", "console", "python", "ini", "c", "text"}
PYTHON_TIMEOUT = 45.0

#: How a python block is run: each file in order in one module namespace, so a
#: ``continues`` block sees the names of the blocks before it.
RUNNER = """
import ast, asyncio, inspect, sys, types
module = types.ModuleType("__main__")
sys.modules["__main__"] = module
for path in sys.argv[1:]:
    print(f"-- running {path}", file=sys.stderr, flush=True)
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, module.__dict__))
    else:
        exec(code, module.__dict__)
"""


# -- the workspace: what a reader of the docs has in their directory -------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a private HOME, a real log (``brewery.db``), a network key
    (``net.key``) and the packages the docs ask the reader to write and install."""
    root = tmp_path_factory.mktemp("docs")
    (root / "home").mkdir()
    _make_log(root / "brewery.db")
    subprocess.run([sys.executable, "-m", "ganglion", "keygen", str(root / "net.key")],
                   env=_env(root), check=True, capture_output=True, timeout=30)
    _install_doc_packages(root / "site")
    return root


def _env(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: no GANGLION_* or XDG_* from the caller, HOME in ``root``."""
    import os

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GANGLION_", "XDG_")) and k != "PYTHONPATH"}
    env.update(HOME=str(root / "home"), GANGLION_IFACE="lo", PYTHONUNBUFFERED="1",
               PYTHONPATH=f"{root / 'site'}:{REPO}")
    env.update(extra or {})
    return env


def _make_log(db: Path) -> None:
    """A real log with two nodes' temperatures and humidities (three humidities lost on
    the way: a gap), as `ganglion log` writes it."""
    from ganglion.logger.writer import Writer
    from ganglion.runtime.subscription import MessageInfo
    from ganglion.types import Record

    writer = Writer(db, batch_rows=100)
    writer.start()
    base = time.time_ns() - 3_600_000_000_000
    for i in range(50):
        for sender, type_name, fields in (
                (b"\x01" * 8, "sensors.Temperature", {"sensor": "sim:brewery/temperature",
                                                     "celsius": 20.0 + i / 10}),
                (b"\x02" * 8, "sensors.Humidity", {"sensor": "sim:cellar/humidity",
                                                  "percent": 60.0 + i / 10})):
            sent = base + i * 1_000_000_000
            if type_name == "sensors.Humidity" and 10 <= i < 13:
                continue
            writer.add(Record(type_name, fields),
                       MessageInfo(type_name, sender, i, sent, sent + 500_000, 1, False,
                                   ("127.0.0.1", 47800)))
    writer.close()


def _install_doc_packages(site: Path) -> None:
    """Install what ``file:`` blocks hold, as ``pip install`` of the reader's package would:
    python modules under ``site``, and a ``pyproject.toml``'s entry points as a dist-info."""
    site.mkdir()
    entry_points: dict[str, dict[str, str]] = {}
    for block in BLOCKS:
        target = block.directive("file")
        if target is None:
            continue
        if target.endswith(".py"):
            path = site / target
            path.parent.mkdir(parents=True, exist_ok=True)
            for package in path.relative_to(site).parents:
                if package != Path("."):
                    (site / package / "__init__.py").touch()
            path.write_text(block.text, encoding="utf-8")
        elif Path(target).name == "pyproject.toml":
            project = tomllib.loads(block.text).get("project", {})
            for group, entries in project.get("entry-points", {}).items():
                entry_points.setdefault(group, {}).update(entries)
    dist = site / "doc_examples-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: doc-examples\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
        for group, entries in entry_points.items()))


# -- the tests ---------------------------------------------------------------------------


def test_every_block_says_its_language() -> None:
    """A block without a language would never run: output and diagrams say ``text``."""
    unnamed = [b.where for b in BLOCKS if not b.lang]
    assert not unnamed, f"fenced blocks without a language (use text for output): {unnamed}"
    unknown = [f"{b.where} ({b.lang})" for b in BLOCKS if b.lang not in KNOWN_LANGS]
    assert not unknown, f"no runner for these languages: {unknown}"


def test_every_not_run_block_says_why() -> None:
    silent = [b.where for b in BLOCKS if b.directive("not-run") == ""]
    assert not silent, f"not-run without a reason: {silent}"


def test_the_docs_have_examples_of_every_kind() -> None:
    """Guards the extraction itself: a broken parser would pass every test vacuously."""
    run = [b for b in RUNNABLE if b.directive("not-run") is None]
    langs = {b.lang for b in run}
    assert {"toml", "sh", "python"} <= langs
    assert len(run) >= 30


@pytest.mark.timeout(240)
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_doc_example_runs(block: Block, workspace: Path, free_udp_port: int,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    reason = block.directive("not-run")
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    if block.lang == "toml":
        _check_toml(block, workspace, free_udp_port)
    elif block.lang in ("sh", "console"):
        monkeypatch.chdir(workspace)
        for argv in command_lines(block.text, console=block.lang == "console"):
            _check_command(argv, workspace)
    elif block.lang == "python":
        _run_python(block, workspace, free_udp_port)
    elif block.lang == "ini" and (block.directive("file") or "").endswith(".service"):
        _check_unit(block.text)
    else:
        pytest.fail(f"{block.where}: no way to run a {block.lang} block; mark it "
                    "<!-- not-run: REASON --> or teach this test")


def test_the_shipped_unit_file_is_what_install_service_writes() -> None:
    _check_unit((REPO / "docs" / "ganglion.service").read_text(encoding="utf-8"))


# -- toml -------------------------------------------------------------------------------


def _check_toml(block: Block, workspace: Path, port: int) -> None:
    target = block.directive("file")
    if target is not None:
        assert Path(target).name == "pyproject.toml", f"{block.where}: a toml file: {target}"
        _check_entry_points(block, workspace)
        return
    _start_node_with_config(block, workspace, port)


def _check_entry_points(block: Block, workspace: Path) -> None:
    """Every plugin the fragment declares loads through the node's own plugin loader,
    and every types module through the loader the CLI uses."""
    groups = tomllib.loads(block.text)["project"]["entry-points"]
    entries = groups["ganglion.plugins"]
    code = ("import sys\nfrom ganglion.plugins import load_plugin\n"
            "for name in sys.argv[1:]:\n    print(name, type(load_plugin(name)).__name__)\n")
    done = subprocess.run([sys.executable, "-c", code, *entries], env=_env(workspace),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{block.where}: {done.stderr}"
    modules = list(groups.get("ganglion.types", {}).values())
    if modules:
        code = ("from ganglion.plugins import load_installed_types\n"
                "print(*load_installed_types(), sep='\\n')\n")
        done = subprocess.run([sys.executable, "-c", code], env=_env(workspace),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{block.where}: {done.stderr}"
        assert set(modules) <= set(done.stdout.split()), f"{block.where}: {done.stderr}"


def _start_node_with_config(block: Block, workspace: Path, port: int) -> None:
    """``ganglion node --config`` with the block must start, run and stop cleanly."""
    # Absolute paths move into the workspace (no writes to /var or /etc, no real device);
    # their directories exist, as on a machine set up as the docs say.
    root = workspace / "root"
    for path in re.findall(r'"(/[^"]*)"', block.text):
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    text = re.sub(r'"(/[^"]*)"', lambda m: f'"{root}{m[1]}"', block.text)
    name = block.where.replace("/", "_").replace(":", "_")
    config = workspace / f"{name}.toml"
    config.write_text(text, encoding="utf-8")
    args = ["node", "--config", str(config), "--iface", "lo", "--no-mdns", "--port", str(port),
            "--state-dir", str(workspace / f"state-{name}"), "-v"]
    if "tcp_port" in tomllib.loads(text).get("bus", {}):
        args += ["--bus-tcp-port", str(_free_tcp_port())]
    if "dashboard" in tomllib.loads(text):
        args += ["--dashboard", f"127.0.0.1:{_free_tcp_port()}"]
    with _ganglion(args, workspace) as proc:
        _wait_for(proc, r"node \S+ \([0-9a-f]{16}\) on lo", block)
        time.sleep(1.5)  # plugins start after the line; a crashing one ends the node
        assert proc.poll() is None, f"{block.where}: the node exited: {_read(proc)}"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        err = _read(proc)
    assert code == 0, f"{block.where}: exit {code}: {err}"
    assert "Traceback" not in err and " ERROR " not in err, f"{block.where}: {err}"


# -- shell ------------------------------------------------------------------------------

#: ganglion commands that are quick and offline: run for real, not only parsed.
_RUN_FOR_REAL = {"info", "export"}


def _check_command(argv: list[str], workspace: Path) -> None:
    program = Path(argv[0]).name
    args = argv[1:]
    if program == "python3" or program == "python":
        if args[:2] == ["-m", "venv"]:
            assert len(args) == 3, f"python -m venv DIR: {argv}"
            return
        assert args[:2] == ["-m", "ganglion"], f"no check for {argv}"
        program, args = "ganglion", args[2:]
    if program == "ganglion":
        try:
            parse_ganglion(args)
        except click.ClickException as exc:
            pytest.fail(f"`{' '.join(argv)}`: {exc.format_message()}")
        if args[0] in _RUN_FOR_REAL:
            done = subprocess.run([sys.executable, "-m", "ganglion", *args], cwd=workspace,
                                  env=_env(workspace), capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, f"`{' '.join(argv)}`: {done.stderr}"
    elif program == "make":
        done = subprocess.run(["make", "-n", "-C", str(REPO), *args], capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0, f"`{' '.join(argv)}`: {done.stderr}"
    elif program in ("pip", "pip3"):
        _check_pip(args)
    elif program == "sqlite3":
        done = subprocess.run(argv, cwd=workspace, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and not done.stderr, f"`{' '.join(argv)}`: {done.stderr}"
        assert done.stdout.strip(), f"`{' '.join(argv)}` found nothing in a real log"
    else:
        pytest.fail(f"no way to check `{' '.join(argv)}`: mark its block "
                    "<!-- not-run: REASON --> (or split the block) or teach this test")


def _check_pip(args: list[str]) -> None:
    """``pip install`` names this project (with extras it has), a checkout or a git URL."""
    from packaging.requirements import InvalidRequirement, Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = set(project.get("optional-dependencies", {}))
    assert args and args[0] == "install", f"pip {args}"
    for arg in args[1:]:
        if arg.startswith("-"):
            continue
        local = re.fullmatch(r"(\.|\S*/)(\[(?P<extras>[^\]]*)\])?", arg)
        if arg.startswith("git+") or local is not None:
            wanted = (local["extras"] if local is not None else None) or ""
        else:
            try:
                req = Requirement(arg)
            except InvalidRequirement as exc:
                pytest.fail(f"pip install {arg}: {exc}")
            assert req.name == project["name"], f"pip install {arg}: not {project['name']}"
            wanted = ",".join(req.extras)
        unknown = {e.strip() for e in wanted.split(",") if e.strip()} - extras
        assert not unknown, f"pip install {arg}: no such extras {unknown}; have {sorted(extras)}"


# -- python -----------------------------------------------------------------------------


def _chain(block: Block) -> list[Block]:
    """The block and, for ``continues``, the python blocks of its page it builds on."""
    page = [b for b in BLOCKS if b.path == block.path and b.lang == "python"]
    chain = [block]
    while chain[0].directive("continues") is not None:
        before = [b for b in page if b.line < chain[0].line]
        assert before, f"{chain[0].where}: continues, but no python block comes before it"
        chain.insert(0, before[-1])
    return chain


def _run_python(block: Block, workspace: Path, port: int) -> None:
    files = []
    for part in _chain(block):
        path = workspace / f"block_{part.path.stem}_{part.line}.py"
        path.write_text(part.text, encoding="utf-8")
        files.append(str(path))
    env = _env(workspace, dict(v.split("=", 1) for v in block.directives.get("env", [])))
    node_args = block.directive("with-node")
    node = None
    if node_args is not None:
        node = _ganglion_start(["node", "--iface", "lo", "--no-mdns", "--no-hardware", "--port",
                                str(port), "--name", "doc-node", *node_args.split()],
                               workspace, env)
    try:
        if node is not None:
            _wait_for(node, r"plugin bus: ipc://", block)
        done = subprocess.run([sys.executable, "-c", RUNNER, *files], cwd=workspace, env=env,
                              capture_output=True, text=True, timeout=PYTHON_TIMEOUT)
    finally:
        if node is not None:
            _stop(node)
    assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"


# -- ini --------------------------------------------------------------------------------


def _check_unit(text: str) -> None:
    """A unit in the docs is exactly what install-service renders for its user and command."""
    user = re.search(r"^User=(.*)$", text, re.M)
    exec_start = re.search(r"^ExecStart=(\S+) -m ganglion node ?(.*)$", text, re.M)
    assert user and exec_start, f"not a ganglion unit:\n{text}"
    node_args = exec_start[2].split() if exec_start[2] else []
    assert render_unit(user=user[1], python=exec_start[1], node_args=node_args) == text


# -- processes --------------------------------------------------------------------------


def _ganglion_start(args: list[str], workspace: Path,
                    env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ganglion", *args], cwd=workspace,
                            env=env or _env(workspace), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@contextlib.contextmanager
def _ganglion(args: list[str], workspace: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m ganglion ARGS``, ended by its PID on exit however the test ends."""
    proc = _ganglion_start(args, workspace)
    try:
        yield proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stderr is not None and not proc.stderr.closed:
        proc.stderr.close()


_seen: dict[int, str] = {}


def _read(proc: subprocess.Popen[bytes]) -> str:
    """Everything the process wrote to stderr so far (it must have exited, or be read by
    :func:`_wait_for`, which keeps what it read)."""
    text = _seen.get(proc.pid, "")
    if proc.poll() is not None and proc.stderr is not None and not proc.stderr.closed:
        text += proc.stderr.read().decode(errors="replace")
        _seen[proc.pid] = text
    return text


def _wait_for(proc: subprocess.Popen[bytes], pattern: str, block: Block,
              timeout: float = 30.0) -> None:
    """Read stderr until ``pattern`` shows up; fail with what was read after ``timeout``."""
    import os
    import select

    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    text = _seen.get(proc.pid, "")
    while not re.search(pattern, text):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            _seen[proc.pid] = text
            pytest.fail(f"{block.where}: {pattern!r} not seen (exit {proc.poll()}):\n"
                        f"{_read(proc)}")
        ready, _, _ = select.select([proc.stderr], [], [], min(left, 0.2))
        if ready:
            text += os.read(proc.stderr.fileno(), 65536).decode(errors="replace")
    _seen[proc.pid] = text


def _free_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_leftover_output() -> Iterator[None]:
    yield
    _seen.clear()

