"""Helpers for logger tests: fake MessageInfo, in-process nodes, reading a log back.

Theory of operation: unit tests feed a :class:`~ganglion.logger.writer.Writer`
real ``MessageInfo`` tuples built by :func:`info`; end-to-end tests run real
``Node`` s on loopback with ``discovery=False`` and tmp state dirs
(:func:`node_kwargs`), and read the database with plain ``sqlite3`` as a user
would. :func:`skip_numbers` makes a publisher skip sequence numbers, which is
exactly what receivers see when its datagrams are lost.
"""

from __future__ import annotations

import functools
from typing import Any

from log_nodes import node_kwargs as node_kwargs  # re-exported for the tests here
from log_nodes import rows as rows
from waits import run as _run
from waits import until as until  # re-exported for the tests here

from ganglion.runtime.subscription import MessageInfo

LOOPBACK = "127.0.0.1"


def info(type_name: str = "t.A", *, sender: bytes = b"\x01" * 8, seq: int = 0,
         sent_ns: int = 1_000, received_ns: int | None = None, boot: int = 1,
         last_value: bool = False, local: bool = False, clock_synced: bool = True,
         repaired: bool = False) -> MessageInfo:
    """A MessageInfo as the endpoint builds it for a received message."""
    return MessageInfo(type_name, sender, seq, sent_ns,
                       received_ns if received_ns is not None else sent_ns + 500, boot, local,
                       None if local else (LOOPBACK, 1234), clock_synced, last_value,
                       repaired=repaired)


def skip_numbers(node: Any, type_name: str, count: int) -> None:
    """Make ``node``'s next ``count`` sequence numbers of ``type_name`` never be sent
    (as if their datagrams were lost: receivers see a gap)."""
    node._endpoint._next_seq[type_name] += count


# The logger's scenarios run a little longer than a node test's default.
run = functools.partial(_run, timeout=40.0)
