"""Helpers of the invite/join tests: seeded entropy, an in-memory exchange, isolation checks."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

from mdns_isolation import mdns_isolation_problem as mdns_isolation_problem  # re-exported

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


def other_code(code: InviteCode, *, word: int = 0) -> InviteCode:
    """The same nameplate with one word changed: a wrong code that reaches the exchange."""
    from ganglion.pairing._words import EVEN, ODD

    words = list(code.words)
    table = ODD if word % 2 == 0 else EVEN
    words[word] = table[(table.index(words[word]) + 1) % 256]
    return InviteCode(code.nameplate, tuple(words))
