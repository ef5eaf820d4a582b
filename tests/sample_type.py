"""The five-field ``Sample`` message both the compiled lanes' tests and the payload
benchmark use (an int, a float, a bool, a string and a blob: one field of every
scalar kind the lanes write themselves).

The tests register it three ways (plain, refusing a value in ``__setattr__``, frozen
and slotted: each built differently by the receive lane) and ``bench/payload_routes.py``
times the routes on it, so the shape that is benchmarked is the one that is checked.
Imported as ``sample_type`` by tests (``tests/`` is on their ``sys.path``) and as
``tests.sample_type`` by the benchmark (the repository is first on its ``sys.path``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ganglion.types import message

#: The fields, in order: the payload's layout.
SAMPLE_FIELDS: tuple[tuple[str, type], ...] = (
    ("n", int), ("x", float), ("ok", bool), ("label", str), ("raw", bytes))


def sample_class(type_name: str, *, module: str, frozen: bool = False, slots: bool = False,
                 namespace: dict[str, Any] | None = None) -> type:
    """A dataclass with :data:`SAMPLE_FIELDS`, registered as ``type_name``; ``namespace``
    adds methods (``__post_init__``, ``__setattr__``); ``module`` is where it is defined."""
    cls = dataclasses.make_dataclass(type_name.rsplit(".", 1)[-1], SAMPLE_FIELDS,
                                     namespace=namespace, frozen=frozen, slots=slots)
    cls.__module__ = module
    return message(type_name)(cls)
