"""The outbox relay publishes stored bytes with what the Publisher would send for the events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache

import pytest

from events.catalog import default_catalog
from events.codec import Codec
from events.envelope import Event
from events.topics import Family, event_topic
from projections.empi.evaluation import evaluation_config, labelled_identities
from projections.empi.framing import EnvelopeReader
from projections.empi.index import apply, new_state
from projections.empi.relay import DecisionRelay, StoredDecision

CODEC = Codec(default_catalog())


@lru_cache(maxsize=1)
def decisions() -> tuple[Event, ...]:
    state, found = new_state(evaluation_config()), []
    for event in labelled_identities(600, seed=31).registrations:
        state, out = apply(state, event)
        found += out
    return tuple(found)


def stored(event: Event) -> StoredDecision:
    person = event.person_id  # type: ignore[attr-defined]
    return StoredDecision(
        event.envelope.event_id, person, event.event_type, CODEC.encode_event(event)
    )


@pytest.fixture
def relay() -> Iterator[DecisionRelay]:
    relay = DecisionRelay("127.0.0.1:9", "relaytest", CODEC)  # never produces here
    yield relay
    relay.close(0)


def test_each_kind_of_decision_is_relayed_as_the_publisher_sends_it(relay: DecisionRelay) -> None:
    events = decisions()
    assert {e.event_type for e in events} >= {"PersonLinked", "MatchReviewRequested"}
    rows = [stored(e) for e in events]
    records = relay.outgoing(rows, b"00-trace")
    for event, (topic, value, key, headers) in zip(events, records, strict=True):
        value_bytes = CODEC.encode_event(event)
        assert topic == event_topic(Family.PERSON, "relaytest")
        assert value == value_bytes
        assert key == event.kafka_key()
        assert list(headers) == [
            ("event_type", event.envelope.event_type.encode()),
            ("schema_id", str(int.from_bytes(value_bytes[1:5], "big")).encode()),
            ("source", event.envelope.source.encode()),
            ("traceparent", b"00-trace"),
        ]


def test_source_and_recorded_at_read_from_the_bytes_are_the_decoded_envelopes() -> None:
    reader = EnvelopeReader(CODEC.catalog)
    events = [*decisions(), *labelled_identities(200, seed=32).registrations]
    for event in events:
        payload = CODEC.encode_event(event)
        assert reader.readable(payload)
        decoded = CODEC.decode_event(payload).envelope
        assert reader.source(payload) == decoded.source
        assert reader.recorded_at(payload) == decoded.recorded_at
    # A source of several bytes per letter; times before 1970 and far ahead (long varints).
    event = decisions()[0]
    early, late = datetime(1901, 2, 3, 4, 5, 6, 789000, UTC), datetime(2999, 12, 31, tzinfo=UTC)
    for source, at in (("县医院" * 50, early), ("H", late)):
        changed = event.envelope.model_copy(update={"source": source, "recorded_at": at})
        payload = CODEC.encode_event(event.model_copy(update={"envelope": changed}))
        decoded = CODEC.decode_event(payload).envelope
        assert (reader.source(payload), reader.recorded_at(payload)) == (
            decoded.source,
            decoded.recorded_at,
        )


def test_only_the_types_asked_for_are_readable() -> None:
    reader = EnvelopeReader(CODEC.catalog, frozenset({"PersonLinked"}))
    kinds = {type(e).__name__: reader.readable(CODEC.encode_event(e)) for e in decisions()}
    assert kinds["PersonLinked"] and not kinds["MatchReviewRequested"]
    assert not reader.readable(None) and not reader.readable(b"\x01" + b"\x00" * 20)


def test_an_unknown_layout_falls_back_to_decoding(relay: DecisionRelay) -> None:
    payload = CODEC.encode_event(decisions()[0])
    relay._envelopes.ids = frozenset()  # as for a schema whose envelope does not lead
    assert relay.source_of(payload) == decisions()[0].envelope.source
