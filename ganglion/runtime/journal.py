"""The consensus journal on disk: append-only, fsynced, torn-tail tolerant.

Theory of operation: ``consensus`` hands the node journal records that must be
durable before the messages depending on them are sent (``Ready.to_persist``). This
file stores them as frames ``[u32 length][u32 CRC-32][CBOR of record.to_wire()]``,
appends each batch with one ``write`` and one ``fsync``. A crash can leave only a
torn *last* frame (the batch that was never acknowledged, whose messages were
therefore never sent): loading stops at the first frame that is short or fails
its CRC and truncates the file there, so the next append does not follow garbage.

The journal is compacted (replaced by ``PaxosNode.durable_records()``, written to
a temporary file, fsynced and renamed over the journal, then the directory is
fsynced) when it grows past a threshold, so it stays small on an SD card. Only
this object writes the file, so its size is read from the disk once and then
kept up to date here: the control channel asks after every pump (every
heartbeat and every peer's ``Status``), and an idle node should not pay a
``stat`` for each.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import cbor2

from consensus import JournalRecord, record_from_wire
from consensus.errors import ConsensusError
from ganglion._atomic_file import fsync_dir

_log = logging.getLogger(__name__)

_FRAME = struct.Struct(">II")
#: Largest frame accepted when loading; a length above it means a torn or corrupt tail.
_MAX_FRAME = 1 << 20


class Journal:
    """The node's consensus journal file.

    Args:
        path: the journal file (created when missing).
        compact_bytes: compact once the file grows past this size.
    """

    def __init__(self, path: Path, *, compact_bytes: int = 256 * 1024) -> None:
        self.path = path
        self.compact_bytes = compact_bytes
        self.appended = 0
        self.compactions = 0
        self.truncated_bytes = 0
        #: Bytes in the file as this object wrote it; None until first needed.
        self._size: int | None = None

    def load(self) -> list[JournalRecord]:
        """Read every intact record, oldest first, and cut off a torn tail.

        Returns:
            The records to restart the consensus node from.
        """
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            self._size = 0
            return []
        records: list[JournalRecord] = []
        pos = 0
        while pos + _FRAME.size <= len(data):
            length, crc = _FRAME.unpack_from(data, pos)
            body = data[pos + _FRAME.size: pos + _FRAME.size + length]
            if length > _MAX_FRAME or len(body) != length or zlib.crc32(body) != crc:
                break
            try:
                records.append(record_from_wire(cbor2.loads(body)))
            except (ConsensusError, ValueError, cbor2.CBORDecodeError):
                break
            pos += _FRAME.size + length
        if pos != len(data):
            self.truncated_bytes = len(data) - pos
            _log.warning("journal %s: ignoring a torn or corrupt tail of %d bytes (a crash "
                         "during a write); its messages were never sent", self.path,
                         self.truncated_bytes)
            with open(self.path, "r+b") as f:
                f.truncate(pos)
                os.fsync(f.fileno())
        self._size = pos
        return records

    def append(self, records: Sequence[JournalRecord]) -> None:
        """Append ``records`` and make them durable (fsync) before returning."""
        if not records:
            return
        blob = b"".join(_frame(r) for r in records)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.appended += len(records)
        if self._size is not None:
            self._size += len(blob)

    def needs_compaction(self) -> bool:
        """True when the file has grown past ``compact_bytes``."""
        if self._size is None:
            try:
                self._size = self.path.stat().st_size
            except FileNotFoundError:
                self._size = 0  # append() creates it
        return self._size > self.compact_bytes

    def replace(self, records: Iterable[JournalRecord]) -> None:
        """Atomically replace the journal with ``records`` (compaction)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        blob = b"".join(_frame(r) for r in records)
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        self._size = len(blob)
        self.compactions += 1


def _frame(record: JournalRecord) -> bytes:
    body = cbor2.dumps(record.to_wire())
    return _FRAME.pack(len(body), zlib.crc32(body)) + body
