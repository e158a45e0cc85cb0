"""Encoding the index's decisions for the outbox: the codec's Avro, without a model dump per event.

`Codec.encode_event` turns an event into the dict fastavro writes through `registry.to_record`: a
pydantic `model_dump` and then a walk that turns enums into symbols and tuples into lists. For
the index's decisions that was three fifths of encoding them (a tenth of a batch): `record_of`
builds the same dict from the fields directly, and a decision's agreement entries — one frozen
model per cell and weight, shared by every decision (`matcher._field_agreement`) — are turned
into dicts once. The unit tests require the same dict as `to_record` and the same bytes.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel

from events.codec import Codec
from events.envelope import Event

# id of a shared frozen model -> (the model, kept alive so the id stays its own; its record)
_SHARED: dict[int, tuple[BaseModel, dict[str, Any]]] = {}


def record_of(model: BaseModel) -> dict[str, Any]:
    """What `registry.to_record` gives for a model: enums as symbols, sequences as lists."""
    return {name: _ready(value) for name, value in model.__dict__.items()}


def _ready(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_shared(item) if isinstance(item, BaseModel) else _ready(item) for item in value]
    if isinstance(value, BaseModel):
        return record_of(value)
    return value  # UUIDs, datetimes, dates, strings and numbers: fastavro takes them as they are


def _shared(model: BaseModel) -> dict[str, Any]:
    """The record of a model inside a sequence, made once per (frozen, shared) instance."""
    held = _SHARED.get(id(model))
    if held is not None and held[0] is model:
        return held[1]
    if len(_SHARED) > 4096:
        _SHARED.clear()
    record = record_of(model)
    _SHARED[id(model)] = (model, record)
    return record


def encoded(codec: Codec, decision: Event) -> bytes:
    """The decision framed as `codec.encode_event(decision)` frames it."""
    return codec.encode(decision.event_type, record_of(decision))
