"""Errors raised by the consensus package.

``consensus`` must not import ``ganglion``, so it has its own small hierarchy with one
root, :class:`ConsensusError`. Leaves also inherit the matching builtin so callers can
catch either. Blame is split as h11 splits it: :class:`MalformedMessage` is the one
error raised for anything a peer sent (decoding never raises anything else), while the
other errors mean this program used the API wrongly.
"""

from __future__ import annotations


class ConsensusError(Exception):
    """Root of every error raised by ``consensus``."""


class MalformedMessage(ConsensusError, ValueError):
    """A message or journal record decoded from the wire or disk is not valid."""


class InvalidCommand(ConsensusError, ValueError):
    """A command (type name, group) is not valid: bad name, non-assignable address."""


class AddressSpaceExhausted(ConsensusError, RuntimeError):
    """Every assignable multicast group is already taken."""


class PersistOrderError(ConsensusError, RuntimeError):
    """The caller tried to send a ``Ready``'s messages before persisting its state."""


class InvalidConfig(ConsensusError, ValueError):
    """A :class:`~consensus.node.Config` field is invalid; the message names the field."""
