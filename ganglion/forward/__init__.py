"""Store and forward: readings from a node's SQLite log into PostgreSQL, exactly once.

Theory of operation: the SQLite log written by ``ganglion log`` (or the ``log``
plugin) is the durable buffer; :class:`Forwarder` ships what was committed to
it into a central PostgreSQL (TimescaleDB where available) database, keeping
its position in the log, and the server's natural identity on each reading
makes re-sending harmless (docs/forwarding.md). psycopg is imported only when a
forwarder connects: the ``postgres`` extra.
"""

from __future__ import annotations

from ganglion.forward.forwarder import Forwarder, ForwarderThread, ForwardStats
from ganglion.forward.target import ForwardError, Target

__all__ = ["ForwardError", "ForwardStats", "Forwarder", "ForwarderThread", "Target"]
