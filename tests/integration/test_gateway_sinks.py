"""The simulator's gateway and MLLP sinks against a real gateway, Kafka and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, TopicPartition

from consortium.topics import ensure_topics
from events.envelope import Event
from events.topics import EVENT_TOPICS
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.testing import free_port, issue_token, serving
from simulator.county import SimulationConfig
from simulator.gateway_sink import GatewayRefused, GatewaySink, HL7Refused, MllpSink, to_hl7
from simulator.simulation import simulate


@pytest.fixture(scope="module")
def county_events() -> list[Event]:
    start = datetime(2025, 3, 2, 16, tzinfo=UTC)
    return list(simulate(SimulationConfig(seed=3, days=0.5, population=800, start=start)).events())


@pytest.fixture
def served(
    kafka_bootstrap: str, database_url: str, fresh_consortium_id: str
) -> Iterator[tuple[str, int]]:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=EVENT_TOPICS.values())
    config = GatewayConfig(fresh_consortium_id, kafka_bootstrap, database_url)
    mllp_port = free_port()
    with serving(create_app(config, mllp_port=mllp_port)) as url:
        yield url, mllp_port


def stored(bootstrap: str, consortium_id: str) -> int:
    """How many events the consortium's topics hold."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "count"})
    try:
        return sum(
            high - low
            for spec in EVENT_TOPICS.values()
            for p in range(spec.partitions)
            for low, high in [
                consumer.get_watermark_offsets(
                    TopicPartition(spec.name(consortium_id), p), timeout=10
                )
            ]
        )
    finally:
        consumer.close()


def test_gateway_sink_publishes_each_institution_with_its_token_and_skips_the_rest(
    served: tuple[str, int],
    county_events: list[Event],
    database_url: str,
    kafka_bootstrap: str,
    fresh_consortium_id: str,
) -> None:
    url, _ = served
    per_source = Counter(e.envelope.source for e in county_events)
    (first, n_first), (second, n_second) = per_source.most_common(2)
    tokens = {code: issue_token(database_url, code) for code in (first, second)}
    sink = GatewaySink(url, tokens)
    for i in range(0, len(county_events), 300):
        sink.write(county_events[i : i + 300])
    sink.close()
    assert sink.sent == n_first + n_second
    assert sum(sink.skipped.values()) == len(county_events) - sink.sent
    assert stored(kafka_bootstrap, fresh_consortium_id) == sink.sent


def test_gateway_sink_raises_the_problem_of_a_refused_batch(
    served: tuple[str, int], county_events: list[Event], database_url: str
) -> None:
    url, _ = served
    sources = [s for s, _ in Counter(e.envelope.source for e in county_events).most_common(2)]
    # One token for everything: the other institution's events are refused (403), not skipped.
    sink = GatewaySink(url, issue_token(database_url, sources[0]))
    mixed = [next(e for e in county_events if e.envelope.source == s) for s in sources]
    with pytest.raises(GatewayRefused) as refused:
        sink.write(mixed)
    sink.close()
    assert refused.value.status == 403
    assert isinstance(refused.value.problem, dict)
    assert refused.value.problem["errors"][0]["pointer"] == "/0/envelope/source"


def test_mllp_sink_sends_what_has_an_hl7_mapping_and_kafka_holds_one_event_per_message(
    served: tuple[str, int],
    county_events: list[Event],
    database_url: str,
    kafka_bootstrap: str,
    fresh_consortium_id: str,
) -> None:
    _, port = served
    source = Counter(e.envelope.source for e in county_events).most_common(1)[0][0]
    own = [e for e in county_events if e.envelope.source == source]
    sink = MllpSink("127.0.0.1", port, {source: issue_token(database_url, source)})
    sink.write(own)
    sink.write(own[:50])  # a resend: the same control ids, answered AA from the record
    sink.close()
    mappable = sum(to_hl7(e, "t", "c") is not None for e in own)
    assert sink.sent == mappable + sum(to_hl7(e, "t", "c") is not None for e in own[:50])
    assert sink.skipped["OutpatientVisitStarted"] > 0
    assert stored(kafka_bootstrap, fresh_consortium_id) == mappable


def test_mllp_sink_raises_on_a_refused_message(
    served: tuple[str, int], county_events: list[Event], database_url: str
) -> None:
    _, port = served
    sources = [s for s, _ in Counter(e.envelope.source for e in county_events).most_common(2)]
    foreign = next(
        e for e in county_events if e.envelope.source == sources[1] and to_hl7(e, "t", "c")
    )
    sink = MllpSink("127.0.0.1", port, issue_token(database_url, sources[0]))
    with pytest.raises(HL7Refused) as refused:
        sink.write([foreign])
    sink.close()
    assert "\rMSA|AE|" in refused.value.ack and "\rERR|" in refused.value.ack
