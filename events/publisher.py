"""Publishes events to Kafka and returns only when the broker has acknowledged every one."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry import propagate, trace

from consortium.kafka_config import with_environment
from events.topics import MAX_RECORD_BYTES, event_topic

if TYPE_CHECKING:
    from events.codec import Codec
    from events.envelope import Event

_tracer = trace.get_tracer("consortium.publisher")

# Settings a publisher must not lose: librdkafka leaves idempotence off unless asked.
SAFE_PRODUCER_CONFIG: Mapping[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "max.in.flight.requests.per.connection": 5,
    "compression.type": "lz4",
    "linger.ms": 5,
    "delivery.timeout.ms": 30_000,
    # Explicit, and the topics' own (events/topics.py): librdkafka's default (1,000,000) is below
    # the codec's limit, which let an event pass encoding and then fail on every retry.
    "message.max.bytes": MAX_RECORD_BYTES,
}


@dataclass(frozen=True)
class Delivery:
    """Where Kafka stored one event."""

    event_id: UUID
    topic: str
    partition: int
    offset: int


class PublishError(Exception):
    """Kafka did not acknowledge every event; says which were stored and which were not.

    `rejected`: the failed events Kafka refused for good (too large, invalid record): retrying
    them cannot succeed, unlike the others (unreachable broker, timeout)."""

    def __init__(
        self,
        message: str,
        stored: list[Delivery],
        failed: dict[UUID, str],
        rejected: frozenset[UUID] = frozenset(),
    ) -> None:
        super().__init__(message)
        self.stored = stored
        self.failed = failed
        self.rejected = rejected


class UnpublishableError(Exception):
    """Some events cannot be written at all (they do not encode, or are too large); raised
    before anything of the request was produced. `errors`: index in the request -> reason."""

    def __init__(self, errors: dict[int, str]) -> None:
        super().__init__(f"{len(errors)} events cannot be published")
        self.errors = errors


# Errors of one record that no retry can cure (the record, not the broker, is at fault).
PERMANENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.INVALID_MSG,
    }
)


# One record to produce: (topic, value, key, headers).
Outgoing = tuple[str, bytes | None, bytes | None, Sequence[tuple[str, str | bytes | None]]]


def produce_acknowledged(
    producer: Producer, records: Iterable[Outgoing], timeout: float
) -> tuple[int, list[str]]:
    """Produce every record, then wait for Kafka: (how many were acknowledged, errors).

    For writers that store a whole group or nothing (dead letters, outbox relays): the caller
    treats anything short of every record acknowledged with no errors as a failure of all.
    """
    errors: list[str] = []
    acknowledged = 0
    deadline = time.monotonic() + timeout

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        nonlocal acknowledged
        if err is None:
            acknowledged += 1
        else:
            errors.append(err.str())

    for topic, value, key, headers in records:
        while True:
            try:
                producer.produce(
                    topic, value=value, key=key, headers=list(headers), on_delivery=on_delivery
                )
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                if time.monotonic() > deadline:
                    errors.append("local producer queue full until the timeout")
                    return acknowledged, errors
                producer.poll(0.05)
    remaining = producer.flush(max(0.0, deadline - time.monotonic()))
    if remaining:
        errors.append(f"{remaining} still in flight after {timeout} s")
    return acknowledged, errors


def traceparent_header() -> bytes:
    """The W3C trace context of the current span, or of a fresh root when tracing is off."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if "traceparent" in carrier:
        return carrier["traceparent"].encode()
    # No SDK configured: still give every batch a trace id, so consumers can correlate.
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01".encode()


class Publisher:
    """A confluent-kafka producer of framed Avro events, acknowledged by all in-sync replicas."""

    def __init__(
        self,
        bootstrap_servers: str,
        consortium_id: str,
        *,
        codec: Codec | None = None,
        config: Mapping[str, Any] | None = None,
        principal: str | None = None,
    ) -> None:
        if codec is None:
            from events.catalog import Catalog
            from events.codec import Codec

            codec = Codec(Catalog.load())
        self._codec = codec
        self._consortium_id = consortium_id
        # Security comes from the environment (docs/security.md) unless `config` names a protocol.
        settings = with_environment(config, principal)
        self._producer = Producer(
            {"bootstrap.servers": bootstrap_servers, **SAFE_PRODUCER_CONFIG, **settings}
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is still queued, then release the producer."""
        self._producer.flush(timeout)

    def publish(self, events: Sequence[Event], timeout: float = 30.0) -> list[Delivery]:
        """Publish events in order; return their deliveries once all are acknowledged."""
        with _tracer.start_as_current_span("publish events") as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.batch.message_count", len(events))
            return self._publish(events, timeout, traceparent_header())

    def _publish(
        self, events: Sequence[Event], timeout: float, traceparent: bytes
    ) -> list[Delivery]:
        deliveries: dict[int, Delivery] = {}
        failed: dict[UUID, str] = {}
        deadline = time.monotonic() + timeout
        for index, event in enumerate(events):
            self._produce(index, event, traceparent, deliveries, failed, deadline)
        pending = len(events)
        while len(deliveries) + len(failed) < pending and time.monotonic() < deadline:
            self._producer.poll(min(0.1, max(0.0, deadline - time.monotonic())))
        stored = [deliveries[i] for i in sorted(deliveries)]
        if len(stored) == len(events):
            return stored
        for index, event in enumerate(events):
            if index not in deliveries and event.envelope.event_id not in failed:
                failed[event.envelope.event_id] = "no acknowledgement before the timeout"
        raise PublishError(
            f"{len(failed)} of {len(events)} events were not acknowledged by Kafka",
            stored,
            failed,
        )

    def _produce(
        self,
        index: int,
        event: Event,
        traceparent: bytes,
        deliveries: dict[int, Delivery],
        failed: dict[UUID, str],
        deadline: float,
    ) -> None:
        envelope = event.envelope
        value = self._codec.encode_event(event)
        headers: list[tuple[str, str | bytes | None]] = [
            ("event_type", envelope.event_type.encode()),
            ("schema_id", str(int.from_bytes(value[1:5], "big")).encode()),
            ("source", envelope.source.encode()),
            ("traceparent", traceparent),
        ]

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                failed[envelope.event_id] = err.str()
            else:
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                assert topic is not None and partition is not None and offset is not None
                deliveries[index] = Delivery(envelope.event_id, topic, partition, offset)

        topic = event_topic(event.family, self._consortium_id)
        key = event.kafka_key()
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                if time.monotonic() > deadline:
                    failed[envelope.event_id] = "local producer queue full until the timeout"
                    return
                self._producer.poll(0.05)
            except KafkaException as exc:
                failed[envelope.event_id] = str(exc)
                return
