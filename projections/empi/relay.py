"""Publishing the outbox's decisions as stored: the bytes the batch encoded go to Kafka unchanged.

The outbox holds each decision as the Confluent-framed Avro the batch encoded. The relay used to
decode every row into a model and give it to the `Publisher`, which encoded it again: two thirds
of the relay's time, and a fifth of the runner's (docs/empi.md, "Performance"). The relay now
produces the stored bytes with the key and headers the `Publisher` gives an event: the key is the
person id (`events.topics.person_key`), the headers `event_type`, `schema_id`, `source` and
`traceparent`. The one value not in an outbox column, the envelope's `source`, is read from the
Avro body's first fields — the envelope leads every person schema — where the schema's layout is
the one this reader knows (checked once per schema id), else by decoding the event.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer
from opentelemetry import trace

from consortium.kafka_config import with_environment
from events.catalog import Catalog
from events.codec import Codec
from events.publisher import (
    SAFE_PRODUCER_CONFIG,
    Outgoing,
    PublishError,
    produce_acknowledged,
    traceparent_header,
)
from events.topics import Family, event_topic, person_key

_tracer = trace.get_tracer("consortium.empi")
# The envelope's leading fields as the reader below walks them (Avro binary, in schema order).
_LEADING = (
    ("event_id", "string"),
    ("event_type", "string"),
    ("occurred_at", "long"),
    ("recorded_at", "long"),
    ("source", "string"),
)


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """One outbox row: the decision's id, its person (the Kafka key) and its framed bytes."""

    event_id: uuid.UUID
    person_id: uuid.UUID
    event_type: str
    payload: bytes


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint) at `at`: its value and the position after it."""
    shift = result = 0
    while True:
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), at
        shift += 7


def envelope_source(payload: bytes) -> str:
    """The envelope's `source` of a framed event whose schema leads with the envelope."""
    at = 5  # magic byte and schema id
    for _name, kind in _LEADING:
        value, at = _varint(payload, at)
        if kind == "string":
            if _name == "source":
                return payload[at : at + value].decode()
            at += value
    raise AssertionError("unreachable")


def _leads_with_envelope(schema: Mapping[str, Any]) -> bool:
    """Whether a schema's first field is an envelope whose first fields are `_LEADING`."""
    fields = schema.get("fields") or []
    if not fields or fields[0].get("name") != "envelope":
        return False
    envelope = fields[0].get("type")
    if not isinstance(envelope, Mapping):
        return False
    leading = envelope.get("fields", [])[: len(_LEADING)]
    found = []
    for f in leading:
        kind = f.get("type")
        found.append((f.get("name"), kind.get("type") if isinstance(kind, Mapping) else kind))
    return tuple(found) == _LEADING


class DecisionRelay:
    """A producer of stored decisions, acknowledged by all in-sync replicas (acks=all)."""

    def __init__(
        self,
        bootstrap_servers: str,
        consortium_id: str,
        codec: Codec,
        *,
        principal: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._codec = codec
        self._topic = event_topic(Family.PERSON, consortium_id)
        self._timeout = timeout
        self._readable = _readable_ids(codec.catalog)
        settings = with_environment(None, principal)
        self._producer = Producer(
            {"bootstrap.servers": bootstrap_servers, **SAFE_PRODUCER_CONFIG, **settings}
        )

    def source_of(self, payload: bytes) -> str:
        """The envelope's source, read from the bytes where the layout is known."""
        if payload[:1] == b"\x00" and int.from_bytes(payload[1:5], "big") in self._readable:
            return envelope_source(payload)
        return self._codec.decode_event(payload).envelope.source

    def outgoing(self, rows: Sequence[StoredDecision], traceparent: bytes) -> list[Outgoing]:
        """The records to produce: what `Publisher` would send for the decoded events."""
        return [
            (
                self._topic,
                row.payload,
                person_key(row.person_id),
                (
                    ("event_type", row.event_type.encode()),
                    ("schema_id", str(int.from_bytes(row.payload[1:5], "big")).encode()),
                    ("source", self.source_of(row.payload).encode()),
                    ("traceparent", traceparent),
                ),
            )
            for row in rows
        ]

    def publish(self, rows: Sequence[StoredDecision]) -> None:
        """Produce the rows in order; return once Kafka acknowledged every one, else raise."""
        with _tracer.start_as_current_span("relay decisions") as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.batch.message_count", len(rows))
            records = self.outgoing(rows, traceparent_header())
            acknowledged, errors = produce_acknowledged(self._producer, records, self._timeout)
        if errors or acknowledged < len(rows):
            raise PublishError(
                f"{len(rows) - acknowledged} of {len(rows)} decisions were not acknowledged"
                f" by Kafka: {errors[:3]}",
                [],
                {},
            )

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is still queued."""
        self._producer.flush(timeout)


def _readable_ids(catalog: Catalog) -> frozenset[int]:
    return frozenset(v.id for v in catalog.all() if _leads_with_envelope(v.schema))
