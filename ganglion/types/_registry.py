"""The message type registry: names -> classes, schemas and fingerprints.

Theory of operation: ``@message("brewery.Temperature")`` turns a class into a
dataclass (if it is not one already), compiles its field annotations once into
converters (:mod:`._fields`), computes the canonical schema string and its
fingerprint, and records the :class:`MessageType` under the name and the class.

Fingerprint: the first 8 bytes of BLAKE2b-64 (``digest_size=8``) over the UTF-8
schema string, e.g. ``{celsius:float,sensor:str}``. Fields are sorted by name,
so reordering them does not change the fingerprint; renaming a field or
changing its kind does. The schema grammar is in docs/protocol.md. The type
name itself is not hashed: it travels next to the fingerprint anyway.

Registration rules:

* one name, one class: a second, different class under a registered name is a
  :class:`TypeRegistrationError`, unless it is the same class re-created by a
  module reload (same module, qualified name and fingerprint), which replaces it;
* one class, one name;
* every field must be of a supported kind, or registration fails naming it;
* key fields (``key=("sensor",)``) must be fields of the class, each of a kind
  whose values compare exactly (str, int, bool, bytes, or an enum of those).

Keys (DDS keyed topics): a type may name the fields that tell its *instances*
apart in one stream, e.g. the ``sensor`` of a temperature reading when one node
publishes three probes. Publishers then keep and answer a last value per key,
and tools count per key (docs/guide.md, "Readings keyed per sensor"). The key
is local metadata, not part of the schema: it does not change the fingerprint,
so declaring one is compatible with every node already running the type.

A :class:`TypeRegistry` can be created for tests; the module-level functions
use :data:`default_registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from ganglion._blake2 import blake2b
from ganglion.errors import TypeRegistrationError
from ganglion.types._codegen import Encoder, SizeBound, compile_codecs
from ganglion.types._decodegen import Decoder, Plan, compile_decoder, native_plan
from ganglion.types._fields import FieldSpec, StructKind, struct_kind
from ganglion.types._meta import TypeSchema, check_metadata, type_schema_of
from ganglion.types._names import validate_type_name
from ganglion.types._templates import with_templates

T = TypeVar("T")

#: Size of a schema fingerprint in bytes.
FINGERPRINT_SIZE = 8


def schema_fingerprint(schema: str) -> bytes:
    """Return the 8-byte fingerprint of a canonical schema string.

    Args:
        schema: the canonical schema, as in :attr:`MessageType.schema`.

    Returns:
        BLAKE2b with an 8-byte digest over the UTF-8 schema.
    """
    return blake2b(schema.encode("utf-8"), digest_size=FINGERPRINT_SIZE).digest()


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class MessageType:
    """A registered message type.

    Attributes:
        name: the dotted type name.
        cls: the dataclass that represents it in this program.
        fingerprint: 8 bytes derived from the field names and kinds.
        fields: the fields in declaration order.
        schema: the canonical schema string the fingerprint hashes.
        encode: the class's generated payload encoder (:mod:`._codegen`); raises
            ``ValueError`` and cbor2's errors, use :func:`encode_message` for
            readable errors.
        size_bound: an upper bound of ``len(encode(obj))``, computed without encoding.
        decode_fast: the class's generated payload decoder (:mod:`._decodegen`), which
            returns ``FALLBACK`` for bytes it does not handle; None when its fields
            have kinds it does not read. Use :func:`payload_decoder`.
        plan: what the compiled receive path reads of ``decode_fast``'s common case
            (:func:`._decodegen.native_plan`); None where it reads nothing.
        key_fields: the fields whose values tell the type's instances apart (the
            sensor of a reading); empty for a type without a key. Not hashed into
            the fingerprint.
    """

    name: str
    cls: type
    fingerprint: bytes
    fields: tuple[FieldSpec, ...]
    schema: str
    struct: StructKind = dataclasses.field(repr=False)
    encode: Encoder = dataclasses.field(repr=False)
    size_bound: SizeBound = dataclasses.field(repr=False)
    decode_fast: Decoder | None = dataclasses.field(default=None, repr=False)
    plan: Plan | None = dataclasses.field(default=None, repr=False)
    key_fields: tuple[str, ...] = ()

    def key_of(self, fields: Any) -> tuple[Any, ...] | None:
        """The key of one message of this type, or None for a type without a key.

        Args:
            fields: an instance of :attr:`cls`, a :class:`~ganglion.types.Record`, or
                a mapping of field names to values (a decoded payload).

        Returns:
            The key fields' values in :attr:`key_fields` order; a field that is
            missing (an older sender's payload) gives None in its place.
        """
        if not self.key_fields:
            return None
        if isinstance(fields, self.cls):
            return tuple(getattr(fields, name) for name in self.key_fields)
        getter = getattr(fields, "get", None)
        if getter is None:
            getter = getattr(fields, "fields", {}).get  # a Record
        return tuple(getter(name) for name in self.key_fields)

    def __repr__(self) -> str:
        return f"MessageType({self.name!r}, {self.cls.__qualname__}, {self.fingerprint.hex()})"


class TypeRegistry:
    """Registered message types by name and by class."""

    def __init__(self) -> None:
        self._by_name: dict[str, MessageType] = {}
        self._by_cls: dict[type, MessageType] = {}

    def message(self, name: str, *, key: tuple[str, ...] | list[str] | str = ()
                ) -> Callable[[type[T]], type[T]]:
        """Class decorator: register the class as message type ``name``.

        A class that is not already a dataclass is made one with plain
        ``@dataclass``; apply ``@dataclass(...)`` yourself (below ``@message``)
        for frozen or slotted messages.

        Args:
            name: the dotted type name, e.g. ``"brewery.Temperature"``.
            key: the fields that tell the type's instances apart (``"sensor"`` or
                ``("sensor", "quantity")``); see :attr:`MessageType.key_fields`.

        Returns:
            A decorator that registers the class and returns it (as a dataclass).

        Raises:
            TypeNameError: ``name`` is not a valid type name (raised at once).
            TypeRegistrationError: from the decorator, see :meth:`register`.
        """
        validate_type_name(name)

        def decorate(cls: type[T]) -> type[T]:
            if "__dataclass_fields__" not in cls.__dict__:
                cls = dataclasses.dataclass(cls)
            self.register(cls, name, key=key)
            return cls

        return decorate

    def register(self, cls: type, name: str, *,
                 key: tuple[str, ...] | list[str] | str = ()) -> MessageType:
        """Register dataclass ``cls`` under ``name``.

        Args:
            cls: a dataclass.
            name: the dotted type name.
            key: the type's key fields (see :meth:`message`).

        Returns:
            The registered :class:`MessageType` (the existing one if ``cls`` is
            already registered under ``name``).

        Raises:
            TypeNameError: ``name`` is not a valid type name.
            TypeRegistrationError: ``cls`` is not a dataclass, has a field of an
                unsupported kind, the name is taken by another class, the
                class is registered under another name, or a key field is not a
                field of the class or not of a kind a key can be.
        """
        validate_type_name(name)
        key_fields = (key,) if isinstance(key, str) else tuple(key)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            raise TypeRegistrationError(f"{name}: {cls!r} is not a dataclass")
        existing = self._by_name.get(name)
        if existing is not None and existing.cls is cls and existing.key_fields == key_fields:
            return existing
        other = self._by_cls.get(cls)
        if other is not None and other is not existing:
            raise TypeRegistrationError(
                f"{cls.__qualname__} is already registered as {other.name!r}; "
                f"one class cannot be two message types"
            )
        struct = struct_kind(cls, name)
        _check_key(name, struct.fields, key_fields)
        check_metadata(name, cls)
        encode, size_bound = _codecs(cls, struct)
        kinds = tuple((f.name, f.schema) for f in struct.fields)
        decode_fast = _fast_decoder(cls, kinds)
        mtype = MessageType(
            name=name,
            cls=cls,
            fingerprint=schema_fingerprint(struct.schema),
            fields=struct.fields,
            schema=struct.schema,
            struct=struct,
            encode=encode,
            size_bound=size_bound,
            decode_fast=decode_fast,
            plan=None if decode_fast is None else native_plan(cls, kinds),
            key_fields=key_fields,
        )
        if existing is not None:
            if not _is_reload(existing, mtype):
                raise TypeRegistrationError(
                    f"type name {name!r} is already registered to "
                    f"{existing.cls.__module__}.{existing.cls.__qualname__}; "
                    f"cannot register {cls.__module__}.{cls.__qualname__} under it too"
                )
            self._by_cls.pop(existing.cls, None)
        self._by_name[name] = mtype
        self._by_cls[cls] = mtype
        return mtype

    def lookup(self, name: str) -> MessageType | None:
        """Return the type registered under ``name``, or None."""
        return self._by_name.get(name)

    def type_of(self, obj: object) -> MessageType:
        """Return the registered type of a message class or instance.

        Args:
            obj: a registered class or an instance of one.

        Returns:
            Its :class:`MessageType`.

        Raises:
            TypeRegistrationError: the class is not registered.
        """
        cls = obj if isinstance(obj, type) else type(obj)
        mtype = self._by_cls.get(cls)
        if mtype is None:
            raise TypeRegistrationError(
                f"{cls.__qualname__} is not a registered message type; "
                f"decorate it with @message('namespace.Name')"
            )
        return mtype

    def registered(self) -> list[MessageType]:
        """Return every registered type, sorted by name."""
        return [self._by_name[n] for n in sorted(self._by_name)]

    def type_schema(self, obj: object) -> TypeSchema:
        """The self-description of a registered type (units, kinds, descriptions).

        Args:
            obj: a type name, a registered class or instance, or a :class:`MessageType`.

        Returns:
            Its :class:`~ganglion.types.TypeSchema` (``source == "class"``).

        Raises:
            TypeRegistrationError: the class or name is not registered.
        """
        if isinstance(obj, MessageType):
            mtype = obj
        elif isinstance(obj, str):
            found = self.lookup(obj)
            if found is None:
                raise TypeRegistrationError(f"{obj!r} is not a registered message type")
            mtype = found
        else:
            mtype = self.type_of(obj)
        return type_schema_of(mtype.name, mtype.cls, mtype.fingerprint,
                              {f.name: f.schema for f in mtype.fields}, mtype.key_fields)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)


#: Field kinds a key may have: values that hash and compare exactly (no floats, whose
#: NaN never equals itself, and nothing mutable).
_KEY_KINDS = frozenset({"str", "int", "bool", "bytes"})


def _check_key(name: str, fields: tuple[FieldSpec, ...], key: tuple[str, ...]) -> None:
    """Refuse key fields that are not fields of the type or cannot be a key."""
    kinds = {f.name: f.schema for f in fields}
    if len(set(key)) != len(key):
        raise TypeRegistrationError(f"{name}: key {key!r} names a field twice")
    for field in key:
        if field not in kinds:
            raise TypeRegistrationError(
                f"{name}: key field {field!r} is not a field of the type "
                f"(fields: {', '.join(sorted(kinds))})")
        kind = kinds[field]
        if kind not in _KEY_KINDS and not kind.startswith("enum<"):
            raise TypeRegistrationError(
                f"{name}: key field {field!r} is of kind {kind}; a key field must be "
                f"str, int, bool, bytes or an enum of those")


def _codecs(cls: type, struct: StructKind) -> tuple[Encoder, SizeBound]:
    import cbor2

    def generic(obj: Any) -> bytes:
        return cbor2.dumps(struct.encode(obj))

    return compile_codecs(cls, tuple((f.name, f.schema, f.kind.encode) for f in struct.fields),
                          generic)


def _is_reload(old: MessageType, new: MessageType) -> bool:
    """True if ``new`` is ``old``'s class re-created by re-importing its module."""
    return (
        old.cls.__module__ == new.cls.__module__
        and old.cls.__qualname__ == new.cls.__qualname__
        and old.fingerprint == new.fingerprint
    )


