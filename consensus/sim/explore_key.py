"""Canonical keys of explorer worlds: equal keys, equal futures (up to a renaming).

Theory of operation: a world's key is every node's ``state_key()`` (or None when it is
down), every durable state (without acceptor state for learned slots, which a restart
ignores), the in-flight messages as a sorted list, the fault budgets and the ballot
count. Under a node renaming (a symmetry, see :mod:`consensus.sim.explore_reduce`) ids
inside the key are renamed, and the canonical key is the smallest over the renamings.

Two forms. The *plain* key (:func:`plain_key`) is the nested tuple, compared as a whole
(``--no-compact``). The *compact* key (:func:`digest_key`) is a 16-byte BLAKE2b digest
built from cached pieces: each node's ``(node key, durable key)`` is hashed once per
renaming and stored in ``world.parts`` (a child re-hashes only the node it touched),
each in-flight message's renamed wire form is hashed once per process, and the world
digest hashes the concatenation of the node digests in renamed order, the sorted message
digests and the budgets. Distinct keys collide with probability about ``n**2 / 2**129``
per level for ``n`` states.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from consensus.journal import DurableState
from consensus.sim.explore_reduce import compact, msg_key, node_key
from consensus.sim.explore_world import NODES, Item, World

__all__ = [
    "budgets", "canonical", "digest_key", "durable_key", "plain_key", "reset_cache",
    "with_budgets",
]

Perm = Mapping[int, int]
DurableKey = tuple[object, ...]
_MSG_DIGESTS: dict[tuple[Item, int], bytes] = {}


def durable_key(state: DurableState) -> DurableKey:
    """Key of one durable state.

    Args:
        state: a durable state.

    Returns:
        Promises and acceptances of unlearned slots, learned entries, round, moves.
    """
    learned_slots = {s for s, _ in state.learned}
    return (
        tuple(sorted((s, b) for s, b in state.promised.items() if s not in learned_slots)),
        tuple(sorted((s, a) for s, a in state.accepted.items() if s not in learned_slots)),
        tuple(state.learned),
        state.max_round,
        tuple(m.encode() for m in state.moves),
    )


def _check_perm(world: World, i: int, perm: Perm | None) -> None:
    if perm is not None and perm[i] != i and world.durable[i].max_round:
        raise RuntimeError(f"symmetry broken: node {i} owns a ballot")


def plain_key(world: World, perm: Perm | None = None, *, inert: bool = False) -> object:
    """The world's nested-tuple key after renaming node ``i`` to ``perm[i]``, budgets aside.

    Args:
        world: the world.
        perm: the renaming, or None for the identity.
        inert: leave out inert node fields (:func:`~consensus.sim.explore_reduce.node_key`).

    Returns:
        The key.

    Raises:
        RuntimeError: ``perm`` moves a node that owns a ballot.
    """
    inverse = {i: i for i in NODES} if perm is None else {v: k for k, v in perm.items()}
    parts = []
    for j in NODES:
        i = inverse[j]
        _check_perm(world, i, perm)
        node = world.nodes[i]
        parts.append(
            (None if node is None else node_key(node, perm, inert=inert), durable_key(world.durable[i]))
        )
    return (
        tuple(parts),
        tuple(sorted(msg_key(src, dst, msg, perm) for src, dst, msg in world.in_flight)),
    )


def _part(world: World, i: int, k: int, perm: Perm | None, inert: bool) -> bytes:
    cached = world.parts.get(i)
    if cached is None:
        cached = world.parts[i] = {}
    digest = cached.get(k)
    if digest is None:
        _check_perm(world, i, perm)
        node = world.nodes[i]
        digest = cached[k] = compact(
            (None if node is None else node_key(node, perm, inert=inert), durable_key(world.durable[i]))
        )
    return digest


def reset_cache() -> None:
    """Forget cached message digests (they are per renaming index; a new search may
    number its renamings differently)."""
    _MSG_DIGESTS.clear()


def _msg_digest(item: Item, k: int, perm: Perm | None) -> bytes:
    digest = _MSG_DIGESTS.get((item, k))
    if digest is None:
        if len(_MSG_DIGESTS) > 1 << 20:
            _MSG_DIGESTS.clear()  # bound the cache; digests are recomputed on demand
        digest = _MSG_DIGESTS[(item, k)] = compact(msg_key(*item, perm))
    return digest


def digest_key(world: World, k: int, perm: Perm | None, *, inert: bool = False) -> bytes:
    """The world's 16-byte key after renaming by ``perm`` (renaming number ``k``), budgets aside.

    Args:
        world: the world (its ``parts`` cache is filled in).
        k: the renaming's index in the configuration's list (0 is the identity); the
            cache is per index.
        inert: leave out inert node fields (the cache assumes one value per search).
        perm: the renaming, or None for the identity.

    Returns:
        The digest.

    Raises:
        RuntimeError: ``perm`` moves a node that owns a ballot.
    """
    inverse = {i: i for i in NODES} if perm is None else {v: key for key, v in perm.items()}
    h = hashlib.blake2b(digest_size=16)
    for j in NODES:
        h.update(_part(world, inverse[j], k, perm, inert))
    h.update(b"".join(sorted(_msg_digest(item, k, perm) for item in world.in_flight)))
    return h.digest()


def canonical(
    world: World,
    perms: Sequence[Perm | None],
    *,
    compact: bool,
    max_ballots: int = 0,
    inert: bool = False,
) -> tuple[object, Perm | None]:
    """The canonical key (smallest over ``perms``) and the renaming that gives it.

    Args:
        world: the world.
        perms: the configuration's symmetries, identity first.
        compact: use 16-byte digests (:func:`digest_key`) instead of plain keys.
        max_ballots: the ballot bound (the key holds the ballots left, see :func:`budgets`).
        inert: leave out inert node fields.

    Returns:
        ``(key, perm)``; the key is :func:`with_budgets` of the base key.

    Raises:
        RuntimeError: some renaming moves a node that owns a ballot.
    """
    base: object
    if compact:
        base, perm = min(((digest_key(world, k, p, inert=inert), p) for k, p in enumerate(perms)), key=lambda kp: kp[0])
    else:
        keys = [(plain_key(world, p, inert=inert), p) for p in perms]
        base, perm = keys[0] if len(keys) == 1 else min(keys, key=lambda kp: repr(kp[0]))
    return with_budgets(base, budgets(world, max_ballots)), perm


Budgets = tuple[int, ...]


def budgets(world: World, max_ballots: int) -> Budgets:
    """What the world may still spend: losses, duplicates, crashes, ballots.

    Args:
        world: the world.
        max_ballots: the ballot bound.

    Returns:
        ``(loss, dup, crash, ballots left)``.
    """
    return (world.loss, world.dup, world.crash, max(0, max_ballots + 1 - world.ballots))


def with_budgets(base: object, left: Budgets) -> object:
    """The key of a world with base key ``base`` and budgets ``left``.

    Args:
        base: a digest (bytes) or a plain key.
        left: from :func:`budgets`.

    Returns:
        Bytes for a digest (16 + 4 bytes), a pair otherwise.
    """
    if isinstance(base, bytes):
        return base + bytes(left)
    return (base, left)
