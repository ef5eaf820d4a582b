"""Checking the dashboard's request parameters: a bad one is a one-line reason, never a crash.

Sans-IO: query strings in (a mapping of name -> text), validated values or
:class:`BadRequest` out; the server turns that into a 400 (or 404) with the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from ganglion.dashboard.history import HistoryQuery

__all__ = ["MAX_POINTS", "BadRequest", "history_query", "listen_address"]

#: ``points`` a history request may ask for at most (a very wide screen's pixels).
MAX_POINTS = 10_000
#: Default ``points`` (about one per pixel of a wide plot).
DEFAULT_POINTS = 1000
#: Default range of a history request without ``since``: the last hour.
DEFAULT_SPAN_S = 3600.0

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


class BadRequest(Exception):
    """A request the dashboard refuses; ``str()`` is the one-line reason.

    Attributes:
        status: the HTTP status to answer with (400, or 404 for unknown things).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


def _seconds(params: Mapping[str, str], name: str, default: float) -> float:
    text = params.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name}={text!r} is not a time (seconds since the epoch)") from None
    if not math.isfinite(value) or not 0 <= value < 2**33:
        raise BadRequest(f"{name}={text!r} is not a time between 1970 and 2242")
    return value


def history_query(params: Mapping[str, str], *, now_s: float) -> HistoryQuery:
    """The :class:`HistoryQuery` a ``/api/history`` query string asks for.

    ``type`` and ``field`` are required; ``since``/``until`` are seconds since the
    epoch (decimals allowed; default: the last hour up to now); ``points`` is 1 to
    :data:`MAX_POINTS` (default :data:`DEFAULT_POINTS`).

    Raises:
        BadRequest: a parameter is missing or not valid (the reason names it).
    """
    unknown = sorted(set(params) - {"type", "field", "since", "until", "points", "token"})
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}; use type, field, since, until, points")
    type_name = params.get("type", "")
    if not type_name:
        raise BadRequest("type is required (a dotted type name, e.g. sensors.Temperature)")
    if not _TYPE.match(type_name):
        raise BadRequest(f"type={type_name!r} is not a dotted type name")
    field = params.get("field", "")
    if not field:
        raise BadRequest("field is required (a numeric field of the type, e.g. celsius)")
    if not _FIELD.match(field):
        raise BadRequest(f"field={field!r} is not a field name")
    until = _seconds(params, "until", now_s)
    since = _seconds(params, "since", until - DEFAULT_SPAN_S)
    if since >= until:
        raise BadRequest(f"since ({since:g}) must be before until ({until:g})")
    text = params.get("points", "")
    points = DEFAULT_POINTS
    if text:
        if not text.isdigit():
            raise BadRequest(f"points={text!r} is not a whole number")
        points = int(text)
        if not 1 <= points <= MAX_POINTS:
            raise BadRequest(f"points={points} is out of range (1 to {MAX_POINTS})")
    return HistoryQuery(type_name, field, int(since * 1e9), int(until * 1e9), points)


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as (host, port).

    Raises:
        ValueError: not HOST:PORT with a port from 0 to 65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host.strip("[]"), int(port)
