"""The gateway's Kafka producer: deliveries resolve asyncio futures, served by one poll thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import anyio.to_thread
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry import trace

from consortium.kafka_config import with_environment
from events.codec import Codec
from events.envelope import Event
from events.publisher import SAFE_PRODUCER_CONFIG, Delivery, PublishError, traceparent_header
from events.topics import event_topic

_tracer = trace.get_tracer("consortium.gateway")
# Encoding a large batch is CPU work: above this many events it leaves the event loop.
INLINE_EVENTS = 20
# Batches go through a second producer that lingers: fuller Kafka batches are worth more to them
# than the few ms that every small request (one event, one HL7 message) would wait for nothing.
BULK_LINGER_MS = 5.0
Outcome = tuple[str, int, int] | str  # (topic, partition, offset) or the error


class AsyncPublisher:
    """Publishes like `events.publisher.Publisher` (same records, headers and producer settings),
    but a request awaits futures instead of holding a thread that polls the shared producer
    (threads polling one producer wait on each other's callbacks, up to their poll timeout)."""

    def __init__(
        self,
        bootstrap_servers: str,
        consortium_id: str,
        codec: Codec,
        config: Mapping[str, Any] | None = None,
        *,
        principal: str | None = None,
    ) -> None:
        self._codec = codec
        self._consortium_id = consortium_id
        # Security comes from the environment (docs/security.md) unless `config` names a protocol.
        settings = with_environment(config, principal)
        producer_config = {
            "bootstrap.servers": bootstrap_servers,
            **SAFE_PRODUCER_CONFIG,
            **settings,
        }
        self._producer = Producer(producer_config)
        self._bulk = Producer({**producer_config, "linger.ms": BULK_LINGER_MS})
        self._stopping = threading.Event()
        # Acknowledgements settled by the last poll, handed to their loops in one wake-up each.
        self._settled: list[tuple[asyncio.Future[Outcome], Outcome]] = []
        self._settled_lock = threading.Lock()
        self._pollers = [
            threading.Thread(target=self._serve, args=(p,), name="kafka-deliveries", daemon=True)
            for p in (self._producer, self._bulk)
        ]
        for poller in self._pollers:
            poller.start()

    def _serve(self, producer: Producer) -> None:
        while not self._stopping.is_set():
            producer.poll(0.05)
            self._hand_over()

    def _settle(self, future: asyncio.Future[Outcome], outcome: Outcome) -> None:
        with self._settled_lock:
            self._settled.append((future, outcome))

    def _hand_over(self) -> None:
        """Resolve what the last poll settled: one call into each loop, not one per event."""
        with self._settled_lock:
            settled, self._settled = self._settled, []
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Outcome]]] = {}
        for future, outcome in settled:
            by_loop.setdefault(future.get_loop(), []).append((future, outcome))
        for loop, outcomes in by_loop.items():
            # A closed loop has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve_all, outcomes)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is still queued, then stop the poll thread."""
        deadline = time.monotonic() + timeout
        for producer in (self._producer, self._bulk):
            producer.flush(max(0.0, deadline - time.monotonic()))
        self._stopping.set()
        for poller in self._pollers:
            poller.join(timeout)
        self._hand_over()

    async def publish(self, events: Sequence[Event], timeout: float) -> list[Delivery]:
        """Publish events in order; their deliveries once all are acknowledged , or PublishError."""
        loop = asyncio.get_running_loop()
        with _tracer.start_as_current_span("publish events") as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.batch.message_count", len(events))
            traceparent = traceparent_header()
            futures = [loop.create_future() for _ in events]
            deadline = time.monotonic() + timeout
            if len(events) <= INLINE_EVENTS:
                self._produce_all(self._producer, loop, events, futures, traceparent, deadline)
            else:
                await anyio.to_thread.run_sync(
                    self._produce_all, self._bulk, loop, events, futures, traceparent, deadline
                )
            await asyncio.wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        stored: list[Delivery] = []
        failed: dict[UUID, str] = {}
        for event, future in zip(events, futures, strict=True):
            outcome = future.result() if future.done() else "no acknowledgement before the timeout"
            if isinstance(outcome, str):
                failed[event.envelope.event_id] = outcome
            else:
                stored.append(Delivery(event.envelope.event_id, *outcome))
        if failed:
            raise PublishError(
                f"{len(failed)} of {len(events)} events were not acknowledged by Kafka",
                stored,
                failed,
            )
        return stored

    def _produce_all(
        self,
        producer: Producer,
        loop: asyncio.AbstractEventLoop,
        events: Sequence[Event],
        futures: list[asyncio.Future[Outcome]],
        traceparent: bytes,
        deadline: float,
    ) -> None:
        for event, future in zip(events, futures, strict=True):
            value = self._codec.encode_event(event)
            self._produce(producer, loop, event, value, future, traceparent, deadline)

    def _produce(
        self,
        producer: Producer,
        loop: asyncio.AbstractEventLoop,
        event: Event,
        value: bytes,
        future: asyncio.Future[Outcome],
        traceparent: bytes,
        deadline: float,
    ) -> None:
        envelope = event.envelope
        headers: list[tuple[str, str | bytes | None]] = [
            ("event_type", envelope.event_type.encode()),
            ("schema_id", str(int.from_bytes(value[1:5], "big")).encode()),
            ("source", envelope.source.encode()),
            ("traceparent", traceparent),
        ]

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            # Runs on the poll thread: read the message now, resolve on the loop's thread.
            outcome: Outcome
            if err is not None:
                outcome = err.str()
            else:
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                assert topic is not None and partition is not None and offset is not None
                outcome = (topic, partition, offset)
            self._settle(future, outcome)

        topic = event_topic(event.family, self._consortium_id)
        key = event.kafka_key()
        while True:
            try:
                producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                )
                return
            except BufferError:
                # The local queue is full; the poll thread makes room as acknowledgements arrive.
                if time.monotonic() > deadline:
                    loop.call_soon_threadsafe(
                        _resolve, future, "local producer queue full until the timeout"
                    )
                    return
                time.sleep(0.01)
            except KafkaException as exc:
                loop.call_soon_threadsafe(_resolve, future, str(exc))
                return


def _resolve(future: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not future.done():
        future.set_result(outcome)


def _resolve_all(outcomes: list[tuple[asyncio.Future[Outcome], Outcome]]) -> None:
    for future, outcome in outcomes:
        _resolve(future, outcome)
