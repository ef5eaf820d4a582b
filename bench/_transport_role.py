"""What one benchmark process is told to do, and when a subscriber stops listening.

Theory of operation: the orchestrator starts each publisher and subscriber as a
separate process and passes a :class:`RoleConfig` on the command line as JSON. A
subscriber stops as soon as the first of these holds: it has every message; it has
heard nothing for ``idle_s`` since its last arrival (the publisher is done and the
socket is drained); it has heard nothing at all for ``first_timeout_s`` (the
publisher never came); or ``deadline_s`` has passed since it started, which bounds
every receive loop in time whatever the peer does.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from _transport_common import Tally

#: ``ganglion+key`` signs every datagram (MAC-only, ``--no-encrypt``); ``ganglion+aead``
#: encrypts it (ChaCha20-Poly1305), both under one fixed benchmark key. ``ganglion+hist``
#: publishes with a history (every message also kept for repair, issue 16's cost); it
#: runs only when named (``--systems``).
SYSTEMS = ("raw", "ganglion", "ganglion+key", "ganglion+aead", "lcm", "ganglion+hist")
#: What runs without ``--systems``.
DEFAULT_SYSTEMS = SYSTEMS[:5]
MODES = ("blast", "paced")
ROLES = ("sub", "pub")

#: Loopback is the only interface any benchmark socket sends on.
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoleConfig:
    """Everything a publisher or subscriber process needs to run one trial.

    Attributes:
        system: "raw", "ganglion", "ganglion+key", "ganglion+aead" or "lcm".
        role: "sub" or "pub".
        mode: "blast" (as fast as possible) or "paced" (``rate`` messages/s).
        size: application payload per message in bytes (>= 16).
        count: messages the publisher sends.
        rate: messages per second in paced mode.
        port: UDP port for raw and ganglion.
        group: multicast group for raw.
        lcm_url: LCM provider URL (explicit group/port, ttl=0).
        idle_s: subscriber stops this long after its last arrival.
        first_timeout_s: subscriber gives up if nothing arrives this long after start.
        deadline_s: hard limit on a subscriber's whole receive loop.
        yield_every: ganglion blast publisher yields to its event loop after this many publishes.
    """

    system: str
    role: str
    mode: str
    size: int
    count: int
    rate: float = 1000.0
    port: int = 47990
    group: str = "239.255.201.1"
    lcm_url: str = "udpm://239.255.202.1:47991?ttl=0"
    idle_s: float = 0.5
    first_timeout_s: float = 10.0
    deadline_s: float = 60.0
    yield_every: int = 32

    def __post_init__(self) -> None:
        if self.system not in SYSTEMS:
            raise ValueError(f"system must be one of {SYSTEMS}, got {self.system!r}")
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.size < 16:
            raise ValueError(f"size must be at least 16 bytes, got {self.size}")
        if self.count <= 0:
            raise ValueError(f"count must be positive, got {self.count}")
        if self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.yield_every <= 0:
            raise ValueError(f"yield_every must be positive, got {self.yield_every}")

    def to_arg(self) -> str:
        """Return the config as one JSON command-line argument."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_arg(cls, text: str) -> RoleConfig:
        """Parse a config written by :meth:`to_arg`.

        Raises:
            ValueError: if the JSON is malformed or a field is invalid.
        """
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"role config is not JSON: {exc}") from exc
        if not isinstance(fields, dict):
            raise ValueError("role config must be a JSON object")
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ValueError(f"role config has bad fields: {exc}") from exc

    def new_tally(self) -> Tally:
        """Return a receive ledger sized for this trial (latency kept in paced mode)."""
        return Tally(self.count, record_latency=self.mode == "paced")


class StopRule:
    """Decides when a subscriber has heard all it is going to hear (see module doc)."""

    __slots__ = ("_deadline_ns", "_first_ns", "_idle_ns", "_start_ns")

    def __init__(self, cfg: RoleConfig, start_ns: int) -> None:
        self._start_ns = start_ns
        self._idle_ns = int(cfg.idle_s * 1e9)
        self._first_ns = int(cfg.first_timeout_s * 1e9)
        self._deadline_ns = start_ns + int(cfg.deadline_s * 1e9)

    def done(self, tally: Tally, now_ns: int) -> bool:
        """Return True when the subscriber should stop receiving."""
        if tally.complete or now_ns >= self._deadline_ns:
            return True
        if tally.received:
            return now_ns - tally.last_rx_ns >= self._idle_ns
        return now_ns - self._start_ns >= self._first_ns


def sleep_until(target_ns: int) -> None:
    """Block until ``time.monotonic_ns()`` reaches ``target_ns`` (returns at once if past)."""
    delay = target_ns - time.monotonic_ns()
    if delay > 0:
        time.sleep(delay / 1e9)
