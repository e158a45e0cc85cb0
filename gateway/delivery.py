"""The gateway's Kafka producer: deliveries resolve asyncio futures, served by one poll thread."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any
from uuid import UUID

import anyio.to_thread
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry import trace

from consortium.kafka_config import with_environment
from events.codec import Codec, EncodeError, TooLargeError
from events.envelope import Event
from events.publisher import (
    PERMANENT_ERRORS,
    SAFE_PRODUCER_CONFIG,
    Delivery,
    PublishError,
    UnpublishableError,
    traceparent_header,
)
from events.topics import event_topic

_tracer = trace.get_tracer("consortium.gateway")
# Encoding a large batch is CPU work: above this many events it leaves the event loop.
INLINE_EVENTS = 20
# Batches go through a second producer that lingers: fuller Kafka batches are worth more to them
# than the few ms that every small request (one event, one HL7 message) would wait for nothing.
BULK_LINGER_MS = 5.0
# librdkafka looks for timed-out messages about once a second: one queued at `t` may still be
# held until t + delivery.timeout.ms + this, so queuing stops that much earlier still.
TIMEOUT_SCAN_S = 1.0
Outcome = tuple[str, int, int] | str  # (topic, partition, offset) or the error


class Rejected(str):
    """The outcome of an event that Kafka refused for good (no retry can cure it)."""

    __slots__ = ()


def _failure(exc: KafkaException) -> str:
    """A produce() refusal as an outcome: Rejected when retrying cannot help."""
    error = exc.args[0] if exc.args else None
    if isinstance(error, KafkaError) and error.code() in PERMANENT_ERRORS:
        return Rejected(error.str())
    return str(exc)


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
        # An event queued later than this before a request's deadline could still be delivered
        # after the request was answered: a full queue fails the rest instead (503 is final).
        self._delivery_timeout_s = float(producer_config["delivery.timeout.ms"]) / 1000
        self._bulk = Producer({**producer_config, "linger.ms": BULK_LINGER_MS})
        # Per process, not per event: the topic of a family, the header of a schema id.
        self._topics: dict[str, str] = {}
        self._schema_ids: dict[bytes, bytes] = {}
        self._stopping = threading.Event()
        # Requests settled by the last poll, handed to their loops in one wake-up each.
        self._settled: list[_Pending] = []
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

    def _settled_all(self, pending: _Pending) -> None:
        with self._settled_lock:
            self._settled.append(pending)

    def _hand_over(self) -> None:
        """Wake the requests the last poll completed: one call into each loop, not one each."""
        with self._settled_lock:
            settled, self._settled = self._settled, []
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for pending in settled:
            by_loop.setdefault(pending.done.get_loop(), []).append(pending.done)
        for loop, futures in by_loop.items():
            # A closed loop has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve_all, futures)

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
        """Publish events in order; their deliveries once all are acknowledged, or PublishError.

        A request waits for one future, completed when Kafka has answered for its last event
        (docs/gateway.md, Performance): a future per event cost the event loop a callback and a
        handle per event of a batch."""
        if not events:
            return []
        loop = asyncio.get_running_loop()
        with _tracer.start_as_current_span("publish events") as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.batch.message_count", len(events))
            traceparent = traceparent_header()
            pending = _Pending(loop.create_future(), len(events), self._settled_all)
            start = time.monotonic()
            deadline = start + timeout
            queue_until = deadline - self._delivery_timeout_s - TIMEOUT_SCAN_S
            if queue_until <= start:
                # A timeout within librdkafka's cannot make a failure final (the routers
                # publish through Ingest.deliver, whose wait is longer): queued until it.
                queue_until = deadline
            if len(events) <= INLINE_EVENTS:
                values = self._encode_all(events)
                # On the event loop: a full local queue hands the rest to a thread that waits.
                queued = self._produce_all(
                    self._producer, events, values, pending, traceparent, queue_until, wait=False
                )
                if queued < len(events):
                    await anyio.to_thread.run_sync(
                        self._produce_all,
                        self._producer,
                        events,
                        values,
                        pending,
                        traceparent,
                        queue_until,
                        queued,
                    )
            else:
                await anyio.to_thread.run_sync(
                    self._encode_and_produce, events, pending, traceparent, queue_until
                )
            await asyncio.wait([pending.done], timeout=max(0.0, deadline - time.monotonic()))
        stored: list[Delivery] = []
        failed: dict[UUID, str] = {}
        rejected: set[UUID] = set()
        for event, outcome in zip(events, pending.snapshot(), strict=True):
            if outcome is None:
                failed[event.envelope.event_id] = "no acknowledgement before the timeout"
            elif isinstance(outcome, str):
                failed[event.envelope.event_id] = str(outcome)
                if isinstance(outcome, Rejected):
                    rejected.add(event.envelope.event_id)
            else:
                stored.append(Delivery(event.envelope.event_id, *outcome))
        if failed:
            raise PublishError(
                f"{len(failed)} of {len(events)} events were not acknowledged by Kafka",
                stored,
                failed,
                frozenset(rejected),
            )
        return stored

    def _encode_all(self, events: Sequence[Event]) -> list[bytes]:
        """Every event's record, before any is produced: UnpublishableError names those that
        cannot be written (too large, not encodable), so a request is refused whole."""
        values: list[bytes] = []
        errors: dict[int, str] = {}
        for index, event in enumerate(events):
            try:
                values.append(self._codec.encode_event(event))
            except TooLargeError as exc:
                errors[index] = (
                    f"the encoded event ({event.envelope.event_type}) takes {exc.size:,} bytes,"
                    f" above the limit of {exc.limit:,}"
                )
            except EncodeError:
                errors[index] = f"the event ({event.envelope.event_type}) cannot be encoded"
        if errors:
            raise UnpublishableError(errors)
        return values

    def _encode_and_produce(
        self, events: Sequence[Event], pending: _Pending, traceparent: bytes, queue_until: float
    ) -> None:
        values = self._encode_all(events)
        self._produce_all(self._bulk, events, values, pending, traceparent, queue_until)

    def _produce_all(
        self,
        producer: Producer,
        events: Sequence[Event],
        values: Sequence[bytes],
        pending: _Pending,
        traceparent: bytes,
        queue_until: float,
        start: int = 0,
        *,
        wait: bool = True,
    ) -> int:
        """Queue events[start:]; the index of the first one left unqueued (a full queue and not
        `wait`), else len(events). Nothing is queued from `queue_until` on, whether the queue
        stayed full until then or the events came late (encoded in a busy worker thread):
        librdkafka could deliver them after the 503 that listed them as failed."""
        for index in range(start, len(events)):
            if time.monotonic() >= queue_until:
                return _settle_rest(pending, index, len(events), "not queued before the deadline")
            try:
                if not self._produce(
                    producer,
                    events[index],
                    values[index],
                    pending,
                    index,
                    traceparent,
                    queue_until,
                    wait,
                ):
                    if wait:  # the queue stayed full until the deadline
                        return _settle_rest(
                            pending, index, len(events), "local producer queue full"
                        )
                    return index
            except Exception as exc:  # after a first produce: report it as this event's failure
                pending.settle(index, f"could not be queued: {type(exc).__name__}")
        return len(events)

    def _produce(
        self,
        producer: Producer,
        event: Event,
        value: bytes,
        pending: _Pending,
        index: int,
        traceparent: bytes,
        queue_until: float,
        wait: bool,
    ) -> bool:
        """Queue one event (or settle it as failed): False if the queue is full and not `wait`,
        or stayed full until `queue_until`."""
        envelope = event.envelope
        schema_id = self._schema_ids.get(value[1:5])
        if schema_id is None:
            schema_id = self._schema_ids[value[1:5]] = str(
                int.from_bytes(value[1:5], "big")
            ).encode()
        headers: list[tuple[str, str | bytes | None]] = [
            ("event_type", envelope.event_type.encode()),
            ("schema_id", schema_id),
            ("source", envelope.source.encode()),
            ("traceparent", traceparent),
        ]
        topic = self._topics.get(event.family)
        if topic is None:
            topic = self._topics[event.family] = event_topic(event.family, self._consortium_id)
        key = event.kafka_key()
        # Runs on the poll thread: reads the message there, completes the request at its last.
        on_delivery = partial(pending.delivered, index)
        while True:
            try:
                producer.produce(
                    topic, value=value, key=key, headers=headers, on_delivery=on_delivery
                )
                return True
            except BufferError:
                # The local queue is full; the poll thread makes room as acknowledgements arrive.
                if not wait:
                    return False
                if time.monotonic() >= queue_until:
                    return False
                time.sleep(0.01)
            except KafkaException as exc:
                pending.settle(index, _failure(exc))
                return True


def _settle_rest(pending: _Pending, index: int, end: int, reason: str) -> int:
    """Fail events[index:end] unqueued, for `reason`; `end` (nothing is left to queue)."""
    for late in range(index, end):
        pending.settle(late, reason)
    return end


class _Pending:
    """One request's outcomes, one slot per event; complete when every slot is filled.

    Slots are filled by the poll thread (acknowledgements) and by the producing thread (events
    the producer refused), hence the lock; the request reads a copy after its wait."""

    __slots__ = ("_lock", "_on_complete", "_outcomes", "_remaining", "done")

    def __init__(
        self, done: asyncio.Future[None], size: int, on_complete: Callable[[_Pending], None]
    ) -> None:
        self.done = done
        self._outcomes: list[Outcome | None] = [None] * size
        self._remaining = size
        self._lock = threading.Lock()
        self._on_complete = on_complete

    def delivered(self, index: int, err: KafkaError | None, msg: Message) -> None:
        """The delivery report of event `index` (confluent-kafka's on_delivery)."""
        if err is not None:
            permanent = err.code() in PERMANENT_ERRORS
            self.settle(index, Rejected(err.str()) if permanent else err.str())
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        self.settle(index, (topic, partition, offset))

    def settle(self, index: int, outcome: Outcome) -> None:
        with self._lock:
            if self._outcomes[index] is not None:
                return
            self._outcomes[index] = outcome
            self._remaining -= 1
            complete = self._remaining == 0
        if complete:
            self._on_complete(self)

    def snapshot(self) -> list[Outcome | None]:
        """Each event's outcome so far (None: no answer yet)."""
        with self._lock:
            return list(self._outcomes)


def _resolve_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
