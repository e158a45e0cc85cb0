"""The outbox relay publishes stored bytes with what the Publisher would send for the events."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import pytest

from events.catalog import default_catalog
from events.codec import Codec
from events.envelope import Event
from events.topics import Family, event_topic
from projections.empi.evaluation import evaluation_config, labelled_identities
from projections.empi.index import apply, new_state
from projections.empi.relay import DecisionRelay, StoredDecision, envelope_source

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


def test_the_source_read_from_the_bytes_is_the_decoded_envelopes() -> None:
    for event in decisions():
        payload = CODEC.encode_event(event)
        assert envelope_source(payload) == CODEC.decode_event(payload).envelope.source
    # Any event whose schema leads with the envelope, with a source of several bytes per letter.
    event = decisions()[0]
    other = event.model_copy(
        update={"envelope": event.envelope.model_copy(update={"source": "县医院" * 50})}
    )
    assert envelope_source(CODEC.encode_event(other)) == "县医院" * 50


def test_an_unknown_layout_falls_back_to_decoding(relay: DecisionRelay) -> None:
    payload = CODEC.encode_event(decisions()[0])
    relay._readable = frozenset()  # as for a schema whose envelope does not lead
    assert relay.source_of(payload) == decisions()[0].envelope.source
