"""Reading an envelope's leading fields straight from a framed event's bytes, without decoding it.

The index reads its own decisions back from the person topic (half of what it reads) only to move
past them, and its relay needs one value of each stored decision that no outbox column holds (the
envelope's `source`). Both would decode whole events for one or two fields. The envelope leads
every event schema but the reports', and its first fields are `event_id`, `event_type`,
`occurred_at`, `recorded_at`, `source` (Avro binary: strings and longs, in schema order), so they
can be read from the bytes. `EnvelopeReader` does that only for schema ids whose layout it checked
in the catalog; for any other id it says so and the caller decodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from events.catalog import Catalog

# The envelope's leading fields as `_leading` walks them.
_LEADING = (
    ("event_id", "string"),
    ("event_type", "string"),
    ("occurred_at", "long"),
    ("recorded_at", "long"),
    ("source", "string"),
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """An Avro int or long (zig-zag varint) at `at`: its value and the position after it."""
    shift = result = 0
    while True:
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), at
        shift += 7


def _leading(payload: bytes) -> tuple[int, str]:
    """The envelope's `recorded_at` (milliseconds) and `source` of a framed event."""
    at, recorded = 5, 0  # after the magic byte and the schema id
    for name, kind in _LEADING:
        value, at = _varint(payload, at)
        if name == "recorded_at":
            recorded = value
        elif name == "source":
            return recorded, payload[at : at + value].decode()
        elif kind == "string":
            at += value
    raise AssertionError("the envelope's source is among its leading fields")


def leads_with_envelope(schema: Mapping[str, Any]) -> bool:
    """Whether a schema's first field is an envelope whose first fields are `_LEADING`."""
    fields = schema.get("fields") or []
    if not fields or fields[0].get("name") != "envelope":
        return False
    envelope = fields[0].get("type")
    if not isinstance(envelope, Mapping):
        return False
    found = []
    for f in envelope.get("fields", [])[: len(_LEADING)]:
        kind = f.get("type")
        found.append((f.get("name"), kind.get("type") if isinstance(kind, Mapping) else kind))
    return tuple(found) == _LEADING


class EnvelopeReader:
    """Reads `source` and `recorded_at` from the bytes of events whose layout it knows."""

    def __init__(self, catalog: Catalog, event_types: frozenset[str] | None = None) -> None:
        self.ids = frozenset(
            v.id
            for v in catalog.all()
            if (event_types is None or v.event_type in event_types)
            and leads_with_envelope(v.schema)
        )

    def readable(self, payload: bytes | None) -> bool:
        """Whether the payload is framed under one of the checked schema ids."""
        return (
            payload is not None
            and payload[:1] == b"\x00"
            and int.from_bytes(payload[1:5], "big") in self.ids
        )

    @staticmethod
    def source(payload: bytes) -> str:
        """The envelope's `source` (the payload must be `readable`)."""
        return _leading(payload)[1]

    @staticmethod
    def recorded_at(payload: bytes) -> datetime:
        """The envelope's `recorded_at` as the decoder gives it (the payload must be `readable`)."""
        return _EPOCH + timedelta(milliseconds=_leading(payload)[0])
