"""What a ``ganglion node`` process imports: only what an idle node needs.

Each check runs a fresh interpreter (``sys.modules`` of this one is full of what
other tests imported): the ``ganglion`` command with the ``node`` command looked
up and :mod:`ganglion.node` imported, as ``ganglion node`` does before it starts.
OpenSSL (``ssl``, ``hashlib``'s and ``hmac``'s ``_hashlib``), sqlite3, the other
commands, importlib.metadata and the hardware fakes cost an idle node on a Pi
megabytes it never uses (bench/node.py, "RSS idle"); TLS must still work through
asyncio once something imports ssl.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from ganglion.cli.main import COMMANDS, cli

REPO = Path(__file__).resolve().parents[2]

NODE_IMPORTS = """
import sys
import click
from ganglion.cli.main import cli
cli.get_command(click.Context(cli), "node")
import ganglion.node, ganglion.runtime.bus, hardware.plugin
print(" ".join(sorted(sys.modules)))
"""

#: Modules an idle node must not load, and why.
NOT_FOR_AN_IDLE_NODE = {
    "ssl": "asyncio's TLS (libssl, libcrypto)",
    "_hashlib": "OpenSSL's digests (libcrypto), via hashlib, hmac or secrets",
    "sqlite3": "the log commands",
    "ganglion.cli.cmd_demo": "another command",
    "ganglion.cli.cmd_export": "another command",
    "importlib.metadata": "entry points, before a plugin is asked for",
    "hardware.fakes": "fake hardware, unless --fake-hardware",
    "tempfile": "only for writing key files",
}


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=REPO, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_node_process_leaves_out_what_an_idle_node_never_uses() -> None:
    loaded = set(_run(NODE_IMPORTS).split())
    assert "ganglion.cli.cmd_node" in loaded and "asyncio" in loaded
    unwanted = {name: why for name, why in NOT_FOR_AN_IDLE_NODE.items() if name in loaded}
    assert unwanted == {}


def test_tls_through_asyncio_works_once_ssl_is_imported() -> None:
    out = _run("""
import sys
import ganglion.cli.main
assert "ssl" not in sys.modules
import asyncio

async def main():
    async def answer(reader, writer):
        writer.write(b"HTTP/1.0 400 not TLS\\r\\n\\r\\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    import ssl
    assert asyncio.base_events.ssl is ssl and asyncio.sslproto.ssl is ssl
    try:
        await asyncio.wait_for(asyncio.open_connection(
            "127.0.0.1", port, ssl=ssl.create_default_context()), 10)
    except ssl.SSLError as exc:  # a TLS handshake was attempted: TLS works
        print("handshake refused:", exc.reason)
    server.close()

asyncio.run(main())
""")
    assert "handshake refused" in out


def test_without_the_ganglion_command_ssl_is_left_alone() -> None:
    out = _run("import asyncio, ganglion.node, sys; print(asyncio.base_events.ssl is "
               "sys.modules.get('ssl'), 'ssl' in sys.modules)")
    assert out.split() == ["True", "True"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_found_by_its_name(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None and command.name == name


def test_help_lists_every_command() -> None:
    assert cli.list_commands(click.Context(cli)) == sorted(COMMANDS)
