"""The real GPIO back-end: input pins of any gpiozero pin factory.

Theory of operation: gpiozero's pin factories (lgpio on a Pi 5, where RPi.GPIO
fails; RPi.GPIO or pigpio on older Pis; ``MockFactory`` in tests) all offer
``factory.pin(name)`` with ``function``, ``pull``, ``edges``, ``state`` and a
``when_changed(ticks, state)`` hook. :class:`GpiozeroInputPin` uses that pin
layer directly rather than the ``Button`` device, so debouncing stays in our
pure counter logic where a fake clock can drive it. gpiozero's ticks are
opaque; they are turned into seconds with the factory's own ``ticks_diff``
against the moment the pin was opened, and added to our clock's reading at that
moment, so edge times share one time base with :meth:`PortFactory.ticks`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from hardware.port import EdgeCallback, InputPin, Pull

__all__ = ["GpiozeroInputPin", "default_pin_factory"]

_PULLS = {"up": "up", "down": "down", "none": "floating"}


def default_pin_factory() -> Any:
    """gpiozero's default pin factory for this machine (GPIOZERO_PIN_FACTORY honoured).

    Raises:
        ImportError: gpiozero is not installed.
        OSError: no GPIO back-end works here.
    """
    from gpiozero import Device
    from gpiozero.exc import BadPinFactory

    try:
        return Device._default_pin_factory()
    except BadPinFactory as exc:
        raise OSError(f"no GPIO back-end works here: {exc}") from exc


class GpiozeroInputPin(InputPin):
    """A gpiozero pin as a digital input with both-edge detection.

    Args:
        pin_factory: a gpiozero pin factory.
        pin: the pin's name (``17``, ``GPIO17``, ``BOARD11``).
        pull: the bias resistor.
        clock: the port factory's clock (monotonic seconds).

    Raises:
        ValueError: gpiozero refused the pin (no such pin, reserved, fixed pull).
    """

    def __init__(self, pin_factory: Any, pin: str, *, pull: Pull = "up",
                 clock: Callable[[], float] = time.monotonic) -> None:
        from gpiozero.exc import GPIOZeroError

        self._factory = pin_factory
        self._name = pin
        self._callback: EdgeCallback | None = None
        self._lock = threading.Lock()
        try:
            self._pin = pin_factory.pin(int(pin) if pin.isdigit() else pin)
            self._pin.function = "input"
            self._pin.pull = _PULLS[pull]
            self._pin.edges = "both"
        except GPIOZeroError as exc:
            raise ValueError(f"GPIO pin {pin}: {exc}") from exc
        self._origin = pin_factory.ticks()
        self._opened_at = clock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def value(self) -> bool:
        return bool(self._pin.state)

    def seconds(self, ticks: Any) -> float:
        """One of the gpiozero factory's tick values on our clock's scale."""
        return self._opened_at + float(self._factory.ticks_diff(ticks, self._origin))

    def on_edge(self, callback: EdgeCallback | None) -> None:
        with self._lock:
            self._callback = callback
        self._pin.when_changed = None if callback is None else self._changed

    def close(self) -> None:
        self.on_edge(None)
        self._pin.close()

    def _changed(self, ticks: Any, state: Any) -> None:
        with self._lock:
            callback = self._callback
        if callback is not None:
            callback(self.seconds(ticks), bool(state))