#: The registry that ``@message`` and the module-level functions use.
default_registry = TypeRegistry()


def message(name: str, *, key: tuple[str, ...] | list[str] | str = ()
            ) -> Callable[[type[T]], type[T]]:
    """Class decorator registering a message type in the default registry.

    Args:
        name: the dotted type name, e.g. ``"brewery.Temperature"``.
        key: the fields that tell the type's instances apart, e.g. ``"sensor"``
            (see :attr:`MessageType.key_fields`); none by default.

    Returns:
        The decorator (see :meth:`TypeRegistry.message`).

    Raises:
        TypeNameError: ``name`` is not a valid type name.
    """
    return default_registry.message(name, key=key)


def lookup(name: str) -> MessageType | None:
    """Return the type registered under ``name`` in the default registry, or None."""
    return default_registry.lookup(name)


def type_of(obj: object) -> MessageType:
    """Return the registered type of a class or instance (default registry).

    Raises:
        TypeRegistrationError: the class is not registered.
    """
    return default_registry.type_of(obj)


def registered() -> list[MessageType]:
    """Return every type in the default registry, sorted by name."""
    return default_registry.registered()


def type_schema(obj: object) -> TypeSchema:
    """The self-description of a registered type: per field its wire kind, unit, kind
    (Home Assistant ``device_class``), ``state_class`` and description, and the type's
    description and key (default registry; see :mod:`ganglion.types._meta`).

    For a type this program has no class of, ask a node: :meth:`ganglion.Node.type_schema`.

    Args:
        obj: a type name, a registered class or instance, or a :class:`MessageType`.

    Raises:
        TypeRegistrationError: it is not registered.
    """
    return default_registry.type_schema(obj)


def _fast_decoder(cls: type, fields: tuple[tuple[str, str], ...]) -> Decoder | None:
    """The class's generated decoder, behind layout templates; None for classes without one."""
    generated = compile_decoder(cls, fields)
    return None if generated is None else with_templates(cls, fields, generated)
