"""Reading fields <-> the JSON text stored in the ``data`` column.

Theory of operation: the ``data`` column must be plain JSON so that SQLite's
``json_extract`` (and any other tool) reads it, yet a replay or an export must
give back exactly what was received. Payload values are plain data (None, bool,
int, float, str, bytes, aware datetimes, lists, str-keyed dicts); JSON has all
of these but three, which are written as one-key tagged objects:

* bytes -> ``{"$bytes": "<base64>"}``
* an aware datetime -> ``{"$datetime": "<ISO 8601 with offset>"}``
* NaN and the infinities (SQLite 3.40's JSON parser refuses bare ``NaN``) ->
  ``{"$float": "NaN" | "Infinity" | "-Infinity"}``

Everything else is stock JSON; floats are written with ``repr`` precision, so
they round-trip exactly. The common case (numbers and strings only) takes the
C encoder's fast path; only a value it refuses takes the tagging walk.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from typing import Any

__all__ = ["dumps", "loads", "plain"]

_fast = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_TAGS = ("$bytes", "$datetime", "$float")


def dumps(fields: dict[str, Any]) -> str:
    """Encode a reading's fields as compact JSON text (tagging bytes, datetimes, NaN).

    Args:
        fields: the reading's fields as plain data.

    Returns:
        JSON text.

    Raises:
        TypeError: a value is not plain data (not something a payload can hold).
    """
    try:
        return _fast(fields)
    except (TypeError, ValueError):
        return _fast(_tag(fields))


def loads(text: str) -> dict[str, Any]:
    """Decode ``data`` JSON text back to the fields (untagging bytes, datetimes, NaN).

    Args:
        text: what :func:`dumps` produced.

    Returns:
        The fields.

    Raises:
        ValueError: the text is not JSON or not a JSON object.
    """
    value = json.loads(text, object_hook=_untag)
    if not isinstance(value, dict):
        raise ValueError("reading data must be a JSON object")
    return value


def plain(value: Any) -> Any:
    """A JSON-ready copy of ``value`` (tags as :func:`dumps` writes them)."""
    return _tag(value)


def _tag(value: Any) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$float": "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dict):
        return {str(k): _tag(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tag(v) for v in value]
    raise TypeError(f"cannot store a {type(value).__name__} in a reading")


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) != 1:
        return obj
    key, value = next(iter(obj.items()))
    if key not in _TAGS or not isinstance(value, str):
        return obj
    if key == "$bytes":
        return base64.b64decode(value)
    if key == "$datetime":
        return dt.datetime.fromisoformat(value)
    return float(value.replace("Infinity", "inf"))
