"""Decoding that trusts the log: events built from what fastavro read, without re-validating.

Every event on an event topic was validated by its publisher (the ``Publisher`` SDK, the gateway)
before it was encoded, so a processor replaying the log need not run pydantic and the contract's
Python rules again for every record (docs/processing.md, "Decoding on the hot path"). What is
still checked: the framing and the Avro body (``Codec``), a known event type whose schema is the
one that wrote the record, and that the record's fields are the model's (no unknown field, no
required field missing). Values are converted only where Avro and the model differ in
representation: uuids, enums, arrays as tuples, nested records as models.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from functools import cache
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from events.catalog import Catalog
from events.codec import Codec, InvalidEventError
from events.envelope import Event
from events.registry import EVENT_TYPES

Convert = Callable[[Any], Any]
_set = object.__setattr__


def _optional(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


def _items(convert: Convert) -> Convert:
    return lambda values: tuple(convert(value) for value in values)


def _enum(cls: type[Enum]) -> Convert:
    members = {member.value: member for member in cls}

    def convert(value: Any) -> Enum:
        try:
            return members[value]
        except KeyError:
            raise ValueError(f"{value!r} is no {cls.__name__}") from None

    return convert


def _converter(annotation: Any) -> Convert | None:
    """How a value read by fastavro becomes the model's value; None when it stays as it is."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _converter(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        (inner,) = (a for a in typing.get_args(annotation) if a is not type(None))
        convert = _converter(inner)
        return None if convert is None else _optional(convert)
    if origin is tuple:
        convert = _converter(typing.get_args(annotation)[0])
        return tuple if convert is None else _items(convert)
    return _leaf(annotation)


def _leaf(annotation: Any) -> Convert | None:
    if annotation is UUID:
        return UUID
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return _enum(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return builder(annotation)
    return None  # str, int, float, bool, date, datetime: fastavro reads them as the model does


@cache
def builder(model: type[BaseModel]) -> Callable[[Mapping[str, Any]], Any]:
    """A function building ``model`` from a record without validation (fields checked by name).

    The function is generated per model, one line per field (a loop over the fields with a
    converter lookup each took ~2/3 of a decode, twice fastavro's read of the body).
    """
    fields = model.model_fields
    # What model_construct does, without its per-field alias lookups (our models have none).
    assert not model.__pydantic_root_model__ and not model.__pydantic_post_init__
    assert all(field.alias is None and field.validation_alias is None for field in fields.values())
    required = frozenset(name for name, field in fields.items() if field.is_required())
    known = frozenset(fields)
    scope: dict[str, Any] = {
        "model": model,
        "new": model.__new__,
        "_set": _set,
        "known": known,
        "required": required,
        "fail": _field_error,
    }
    lines = [
        "def build(record):",
        "    present = record.keys()",
        "    if not present <= known or not required <= present:",
        "        fail(model, present, known, required)",
        "    values = {",
    ]
    for i, (name, field) in enumerate(fields.items()):
        assert name.isidentifier()
        if field.is_required():
            get = f"record[{name!r}]"
        else:
            scope[f"d{i}"] = field.get_default(call_default_factory=True)
            get = f"record.get({name!r}, d{i})"
        convert = _converter(field.annotation)
        if convert is None:
            lines.append(f"        {name!r}: {get},")
        else:
            scope[f"c{i}"] = convert
            lines.append(f"        {name!r}: None if (v{i} := {get}) is None else c{i}(v{i}),")
    lines += [
        "    }",
        "    built = new(model)",
        '    _set(built, "__dict__", values)',
        '    _set(built, "__pydantic_fields_set__", set(present))',
        '    _set(built, "__pydantic_extra__", None)',
        '    _set(built, "__pydantic_private__", None)',
        "    return built",
    ]
    exec(compile("\n".join(lines), f"<builder of {model.__name__}>", "exec"), scope)
    build: Callable[[Mapping[str, Any]], Any] = scope["build"]
    return build


def _field_error(
    model: type[BaseModel], present: Any, known: frozenset[str], required: frozenset[str]
) -> None:
    if not present <= known:
        raise ValueError(f"{model.__name__} has no field {sorted(present - known)}")
    raise ValueError(f"{model.__name__} misses {sorted(required - present)}")


class ReplayCodec(Codec):
    """A Codec whose ``decode_event`` trusts that the log holds validated events."""

    def decode_event(self, data: bytes) -> Event:
        """Read a framed event without pydantic validation; DecodeError is all it raises."""
        writer = self._writer_of(data)
        record = self._read(writer, writer.textual_uuids, data)
        envelope = record.get("envelope")
        event_type = envelope.get("event_type") if isinstance(envelope, dict) else None
        model = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
        if model is None or event_type != writer.version.event_type:
            raise InvalidEventError(
                f"the record is no valid event: event type {event_type!r}"
                f" under the schema of {writer.version.event_type}"
            )
        try:
            event: Event = builder(model)(record)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidEventError(f"the record is no valid event: {exc}") from exc
        return event


def log_codec(catalog: Catalog, *, strict: bool = False) -> Codec:
    """The processors' decoding: trusting the log, or (strict) canonical bytes and every rule."""
    return Codec(catalog, strict=True) if strict else ReplayCodec(catalog, strict=False)
