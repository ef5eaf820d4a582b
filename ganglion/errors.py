"""One exception hierarchy for ganglion.

Every error the package raises derives from :class:`GanglionError`. Each area has
its own sub-root, and each leaf also inherits the matching builtin (as gpiozero's
``PinInvalidPull(PinError, ValueError)`` does) so callers can catch either.

Blame is split the way h11 splits it: :class:`LocalError` is raised when *this*
program misuses the API (a bad type name, a message too large to send), while
:class:`DecodeError` is the one and only error the wire codec raises for bytes a
peer sent. On the datagram hot path a ``DecodeError`` is counted and the datagram
dropped; it never escapes the receive loop.
"""

from __future__ import annotations

from typing import Self


class GanglionError(Exception):
    """Root of every error raised by ganglion."""


class LocalError(GanglionError):
    """This program used the API in a way that cannot work."""


class TypeNameError(LocalError, ValueError):
    """A message type name is not a valid dotted name."""


class TypeRegistrationError(LocalError, TypeError):
    """A class cannot be registered as a message type (unsupported field, name clash)."""


class TypeInUseError(LocalError):
    """A type cannot be retired: this node or a live peer still publishes it."""


class EncodeError(LocalError, ValueError):
    """A message's value cannot be encoded (a field holds an unsupported value)."""


class MessageTooLarge(EncodeError):
    """A message does not fit in one datagram; it is refused, never truncated."""

    def __init__(self, type_name: str, size: int, limit: int) -> None:
        self.type_name = type_name
        self.size = size
        self.limit = limit
        super().__init__(
            f"message of type {type_name!r} needs {size} bytes in a datagram, "
            f"but the limit is {limit} bytes; send smaller messages or raise "
            f"max_datagram (at the risk of IP fragmentation)"
        )


class RemoteError(GanglionError):
    """A peer sent something this node cannot accept."""


class DecodeError(RemoteError, ValueError):
    """Bytes from the network are not a valid ganglion datagram or payload."""


class AuthError(DecodeError):
    """A datagram's MAC is missing or does not verify under the network key."""


class ConfigError(GanglionError, ValueError):
    """A configuration value (CLI flag, environment variable, config file) is invalid."""


class InterfaceError(ConfigError):
    """The chosen network interface does not exist or has no IPv4 address."""


class KeyFileError(ConfigError):
    """The network key file is missing, unreadable, or not 32 bytes."""


class TransportError(GanglionError, OSError):
    """A socket operation failed in a way the transport cannot recover from."""


class ConfigFileError(ConfigError):
    """A config file is not valid TOML, has an unknown key, or a value of the wrong type.

    Attributes:
        path: the config file.
        line: the 1-based line the problem is on, or None when it cannot be told.
        key: the dotted key at fault (``bus.tcp_port``), or None for a syntax error.
    """

    def __init__(self, message: str, *, path: str, line: int | None, key: str | None) -> None:
        self.path = path
        self.line = line
        self.key = key
        super().__init__(message)


class PluginNotFoundError(ConfigError, LookupError):
    """A plugin was enabled by a name that no installed entry point has."""


class StateError(GanglionError):
    """The node's state directory cannot be used.

    The message is ``problem`` and, where the user can fix it by choosing another
    directory, ``remedy``. The remedy names the way to choose one, which differs
    between the Python API (``Node(state_dir=...)``) and the CLI (``--state-dir``),
    so each swaps in its own words with :meth:`with_remedy`.

    Args:
        problem: what is wrong.
        remedy: what to do about it; empty when ``problem`` already says it.

    Attributes:
        problem: as given.
        remedy: as given.
    """

    def __init__(self, problem: str, *, remedy: str = "") -> None:
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"{problem}; {remedy}" if remedy else problem)

    def with_remedy(self, remedy: str) -> Self:
        """The same error with another remedy (in the caller's words).

        Args:
            remedy: the new remedy.

        Returns:
            A new error of the same class with the same problem.
        """
        return type(self)(self.problem, remedy=remedy)


class StateCorruptError(StateError, ValueError):
    """A file in the state directory does not hold what the node wrote there."""


class StateLockedError(StateError, OSError):
    """Another process (another node) holds the state directory's lock."""


class LogDatabaseError(GanglionError, OSError):
    """A log database cannot be opened, read or written (read-only, disk full, not a log)."""


class InviteCodeError(ConfigError):
    """An invite code as typed is not a code ``ganglion invite`` prints (format, unknown word)."""


class PairingError(GanglionError):
    """An invite/join exchange of the network key did not complete."""


class WrongCodeError(PairingError):
    """Key confirmation failed: the code is wrong or expired. Nothing was transferred."""


class InviteClosedError(PairingError):
    """The invite is used, burnt by wrong codes, expired, or busy with another joiner."""


class PairingProtocolError(PairingError, RemoteError):
    """The other side of an invite/join exchange sent bytes that are not the protocol."""


class PairingUnavailable(PairingError, ImportError):
    """The optional packages for invite/join are missing (``pip install ganglion-net[secure]``)."""


class InviteBusyError(InviteClosedError):
    """The inviter is in another joiner's exchange, or one began under a second ago: retry."""


class StatusError(GanglionError, OSError):
    """A running node's status could not be read (timeout, refused, not a status answer)."""


class NodeNotRunningError(StatusError):
    """No node answers on the status socket of a state directory: none is running there."""


class BrokerRefusedError(GanglionError):
    """The MQTT broker refused the bridge for good: a bad user name or password, not
    authorised, or a TLS certificate that does not verify. Retrying cannot help."""
