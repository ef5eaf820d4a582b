"""The layering rule of docs/architecture.md, checked over the source with ast.

Every ``import`` in ``consensus/``, ``ganglion/``, ``hardware/`` and ``examples/`` is
read (also those inside functions, which load later but are dependencies all the
same) and held against the rule: which layer may import which, who may talk to zmq
and zeroconf, who may open a socket. A change that breaks it fails here with the
file, line and import, and the paragraph of docs/architecture.md to read.

The checks are plain functions over a list of imports, so the last tests feed them
made-up violations and see each one reported: the rule cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("consensus", "ganglion", "hardware")

#: The pure cores: no I/O of their own (docs/architecture.md, "Layers").
PURE = (
    "consensus",
    "ganglion.wire",
    "ganglion.types",
    "ganglion.errors",
    "ganglion.defaults",
    "ganglion._blake2",
    "ganglion._atomic_file",
    "ganglion.sequence",
    "ganglion.membership",
    "ganglion.ratelimit",
    "ganglion.control_budget",
    "ganglion.plugin_frames",
    "ganglion.pairing.codes",
    "ganglion.pairing.exchange",
    "ganglion.pairing.frames",
    "ganglion.pairing.invitation",
    "ganglion.pairing._words",
    "ganglion.schemas",
    "ganglion.repair",
    # the MQTT bridge's sans-IO core (its I/O is ganglion.runtime.mqtt)
    "ganglion.mqtt.bridge",
    "ganglion.mqtt.broker",
    "ganglion.mqtt.commands",
    "ganglion.mqtt.discovery",
    "ganglion.mqtt.outbox",
    "ganglion.mqtt.topics",
    # pure helpers that live beside the runtime I/O they serve
    "ganglion.runtime.control_messages",
    "ganglion.runtime._advert",
    "ganglion.runtime._bus_report",
    "ganglion.runtime._bus_routes",
    "ganglion.runtime.lastvalues",
    "ganglion.runtime.replayed",
    "ganglion.runtime._outgoing",
    "ganglion.wallgrid",
)
#: What a pure core never imports: event loops, sockets, threads, the network libraries.
IO_MODULES = frozenset({
    "asyncio", "socket", "selectors", "ssl", "threading", "zmq", "zeroconf", "uvloop",
    "aiohttp", "paho", "aiomqtt", "psycopg",
})
#: Who may import zmq: both ends of the plugin bus, and the key file they share.
ZMQ_ALLOWED = ("ganglion.runtime", "ganglion.client", "ganglion.bus_secret")
#: Calls that open a socket (socket module functions, asyncio loop methods).
SOCKET_OPENERS = frozenset({"socket", "socketpair", "create_connection", "create_server",
                            "fromfd"})
LOOP_OPENERS = frozenset({"create_datagram_endpoint", "create_connection", "create_server",
                          "open_connection", "start_server", "open_unix_connection",
                          "start_unix_server", "create_unix_connection",
                          "create_unix_server"})
#: What hardware and the examples may use of ganglion: its public API.
PUBLIC_API = frozenset({"ganglion", "ganglion.errors", "ganglion.client", "ganglion.plugins",
                        "ganglion.types"})


@dataclasses.dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to a full dotted name."""

    module: str  # the importing module
    target: str  # what it imports (a module, or the package a name comes from)
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} imports {self.target}"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_imports(root: Path, folders: Iterable[str]) -> list[Import]:
    """Every import under ``root/<folder>``, with relative and submodule imports resolved."""
    files = [p for folder in folders for p in sorted((root / folder).rglob("*.py"))]
    known = {_module_name(p, root) for p in files}
    found = []
    for path in files:
        module = _module_name(path, root)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        rel = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
            if isinstance(node, ast.Import):
                found += [Import(module, alias.name, rel, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # ``from pkg import sub`` imports the submodule pkg.sub
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    target = sub if sub in known or sub == "ganglion._speedups" else source
                    found.append(Import(module, target, rel, node.lineno))
    return found


@functools.cache
def _source_imports() -> tuple[Import, ...]:
    return tuple(read_imports(ROOT, (*PACKAGES, "examples")))


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _top(name: str) -> str:
    return name.partition(".")[0]


# -- the rules (each returns the imports that break it) ----------------------------------


def consensus_stands_alone(imports: Iterable[Import]) -> list[Import]:
    """consensus imports the standard library only; consensus.sim also cbor2, on purpose.

    The simulator sends every message through the CBOR codec (a wire bug then shows
    in the consensus tests), so cbor2 is its one outside dependency. The state
    machine (outside ``sim``) does not even read the clock: no ``time``.
    """
    bad = []
    for imp in imports:
        if not _under(imp.module, ["consensus"]) or _top(imp.target) in ("consensus", "__future__"):
            continue
        in_sim = _under(imp.module, ["consensus.sim"])
        stdlib = _top(imp.target) in sys.stdlib_module_names
        if not (stdlib or (in_sim and _top(imp.target) == "cbor2")) or (
                not in_sim and _top(imp.target) == "time"):
            bad.append(imp)
    return bad


def pure_cores_do_no_io(imports: Iterable[Import]) -> list[Import]:
    """The pure cores import no event loop, socket, thread or network library."""
    return [imp for imp in imports
            if _under(imp.module, PURE) and _top(imp.target) in IO_MODULES]


def pure_cores_import_pure_cores(imports: Iterable[Import]) -> list[Import]:
    """Of ganglion, a pure core imports only other pure cores (and the compiled extension)."""
    allowed = (*PURE, "ganglion._speedups")
    return [imp for imp in imports
            if _under(imp.module, PURE) and _top(imp.target) == "ganglion"
            and imp.target != "ganglion"  # ``from ganglion import __version__``: a constant
            and not _under(imp.target, allowed)]


def only_the_runtime_talks_to_zmq_and_zeroconf(imports: Iterable[Import]) -> list[Import]:
    """zeroconf only in ganglion.runtime; zmq there and at the plugin's end of the bus."""
    return [imp for imp in imports
            if (_top(imp.target) == "zeroconf" and not _under(imp.module, ["ganglion.runtime"]))
            or (_top(imp.target) == "zmq" and not _under(imp.module, ZMQ_ALLOWED))]


def the_runtime_does_not_import_the_plugin_client(imports: Iterable[Import]) -> list[Import]:
    """Both ends of the bus share ganglion.plugin_frames and ganglion.bus_secret instead."""
    return [imp for imp in imports
            if _under(imp.module, ["ganglion.runtime"]) and imp.target == "ganglion.client"]


def ganglion_does_not_import_hardware(imports: Iterable[Import]) -> list[Import]:
    """Sensor types and plugins reach ganglion through entry points, never by name."""
    return [imp for imp in imports
            if _under(imp.module, ["ganglion"]) and _top(imp.target) == "hardware"]


def consensus_imports_no_ganglion(imports: Iterable[Import]) -> list[Import]:
    """consensus never imports ganglion or hardware."""
    return [imp for imp in imports
            if _under(imp.module, ["consensus"]) and _top(imp.target) in ("ganglion", "hardware")]


def hardware_and_examples_use_the_public_api(imports: Iterable[Import]) -> list[Import]:
    """hardware and the examples import of ganglion only what it supports for them."""
    return [imp for imp in imports
            if (_under(imp.module, ["hardware"]) or imp.path.startswith("examples/"))
            and _top(imp.target) == "ganglion" and imp.target not in PUBLIC_API]


RULES: tuple[Callable[[Iterable[Import]], list[Import]], ...] = (
    consensus_stands_alone,
    consensus_imports_no_ganglion,
    pure_cores_do_no_io,
    pure_cores_import_pure_cores,
    only_the_runtime_talks_to_zmq_and_zeroconf,
    the_runtime_does_not_import_the_plugin_client,
    ganglion_does_not_import_hardware,
    hardware_and_examples_use_the_public_api,
)


def sockets_opened_outside_the_runtime(root: Path, folders: Iterable[str]) -> list[str]:
    """Calls that open a socket in any module outside ganglion.runtime."""
    bad = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            module = _module_name(path, root)
            if _under(module, ["ganglion.runtime"]):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                hit = None
                if isinstance(node, ast.ImportFrom) and node.module == "socket":
                    hit = next((a.name for a in node.names if a.name in SOCKET_OPENERS), None)
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    owner = node.func.value
                    if isinstance(owner, ast.Name) and owner.id == "socket" \
                            and node.func.attr in SOCKET_OPENERS:
                        hit = f"socket.{node.func.attr}"
                    elif node.func.attr in LOOP_OPENERS:
                        hit = f"loop.{node.func.attr}"
                if hit:
                    bad.append(f"{path.relative_to(root)}:{node.lineno}: {module} opens a socket "
                               f"({hit})")
    return bad


# -- the source keeps the rule -----------------------------------------------------------


def test_the_source_has_imports_to_check() -> None:
    imports = _source_imports()
    modules = {imp.module for imp in imports}
    assert {"consensus.node", "ganglion.wire._envelope", "ganglion.runtime.bus",
            "hardware.plugin"} <= modules
    assert any(imp.target == "zmq" for imp in imports)


@pytest.mark.parametrize("rule", RULES, ids=[r.__name__ for r in RULES])
def test_the_source_keeps_the_rule(rule: Callable[[Iterable[Import]], list[Import]]) -> None:
    bad = rule(_source_imports())
    assert not bad, (f"{rule.__doc__}\n(see docs/architecture.md, \"Layers\")\n"
                     + "\n".join(map(str, bad)))


def test_only_the_runtime_opens_sockets() -> None:
    bad = sockets_opened_outside_the_runtime(ROOT, (*PACKAGES, "examples"))
    assert not bad, "only ganglion.runtime opens sockets:\n" + "\n".join(bad)


def test_importing_the_pure_cores_loads_no_io_module() -> None:
    """The rule holds transitively too: importing every pure core pulls in no I/O module.

    threading is left out: the standard ``logging`` imports it.
    """
    modules = sorted({imp.module for imp in _source_imports() if _under(imp.module, PURE)
                      and not imp.module.endswith("__main__")})
    code = textwrap.dedent(f"""
        import importlib, sys
        for name in {modules!r}:
            importlib.import_module(name)
        print(sorted(m for m in {sorted(IO_MODULES - {"threading"})!r} if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"I/O modules loaded by the pure cores: {done.stdout}"


def test_importing_the_node_and_cli_loads_no_optional_extra() -> None:
    """The extras (pi, secure, fast) and hardware are imported where used, not at start."""
    extras = ["cryptography", "spake2", "uvloop", "gpiozero", "smbus2", "serial", "lgpio",
              "hardware"]
    code = textwrap.dedent(f"""
        import sys
        import ganglion, ganglion.node, ganglion.cli.main
        print(sorted(m for m in {extras!r} if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"loaded at import: {done.stdout}"


# -- the checks find what they look for --------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return tmp_path


@pytest.mark.parametrize(("rule", "files"), [
    (consensus_stands_alone, {"consensus/node.py": "import time\n"}),
    (consensus_stands_alone, {"consensus/node.py": "import cbor2\n"}),
    (consensus_imports_no_ganglion, {"consensus/sim/x.py": "from ganglion.wire import Packer\n"}),
    (pure_cores_do_no_io, {"ganglion/wire/_x.py": "def f():\n    import asyncio\n"}),
    (pure_cores_do_no_io, {"ganglion/types/_y.py": "import threading\n"}),
    (pure_cores_import_pure_cores, {"ganglion/wire/_x.py": "from ..runtime import endpoint\n",
                                    "ganglion/runtime/endpoint.py": ""}),
    (only_the_runtime_talks_to_zmq_and_zeroconf, {"ganglion/node.py": "import zmq.asyncio\n"}),
    (only_the_runtime_talks_to_zmq_and_zeroconf, {"ganglion/cli/x.py": "from zeroconf import Z\n"}),
    (the_runtime_does_not_import_the_plugin_client,
     {"ganglion/runtime/bus.py": "from ganglion.client import PluginMeta\n",
      "ganglion/client.py": ""}),
    (ganglion_does_not_import_hardware,
     {"ganglion/cli/cmd_tail.py": "def tail():\n    import hardware.readings\n"}),
    (hardware_and_examples_use_the_public_api,
     {"hardware/x.py": "from ganglion.runtime.endpoint import Endpoint\n"}),
])
def test_each_rule_reports_a_violation(
        tmp_path: Path, rule: Callable[[Iterable[Import]], list[Import]],
        files: dict[str, str]) -> None:
    root = _tree(tmp_path, files)
    folders = sorted({name.split("/")[0] for name in files})
    bad = rule(read_imports(root, folders))
    assert len(bad) == 1, bad


def test_the_rules_accept_what_the_rule_allows(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "consensus/sim/network.py": "import cbor2\nimport random\n",
        "consensus/node.py": "import logging\nfrom .messages import Prepare\n",
        "consensus/messages.py": "",
        "ganglion/wire/_x.py": "import struct\nfrom ganglion import __version__\n"
                               "from ganglion.types import message\n",
        "ganglion/types/__init__.py": "",
        "ganglion/runtime/bus.py": "import zmq\nfrom ganglion.plugin_frames import PluginMeta\n",
        "ganglion/plugin_frames.py": "",
        "ganglion/client.py": "import zmq\n",
        "hardware/x.py": "from ganglion import message\nfrom ganglion.errors import E\n",
    })
    imports = read_imports(root, PACKAGES)
    assert {imp.module for imp in imports} >= {"consensus.node", "ganglion.wire._x"}
    for rule in RULES:
        assert rule(imports) == [], rule.__name__


def test_socket_openers_are_found(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "ganglion/node.py": "import socket\nname = socket.gethostname()\n"
                            "s = socket.socket()\n",
        "ganglion/cli/x.py": "async def f(loop):\n    await loop.create_datagram_endpoint(P)\n",
        "ganglion/runtime/transport.py": "import socket\ns = socket.socket()\n",
    })
    bad = sockets_opened_outside_the_runtime(root, ["ganglion"])
    assert [line.split(":")[0] for line in bad] == ["ganglion/cli/x.py", "ganglion/node.py"]
