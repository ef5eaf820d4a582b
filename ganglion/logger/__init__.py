"""Logging readings to SQLite, and the tools that read the log back.

Theory of operation: :class:`Recorder` subscribes a node to every type in the
agreed map (or those matching glob patterns) and feeds a :class:`Writer`, which
commits batches from a thread to a WAL-mode SQLite file whose schema
(:mod:`ganglion.logger.schema`, docs/logging.md) is queryable with the plain
``sqlite3`` tool. :mod:`~ganglion.logger.export`, :mod:`~ganglion.logger.replay`
and :mod:`~ganglion.logger.info` read a log back; :class:`LogPlugin` runs the
logger inside a node. The CLI commands ``ganglion log``, ``export``, ``replay``
and ``info`` are thin wrappers.
"""

from __future__ import annotations

from ganglion.logger.plugin import LogPlugin
from ganglion.logger.recorder import Recorder
from ganglion.logger.retention import Retention
from ganglion.logger.schema import SCHEMA_VERSION, open_log
from ganglion.logger.writer import Writer, WriterStats

__all__ = ["SCHEMA_VERSION", "LogPlugin", "Recorder", "Retention", "Writer", "WriterStats",
           "open_log"]
