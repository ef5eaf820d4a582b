"""Serial devices for tests: an in-memory port, and a device on a real pty pair.

Theory of operation: :class:`MockSerialPort` is a :class:`~hardware.port.SerialPort`
fed by the test (:meth:`MockSerialPort.feed`), with :meth:`MockSerialPort.unplug`
to make the next read fail as a vanished USB adapter does. :class:`PtyDevice`
opens a pseudo-terminal pair with ``os.openpty``: the test writes to the master
side as the device would, and the driver opens the slave's path with the real
pyserial back-end, so the whole stack from termios up runs as on a Pi.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import tty
from types import TracebackType

from hardware.port import SerialPort

__all__ = ["MockSerialPort", "PtyDevice"]


class MockSerialPort(SerialPort):
    """An in-memory serial port.

    Args:
        path: the path it pretends to be.
    """

    def __init__(self, path: str = "/dev/ttyMOCK0") -> None:
        self._path = path
        self._chunks: queue.Queue[bytes | None] = queue.Queue()
        self._buffer = b""
        self._unplugged = False
        self.closed = False

    @property
    def path(self) -> str:
        return self._path

    def feed(self, data: bytes | str) -> None:
        """Bytes the device sends (any split: partial lines are fine)."""
        self._chunks.put(data.encode() if isinstance(data, str) else data)

    def unplug(self) -> None:
        """The device vanishes: reads now raise ``OSError(EIO)``."""
        self._unplugged = True
        self._chunks.put(None)

    def read_line(self, timeout: float) -> bytes | None:
        if self.closed:
            return None
        while b"\n" not in self._buffer:
            if self._unplugged:
                raise OSError(errno.EIO, f"{self._path}: device disconnected")
            try:
                chunk = self._chunks.get(timeout=timeout)
            except queue.Empty:
                partial, self._buffer = self._buffer, b""
                return partial
            if chunk is None:
                continue
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line + b"\n"

    def close(self) -> None:
        self.closed = True
        self._chunks.put(None)


class PtyDevice:
    """A pseudo-terminal pair: the test is the device, the driver opens :attr:`path`."""

    def __init__(self) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: bytes pass as a UART's would
        self.path = os.ttyname(self._slave)

    def write(self, data: bytes | str) -> None:
        """Send bytes to whoever opened :attr:`path`."""
        payload = data.encode() if isinstance(data, str) else data
        while payload:
            payload = payload[os.write(self.master, payload):]

    def close(self) -> None:
        """Close both ends; a reader then sees the device gone."""
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.master = self._slave = -1

    def __enter__(self) -> PtyDevice:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
