"""The real serial back-end: pyserial, read a line at a time.

pyserial is imported when a port is opened. ``Serial.read_until`` returns
whatever arrived when its timeout hits, so a partial line is handed back for
the caller to keep; a USB adapter that is unplugged makes pyserial raise
``SerialException`` (an ``OSError`` subclass) or return nothing while
reporting readiness, which is turned into ``OSError`` here.
"""

from __future__ import annotations

from typing import Any

from hardware.port import SerialPort

__all__ = ["PySerialPort"]

_MAX_LINE = 4096  # longer "lines" are garbage; the reader resynchronises on the next newline


class PySerialPort(SerialPort):
    """A serial device through pyserial.

    Args:
        path: the device (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``, a pty).
        baudrate: bits per second.

    Raises:
        OSError: the device does not exist or cannot be opened.
        ImportError: pyserial is not installed.
    """

    def __init__(self, path: str, baudrate: int) -> None:
        import serial

        self._path = path
        try:
            self._serial: Any = serial.Serial(path, baudrate=baudrate, timeout=0.5)
        except serial.SerialException as exc:
            raise OSError(f"cannot open {path}: {exc}") from exc

    @property
    def path(self) -> str:
        return self._path

    def read_line(self, timeout: float) -> bytes | None:
        import serial

        port = self._serial
        if port is None:
            return None
        port.timeout = timeout
        try:
            return bytes(port.read_until(b"\n", _MAX_LINE))
        except serial.SerialException as exc:
            raise OSError(f"{self._path}: {exc}") from exc
        except TypeError as exc:  # pyserial's reader after the fd was closed under it
            raise OSError(f"{self._path}: closed") from exc

    def close(self) -> None:
        if self._serial is not None:
            port, self._serial = self._serial, None
            port.close()
