"""The ``log`` internal plugin: a node that logs every reading it can receive.

Theory of operation: the same :class:`~ganglion.logger.recorder.Recorder` and
:class:`~ganglion.logger.writer.Writer` as ``ganglion log``, run by the node's
plugin host. ``setup`` opens the database (so a bad path fails at start, with
the node's other plugins unaffected) and subscribes to the types already
agreed; ``run`` follows the map. The writer lives on the plugin object, so a
``run`` restarted after a crash keeps writing to the same session. A writer
failure -- the database (disk full, read-only file) or anything unexpected, whose
traceback the writer logs -- is logged once as an error by the node and ends the
plugin: it is *finished*, not restarted in a loop; the node carries on without a log.

Enable with ``ganglion node --plugin log`` and, in the config file::

    [plugin.log]
    db = "/var/lib/ganglion/log.db"
    types = ["sensors.*"]
    max_age = "30d"
    max_size = "1GB"
    history = 60          # seconds of the publishers' history asked for at start; 0: none
    forward = "postgresql://pi@central/sensors"   # optional: docs/forwarding.md
    forward_password_file = "/etc/ganglion/pg-password"

With ``forward``, a :class:`~ganglion.forward.ForwarderThread` ships what the
writer commits into PostgreSQL from a thread of its own. A fatal forwarding
error (wrong password, missing database) is logged once and forwarding stops;
logging goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ganglion.errors import ConfigError, LogDatabaseError
from ganglion.logger.recorder import Recorder
from ganglion.logger.retention import (
    DEFAULT_MAX_AGE,
    DEFAULT_MAX_SIZE,
    Retention,
    parse_duration,
    parse_size,
)
from ganglion.logger.writer import DEFAULT_BATCH_ROWS, DEFAULT_INTERVAL, Writer

__all__ = ["LogPlugin", "default_db_path"]

_log = logging.getLogger(__name__)


def default_db_path() -> Path:
    """Where the plugin logs without a ``db`` setting: ``<user data dir>/ganglion/log.db``."""
    import platformdirs

    return Path(platformdirs.user_data_dir("ganglion", appauthor=False)) / "log.db"


class LogPlugin:
    """Logs every reading the node receives (or those matching ``types``) to SQLite.

    Args:
        db: the database file; :func:`default_db_path` when None.
        types: glob patterns of type names; empty logs every type.
        max_age: keep this long (``30d``, ``12h``, seconds); ``0`` keeps everything.
        max_size: keep at most this much (``1GB``, ``500MB``, bytes); ``0`` for no limit.
        interval: seconds between commits.
        batch_rows: readings that trigger a commit before the interval is over.
        history: at start, ask the publishers for their readings of this many seconds
            before (None: their history age, 60 s; 0: none).
        forward: a ``postgresql://`` URL to forward the log to, or None.
        forward_password_file: the file holding that database's password.
        name: the plugin's name.

    Raises:
        ConfigError: a setting is not valid.
    """

    publishes: tuple[type | str, ...] = ()
    subscribes: tuple[type | str, ...] = ()

    def __init__(self, db: str | Path | None = None, types: Sequence[str] = (),
                 max_age: str | float = DEFAULT_MAX_AGE, max_size: str | int = DEFAULT_MAX_SIZE,
                 interval: float = DEFAULT_INTERVAL, batch_rows: int = DEFAULT_BATCH_ROWS,
                 history: float | None = None, forward: str | None = None, forward_password_file: str | Path | None = None,
                 name: str = "log") -> None:
        if isinstance(types, str):
            raise ConfigError("log plugin: `types` must be a list of patterns")
        try:
            self.retention = Retention(
                max_age=parse_duration(max_age) if isinstance(max_age, str) else float(max_age),
                max_size=parse_size(max_size) if isinstance(max_size, str) else int(max_size))
        except ValueError as exc:
            raise ConfigError(f"log plugin: {exc}") from None
        if interval <= 0 or batch_rows < 1:
            raise ConfigError("log plugin: interval must be > 0 and batch_rows >= 1")
        if history is None:
            from ganglion.repair import DEFAULT_LIMITS

            history = DEFAULT_LIMITS.max_age
        if isinstance(history, bool) or not isinstance(history, int | float) or history < 0:
            raise ConfigError(f"log plugin: history must be seconds >= 0, not {history!r}")
        self.history = float(history)
        self.name = name
        self.db = Path(db) if db is not None else default_db_path()
        self.patterns = tuple(types)
        self.interval = float(interval)
        self.batch_rows = int(batch_rows)
        self.writer: Writer | None = None
        self.recorder: Recorder | None = None
        self.forwarding: Any = None  # a ForwarderThread once started
        self.target: Any = None
        if forward is not None:
            from ganglion.forward.target import ForwardError, Target

            try:
                self.target = Target.parse(str(forward), None if forward_password_file is None
                                           else Path(forward_password_file))
            except ForwardError as exc:
                raise ConfigError(f"log plugin: {exc}") from None

    async def setup(self, node: Any) -> None:
        """Open the database and subscribe to the types agreed so far.

        Raises:
            LogDatabaseError: the database cannot be opened or written.
        """
        if self.writer is None:
            self.writer = Writer(self.db, patterns=self.patterns, batch_rows=self.batch_rows,
                                 retention=self.retention)
            self.recorder = Recorder(self.writer, self.patterns, interval=self.interval,
                                     history=self.history)
            _log.info("logging to %s (%s)", self.db, self.retention.describe())
            if self.target is not None:
                await asyncio.to_thread(self._start_forwarding)
        assert self.recorder is not None
        self.recorder.subscribe_new(node)

    async def run(self, node: Any) -> None:
        """Log until the node stops (or the database fails)."""
        if self.recorder is None or self.writer is None:
            await self.setup(node)
        assert self.recorder is not None and self.writer is not None
        try:
            await self.recorder.run(node)
        except LogDatabaseError as exc:
            _log.error("log plugin stops: %s", exc)
            await asyncio.to_thread(self._close)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.to_thread(self._close))
            raise

    def _close(self) -> None:
        """Close the writer, then let the forwarder send its last commit and stop."""
        assert self.writer is not None
        self.writer.close()
        if self.forwarding is not None:
            self.forwarding.stop()
            self.forwarding = None

    def _start_forwarding(self) -> None:
        """Start forwarding (blocking: a first connection); a fatal error is logged once."""
        from ganglion.forward import Forwarder, ForwardError, ForwarderThread

        try:
            forwarder = Forwarder(self.db, self.target, patterns=self.patterns)
        except LogDatabaseError as exc:
            _log.error("log plugin: cannot forward: %s", exc)
            return
        try:
            forwarder.check()
        except ForwardError as exc:
            forwarder.close()
            _log.error("log plugin: %s; logging without forwarding", exc)
            return
        self.forwarding = ForwarderThread(forwarder)
        self.forwarding.start()
        _log.info("forwarding %s to %s", self.db, self.target.name)
