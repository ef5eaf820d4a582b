"""Helpers of the invite/join tests: seeded entropy, an in-memory exchange, isolation checks."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

from ganglion.pairing.codes import InviteCode


def seeded(seed: int) -> Callable[[int], bytes]:
    """An entropy function that repeats for one seed (exchanges replay exactly)."""
    rng = random.Random(seed)
    return rng.randbytes


def key_bytes(seed: int = 1) -> bytes:
    """A 32-byte key that differs per seed."""
    return random.Random(seed).randbytes(32)


def write_key(path: Path, key: bytes) -> Path:
    """A key file as 'ganglion keygen' writes it (mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return path


def mdns_isolation_problem() -> str | None:
    """Why mDNS must not be used here, or None (same rule as tests/runtime/test_discovery.py)."""
    if os.environ.get("GANGLION_TEST_NETNS"):
        return None
    try:
        names = [p.name for p in Path("/sys/class/net").iterdir() if p.name != "lo"]
        up = [n for n in names if int(Path(f"/sys/class/net/{n}/flags").read_text(), 16) & 1]
    except (OSError, ValueError) as exc:
        return f"cannot list interfaces ({exc})"
    if up:
        return (f"mDNS tests send to 224.0.0.251:5353 and {', '.join(sorted(up))} is up; "
                "run them in a private namespace with GANGLION_TEST_NETNS set")
    return None


def other_code(code: InviteCode, *, word: int = 0) -> InviteCode:
    """The same nameplate with one word changed: a wrong code that reaches the exchange."""
    from ganglion.pairing._words import EVEN, ODD

    words = list(code.words)
    table = ODD if word % 2 == 0 else EVEN
    words[word] = table[(table.index(words[word]) + 1) % 256]
    return InviteCode(code.nameplate, tuple(words))
