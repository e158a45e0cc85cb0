"""The publisher's completion per request: which events were stored, which failed, in order.

Pure unit test: a stand-in for confluent-kafka's Producer decides each delivery report (the
real broker paths are in tests/integration/test_gateway_publish.py)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from events.catalog import Catalog
from events.codec import Codec
from events.publisher import PublishError, UnpublishableError
from examples import EXAMPLES
from gateway import delivery
from gateway.delivery import INLINE_EVENTS, AsyncPublisher


class _Message:
    def __init__(self, topic: str, offset: int) -> None:
        self._topic, self._offset = topic, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


class _Error:
    def __init__(self, code: int = -1) -> None:
        self._code = code

    def str(self) -> str:
        return "broker says no"

    def code(self) -> int:
        return self._code


class _Producer:
    """Answers each produced record on poll: stored, failed, never (no report), or refused."""

    verdict: Callable[[int], str] = staticmethod(lambda _: "stored")

    def __init__(self, _config: dict[str, Any]) -> None:
        self._queue: list[tuple[int, str, Callable[[Any, Any], None]]] = []
        self._lock = threading.Lock()
        self._produced = 0
        self.headers: list[Any] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        with self._lock:
            index = self._produced
            self._produced += 1
            self.headers.append(kwargs["headers"])
            verdict = _Producer.verdict(index)
            if verdict == "refused":
                from confluent_kafka import KafkaException

                raise KafkaException("refused locally")
            if verdict == "too large locally":
                from confluent_kafka import KafkaError, KafkaException

                raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
            if verdict == "crash":
                raise RuntimeError("a bug after the first produce")
            self._queue.append((index, topic, kwargs["on_delivery"]))

    def poll(self, timeout: float) -> int:
        with self._lock:
            queue, self._queue = self._queue, []
        for index, topic, report in queue:
            verdict = _Producer.verdict(index)
            if verdict == "stored":
                report(None, _Message(topic, index))
            elif verdict == "failed":
                report(_Error(), None)
            elif verdict == "too large":
                from confluent_kafka import KafkaError

                report(_Error(KafkaError.MSG_SIZE_TOO_LARGE), None)
        if not queue:
            time.sleep(min(timeout, 0.005))
        return len(queue)

    def flush(self, _timeout: float) -> int:
        return 0


@pytest.fixture
def publisher(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(delivery, "Producer", _Producer)
    made = AsyncPublisher("unused:9092", "t", Codec(Catalog.load()))
    yield made
    made.close(1)
    _Producer.verdict = staticmethod(lambda _: "stored")


def _events(count: int) -> list[Any]:
    """Example events of every type, each with an event id of its own."""
    makers = list(EXAMPLES.values())
    out = []
    for i in range(count):
        event = makers[i % len(makers)]()
        envelope = event.envelope.model_copy(update={"event_id": uuid.uuid4()})
        out.append(event.model_copy(update={"envelope": envelope}))
    return out


@pytest.mark.parametrize("count", [1, 20, 21, 1000])
def test_every_event_is_answered_in_request_order(publisher: AsyncPublisher, count: int) -> None:
    events = _events(count)
    stored = asyncio.run(publisher.publish(events, 5))
    assert [d.event_id for d in stored] == [e.envelope.event_id for e in events]
    assert [d.offset for d in stored] == list(range(count))
    assert all(d.topic.startswith("t.") for d in stored)


def test_a_partial_failure_names_what_was_stored_and_why_the_rest_failed(
    publisher: AsyncPublisher,
) -> None:
    verdicts = ["stored", "failed", "refused", "never"]
    _Producer.verdict = staticmethod(lambda i: verdicts[i % 4])
    events = _events(40)
    with pytest.raises(PublishError) as caught:
        asyncio.run(publisher.publish(events, 0.3))
    stored, failed = caught.value.stored, caught.value.failed
    assert [d.event_id for d in stored] == [e.envelope.event_id for e in events[0::4]]
    ids = [e.envelope.event_id for e in events]
    assert {failed[i] for i in ids[1::4]} == {"broker says no"}
    assert all("refused locally" in failed[i] for i in ids[2::4])
    assert {failed[i] for i in ids[3::4]} == {"no acknowledgement before the timeout"}
    assert len(stored) + len(failed) == len(events)


def test_a_request_whose_events_all_fail_to_enqueue_is_answered_at_once(
    publisher: AsyncPublisher,
) -> None:
    _Producer.verdict = staticmethod(lambda _: "refused")
    # An hour's delivery timeout: answered at all means answered without waiting for it (the
    # outer minute only turns a regression into a failure instead of a hang).
    with pytest.raises(PublishError) as caught:
        asyncio.run(asyncio.wait_for(publisher.publish(_events(3), 3600), 60))
    assert caught.value.stored == [] and len(caught.value.failed) == 3


def test_records_carry_the_trace_schema_and_source_headers(publisher: AsyncPublisher) -> None:
    events = _events(2)
    asyncio.run(publisher.publish(events, 5))
    sent = publisher._producer.headers  # type: ignore[attr-defined]
    for event, headers in zip(events, sent, strict=True):
        names = dict(headers)
        assert names["event_type"] == event.envelope.event_type.encode()
        assert names["source"] == event.envelope.source.encode()
        assert int(names["schema_id"]) > 0 and names["traceparent"]


def test_nothing_to_publish_is_an_empty_answer(publisher: AsyncPublisher) -> None:
    assert asyncio.run(publisher.publish([], 5)) == []


@pytest.mark.parametrize("count", [3, 30])
def test_refusals_no_retry_can_cure_are_rejected_not_transient(
    publisher: AsyncPublisher, count: int
) -> None:
    verdicts = ["stored", "too large", "too large locally", "failed"]
    _Producer.verdict = staticmethod(lambda i: verdicts[i % 4])
    events = _events(count)
    with pytest.raises(PublishError) as caught:
        asyncio.run(publisher.publish(events, 2))
    ids = [e.envelope.event_id for e in events]
    assert caught.value.rejected == {*ids[1::4], *ids[2::4]}
    assert set(caught.value.failed) == {*ids[1::4], *ids[2::4], *ids[3::4]}


@pytest.mark.parametrize("count", [3, 30])
def test_an_exception_after_the_first_produce_is_a_failure_of_that_event(
    publisher: AsyncPublisher, count: int
) -> None:
    _Producer.verdict = staticmethod(lambda i: "crash" if i == 1 else "stored")
    events = _events(count)
    with pytest.raises(PublishError) as caught:
        asyncio.run(publisher.publish(events, 2))
    assert [d.event_id for d in caught.value.stored] == [
        e.envelope.event_id for i, e in enumerate(events) if i != 1
    ]
    assert list(caught.value.failed) == [events[1].envelope.event_id]
    assert not caught.value.rejected


@pytest.mark.parametrize("count", [3, 30])
def test_an_event_too_large_to_encode_refuses_the_request_before_anything_is_produced(
    monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    monkeypatch.setattr(delivery, "Producer", _Producer)
    events = _events(count)
    sizes = [len(Codec(Catalog.load()).encode_event(e)) for e in events]
    limit = sorted(sizes)[-1] - 1  # only the largest events are over it
    made = AsyncPublisher("unused:9092", "t", Codec(Catalog.load(), max_message_bytes=limit))
    try:
        with pytest.raises(UnpublishableError) as caught:
            asyncio.run(made.publish(events, 2))
        assert set(caught.value.errors) == {i for i, n in enumerate(sizes) if n > limit}
        assert all("above the limit" in why for why in caught.value.errors.values())
        assert made._producer._produced == 0 and made._bulk._produced == 0  # type: ignore[attr-defined]
    finally:
        made.close(1)


def test_a_full_local_queue_never_blocks_the_event_loop_and_its_503_is_final() -> None:
    """librdkafka's own queue (no broker: nothing is ever acknowledged), two records deep."""
    from gateway.testing import free_port

    made = AsyncPublisher(
        f"127.0.0.1:{free_port()}",
        "t",
        Codec(Catalog.load()),
        {"queue.buffering.max.messages": 2, "delivery.timeout.ms": 2000},
    )
    # What would block the event loop: a sleep, or a producer call that waits (poll or flush
    # with a timeout), made on the loop's thread. Each is recorded with its thread.
    blocking: list[tuple[int, str]] = []
    sleep = time.sleep

    def recorded_sleep(seconds: float) -> None:
        blocking.append((threading.get_ident(), f"time.sleep({seconds})"))
        sleep(seconds)

    class Watched:
        def __init__(self, producer: Any) -> None:
            self._producer = producer

        def __getattr__(self, name: str) -> Any:
            method = getattr(self._producer, name)
            if name not in ("poll", "flush"):
                return method

            def call(timeout: float = 0, *args: Any) -> Any:
                if timeout:
                    blocking.append((threading.get_ident(), f"{name}({timeout})"))
                return method(timeout, *args)

            return call

    async def run() -> tuple[int, PublishError]:
        # 4 s: queuing may go on for the first second (4 s less the 2 s delivery timeout and
        # the 1 s scan), long enough that a wait for room on the loop's thread is seen, and ends
        # before the first record expires (2 s) and makes room.
        with pytest.raises(PublishError) as caught:
            await made.publish(_events(5), 4.0)
        return threading.get_ident(), caught.value

    real = made._producer
    try:
        made._producer = Watched(real)  # type: ignore[assignment]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(time, "sleep", recorded_sleep)
            loop_thread, error = asyncio.run(run())
        made._producer = real
        # before: time.sleep on the loop for as long as the queue stayed full (~1 s and more)
        assert [what for thread, what in blocking if thread == loop_thread] == []
        reasons = list(error.failed.values())
        assert reasons.count("local producer queue full") == 3, reasons
        # Queuing stopped early enough for librdkafka to give up on what it held by the answer
        # (its timeout scan runs about once a second, so allow it that): nothing of the request
        # is left to be delivered after its 503.
        assert made._producer.flush(1.5) == 0
    finally:
        made.close(1)


def test_a_batch_encoded_after_the_queueing_deadline_is_not_queued_so_its_503_is_final() -> None:
    """librdkafka without a broker; the worker thread encodes slowly (a loaded machine), so the
    batch is ready only after the last moment it could be queued and still expire by the answer.
    Before, it was produced anyway: the 503 listed every event as failed while librdkafka still
    held them, to deliver once the broker answered (and a retry published them again)."""
    from gateway.testing import free_port

    codec = Codec(Catalog.load())
    made = AsyncPublisher(f"127.0.0.1:{free_port()}", "t", codec, {"delivery.timeout.ms": 2000})
    encode = codec.encode_event

    def slow(event: Any) -> bytes:  # 21 events: 3.15 s, past queueing's end (4 - 2 - 1 = 1 s)
        time.sleep(0.15)
        return encode(event)

    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(codec, "encode_event", slow)
            with pytest.raises(PublishError) as caught:
                asyncio.run(made.publish(_events(INLINE_EVENTS + 1), 4.0))
        assert set(caught.value.failed.values()) == {"not queued before the deadline"}
        assert made._bulk.flush(0) == 0  # nothing of the answered request is left to deliver
    finally:
        made.close(1)
