"""Units of fields: the ONE place the dashboard looks them up.

Today a unit comes from what the log recorded for the type (``types.units``) or,
failing that, from the field's name (ganglion's convention: ``celsius``,
``percent``, ``hpa``; :func:`ganglion.logger.catalog.unit_of`). When types declare
per-field metadata (unit, device class), switch this function to read it first.
"""

from __future__ import annotations

from collections.abc import Mapping

from ganglion.logger.catalog import unit_of

__all__ = ["field_unit"]


def field_unit(type_name: str, field: str, logged: Mapping[str, str] | None = None) -> str | None:
    """The unit of ``type_name``'s ``field``, or None when unknown.

    Args:
        type_name: the dotted type name (for declared metadata, once types carry it).
        field: the field's name.
        logged: field -> unit as the log recorded it for this type, if a log is open.
    """
    if logged and field in logged:
        return logged[field]
    return unit_of(field)
