"""Units of fields: the ONE place the dashboard looks them up.

In order: what the type declares (``field(metadata={"unit": ...})`` or
:func:`ganglion.quantity`, known from the class or from the schema a publisher
announced: :meth:`ganglion.Node.type_schema`), then what the log recorded for the
type (``types.units``), then the field's name (ganglion's convention: ``celsius``,
``percent``, ``hpa``; :func:`ganglion.logger.catalog.unit_of`).
"""

from __future__ import annotations

from collections.abc import Mapping

from ganglion.logger.catalog import unit_of
from ganglion.types import TypeSchema

__all__ = ["field_unit"]


def field_unit(type_name: str, field: str, logged: Mapping[str, str] | None = None,
               declared: TypeSchema | None = None) -> str | None:
    """The unit of ``type_name``'s ``field``, or None when unknown.

    Args:
        type_name: the dotted type name (what ``declared`` describes).
        field: the field's name.
        logged: field -> unit as the log recorded it for this type, if a log is open.
        declared: the type's schema, when the node knows it.
    """
    if declared is not None and declared.name == type_name:
        for spec in declared.fields:
            if spec.name == field and spec.unit:
                return spec.unit
    if logged and field in logged:
        return logged[field]
    return unit_of(field)
