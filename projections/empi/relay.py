"""Publishing the outbox's decisions as stored: the bytes the batch encoded go to Kafka unchanged.

The outbox holds each decision as the Confluent-framed Avro the batch encoded. The relay used to
decode every row into a model and give it to the `Publisher`, which encoded it again: two thirds
of the relay's time, and a fifth of the runner's (docs/empi.md, "Performance"). The relay now
produces the stored bytes with the key and headers the `Publisher` gives an event: the key is the
person id (`events.topics.person_key`), the headers `event_type`, `schema_id`, `source` and
`traceparent`. The one value not in an outbox column, the envelope's `source`, is read from the
bytes (`framing.EnvelopeReader`), or by decoding the event where the layout is not the known one.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from confluent_kafka import Producer
from opentelemetry import trace

from consortium.kafka_config import with_environment
from events.codec import Codec
from events.publisher import (
    SAFE_PRODUCER_CONFIG,
    Outgoing,
    PublishError,
    produce_acknowledged,
    traceparent_header,
)
from events.topics import Family, event_topic, person_key
from projections.empi.framing import EnvelopeReader

_tracer = trace.get_tracer("consortium.empi")


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """One outbox row: the decision's id, its person (the Kafka key) and its framed bytes."""

    event_id: uuid.UUID
    person_id: uuid.UUID
    event_type: str
    payload: bytes


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
        self._envelopes = EnvelopeReader(codec.catalog)
        settings = with_environment(None, principal)
        self._producer = Producer(
            {"bootstrap.servers": bootstrap_servers, **SAFE_PRODUCER_CONFIG, **settings}
        )

    def source_of(self, payload: bytes) -> str:
        """The envelope's source, read from the bytes where the layout is known."""
        if self._envelopes.readable(payload):
            return self._envelopes.source(payload)
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
