"""ganglion: zero-config sensor networks over UDP multicast.

The supported API is what this module re-exports. Message types::

    from dataclasses import dataclass
    from ganglion import message

    @message("brewery.Temperature")
    @dataclass
    class Temperature:
        sensor: str
        celsius: float

The network side (:class:`~ganglion.node.Node`, :class:`~ganglion.runtime.endpoint.Endpoint`,
:class:`~ganglion.client.PluginClient`) is imported lazily
so that ``import ganglion`` stays cheap and works on any machine. :func:`ganglion.run`
runs a main coroutine as :func:`asyncio.run` does, on uvloop where it is installed
(:mod:`ganglion.eventloop`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ganglion.errors import (
    AuthError,
    ConfigError,
    DecodeError,
    EncodeError,
    GanglionError,
    InterfaceError,
    KeyFileError,
    LocalError,
    MessageTooLarge,
    RemoteError,
    TransportError,
    TypeInUseError,
    TypeNameError,
    TypeRegistrationError,
)
from ganglion.types import (
    FieldSchema,
    MessageType,
    Record,
    TypeSchema,
    as_dict,
    lookup,
    message,
    quantity,
    registered,
    type_name_of,
    type_of,
    type_schema,
)

if TYPE_CHECKING:
    from ganglion.client import PluginClient
    from ganglion.eventloop import run
    from ganglion.node import Node, NodeStats
    from ganglion.runtime.endpoint import Endpoint, EndpointStats
    from ganglion.runtime.subscription import MessageInfo, Subscription

__version__ = "0.1.0"

_LAZY = {
    "Endpoint": "ganglion.runtime.endpoint",
    "EndpointStats": "ganglion.runtime.endpoint",
    "MessageInfo": "ganglion.runtime.subscription",
    "Node": "ganglion.node",
    "NodeStats": "ganglion.node",
    "PluginClient": "ganglion.client",
    "Subscription": "ganglion.runtime.subscription",
    "run": "ganglion.eventloop",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ganglion' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AuthError",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "Endpoint",
    "EndpointStats",
    "FieldSchema",
    "GanglionError",
    "InterfaceError",
    "KeyFileError",
    "LocalError",
    "MessageInfo",
    "MessageTooLarge",
    "MessageType",
    "Node",
    "NodeStats",
    "PluginClient",
    "Record",
    "RemoteError",
    "Subscription",
    "TransportError",
    "TypeInUseError",
    "TypeNameError",
    "TypeRegistrationError",
    "TypeSchema",
    "__version__",
    "as_dict",
    "lookup",
    "message",
    "quantity",
    "registered",
    "run",
    "type_name_of",
    "type_of",
    "type_schema",
]
