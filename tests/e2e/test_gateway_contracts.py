"""Through a served gateway: standard Confluent clients decode our topics; traces continue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consortium.topics import ensure_topics
from events.registry import from_record, parse_event
from events.topics import EVENT_TOPICS
from examples import COUNTY_HOSPITAL, TOWNSHIP, example_data
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.testing import issue_token, serving

TYPES = {
    TOWNSHIP: [
        "PatientRegistered",
        "PatientDemographicsUpdated",
        "OutpatientVisitStarted",
        "OrderPlaced",
        "LabResultReported",
        "ReferralAccepted",
        "ConsentGranted",
    ],
    COUNTY_HOSPITAL: ["PatientAdmitted", "PatientDischarged", "BedCensusReported"],
}


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def gateway_url(kafka_bootstrap: str, database_url: str, fresh_consortium_id: str) -> Iterator[str]:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=EVENT_TOPICS.values())
    config = GatewayConfig(fresh_consortium_id, kafka_bootstrap, database_url)
    with serving(create_app(config)) as url:
        yield url


def fetch(bootstrap: str, delivery: dict[str, Any]) -> Message:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e"})
    try:
        tp = TopicPartition(delivery["topic"], delivery["partition"], delivery["offset"])
        consumer.assign([tp])
        message = consumer.poll(20)
        assert message is not None and message.error() is None
        return message
    finally:
        consumer.close()


def test_confluent_avro_deserializer_with_the_gateway_as_registry_gets_the_same_events(
    gateway_url: str, kafka_bootstrap: str, database_url: str
) -> None:
    published: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    with httpx.Client(base_url=gateway_url, timeout=30) as http:
        for institution, types in TYPES.items():
            token = issue_token(database_url, institution)
            batch = [example_data(t) for t in types]
            for event in batch:
                event["envelope"]["event_id"] = str(uuid.uuid4())
            response = http.post(
                "/v1/events", json=batch, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 202, response.text
            published.extend(batch)
            deliveries.extend(response.json()["deliveries"])
    registry = SchemaRegistryClient({"url": gateway_url})
    deserialize = AvroDeserializer(registry)
    for sent, delivery in zip(published, deliveries, strict=True):
        message = fetch(kafka_bootstrap, delivery)
        ctx = SerializationContext(delivery["topic"], MessageField.VALUE)
        record = deserialize(message.value(), ctx)
        assert isinstance(record, dict)
        assert from_record(record) == parse_event(sent)


def test_the_registry_paths_answer_like_a_schema_registry(gateway_url: str) -> None:
    registry = SchemaRegistryClient({"url": gateway_url})
    subjects = registry.get_subjects()
    assert "consortium.events.referral.ReferralRequested" in subjects
    latest = registry.get_latest_version("consortium.events.referral.ReferralRequested")
    assert latest.version == 1
    assert registry.get_schema(latest.schema_id).schema_str == latest.schema.schema_str
    with httpx.Client(base_url=gateway_url) as http:
        missing = http.get("/subjects/nope/versions")
        assert (missing.status_code, missing.json()["error_code"]) == (404, 40401)
        no_version = http.get("/subjects/consortium.events.referral.ReferralRequested/versions/9")
        assert (no_version.status_code, no_version.json()["error_code"]) == (404, 40402)
        no_schema = http.get("/schemas/ids/99999")
        assert (no_schema.status_code, no_schema.json()["error_code"]) == (404, 40403)
        asyncapi = http.get("/asyncapi.json").json()
        assert asyncapi["asyncapi"].startswith("3.")
        events = [s for s in subjects if s.startswith("consortium.events.")]
        assert len(asyncapi["components"]["messages"]) == len(events)


def test_a_consumer_continues_the_trace_of_the_request(
    gateway_url: str, kafka_bootstrap: str, database_url: str, spans: InMemorySpanExporter
) -> None:
    token = issue_token(database_url, TOWNSHIP)
    event = example_data("OrderPlaced")
    event["envelope"]["event_id"] = str(uuid.uuid4())
    spans.clear()
    response = httpx.post(
        f"{gateway_url}/v1/events",
        json=event,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 202
    found = [s for s in spans.get_finished_spans() if s.name == "POST /v1/events"]
    [request_span] = found
    message = fetch(kafka_bootstrap, response.json()["deliveries"][0])
    headers = {k: v.decode() for k, v in message.headers() or [] if v is not None}
    assert int(headers["traceparent"].split("-")[1], 16) == request_span.context.trace_id
    with trace.get_tracer("consumer").start_as_current_span(
        "project order", context=propagate.extract(headers)
    ) as consumer_span:
        assert consumer_span.get_span_context().trace_id == request_span.context.trace_id
