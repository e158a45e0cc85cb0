"""`infra up --secure`: TLS, SCRAM and deny-by-default ACLs on a real broker (docs/security.md)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from fastapi.testclient import TestClient

from events.catalog import Catalog
from events.codec import Codec
from events.publisher import Publisher, PublishError
from events.registry import parse_event
from events.topics import REPORTING_TOPICS, Family, event_topic
from examples import COUNTY_HOSPITAL, TOWNSHIP, example_data
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.testing import issue_token
from infra.kafka import KafkaCluster
from infra.probe import produce_all, safe_producer
from infra.security import (
    KafkaSecurity,
    apply_grants,
    bureau_principal,
    consortium_principals,
    gateway_principal,
    grants,
    hospital_principal,
    processor_principal,
    register_principals,
)

CONSORTIUM = "sec" + uuid.uuid4().hex[:8]
REPORTING = REPORTING_TOPICS["institutions"].name(CONSORTIUM)
UNGRANTED = f"{CONSORTIUM}.unlisted.v1"  # a topic no grant names: only super users may touch it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One secure node with the consortium's principals, grants and topics, for this module."""
    folder = tmp_path_factory.mktemp("secure-kafka")
    principals = [*consortium_principals(CONSORTIUM), hospital_principal(CONSORTIUM, TOWNSHIP)]
    security = KafkaSecurity(folder / "security", principals)
    node = KafkaCluster(1, folder, detach=False, security=security)
    try:
        node.start()
        apply_grants(node.bootstrap, node.client_config, grants(CONSORTIUM))
        topics = [event_topic(f, CONSORTIUM) for f in Family] + [REPORTING, UNGRANTED]
        admin = AdminClient({"bootstrap.servers": node.bootstrap, **node.client_config})
        for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
            future.result(timeout=30)
        yield node
    finally:
        node.stop(timeout=10)


def config_of(cluster: KafkaCluster, principal: str, **changes: str | None) -> dict[str, Any]:
    """The principal's client settings with some changed (None removes one)."""
    assert cluster.security is not None
    config: dict[str, Any] = {
        "bootstrap.servers": cluster.bootstrap,
        **cluster.security.client_config(principal),
    }
    for key, value in changes.items():
        name = key.replace("_", ".")
        if value is None:
            config.pop(name)
        else:
            config[name] = value
    return config


def refused(config: dict[str, Any]) -> list[KafkaError]:
    """Ask for metadata, expect no answer, and return the errors the client reported."""
    errors: list[KafkaError] = []
    settings: dict[str, Any] = {**config, "error_cb": errors.append}
    admin = AdminClient(settings)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=4)
    admin.poll(0.5)
    return errors


def first_message(config: dict[str, Any], topic: str, group: str) -> Message:
    """The first message or error a consumer of the topic gets."""
    consumer = Consumer({**config, "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        for _ in range(120):
            message = consumer.poll(0.5)
            if message is not None:
                return message
        raise AssertionError(f"nothing came from {topic}")
    finally:
        consumer.close()


_LEADER_MOVING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError._TRANSPORT,
}


def records_in(cluster: KafkaCluster, topic: str) -> int:
    """How many records a topic holds, asked as the administrator."""
    consumer = Consumer({**config_of(cluster, "admin"), "group.id": "watermarks"})
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
                return int(high - low)
            except KafkaException as exc:
                # A leader moving under load ("Not leader for partition", seen once in CI) is
                # retriable: ask again rather than fail the count.
                error = exc.args[0]
                moving = error.code() in _LEADER_MOVING or error.retriable()
                if not moving or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def encounter_event(source: str = TOWNSHIP) -> Any:
    """An OutpatientVisitStarted of the given institution with a new event id."""
    data = example_data("OutpatientVisitStarted")
    data["envelope"].update(event_id=str(uuid.uuid4()), source=source)
    return parse_event(data)


def test_the_administrator_is_let_in_and_no_plaintext_listener_exists(
    cluster: KafkaCluster,
) -> None:
    admin = AdminClient(config_of(cluster, "admin"))
    assert set(admin.list_topics(timeout=10).brokers) == {1}
    properties = (cluster.node_dir(1) / "server.properties").read_text()
    listeners = next(line for line in properties.splitlines() if line.startswith("listeners="))
    assert "PLAINTEXT://" not in listeners
    assert (cluster.node_dir(1) / "server.properties").stat().st_mode & 0o077 == 0


def test_a_principal_added_after_format_is_registered_once_and_let_in(
    cluster: KafkaCluster,
) -> None:
    assert cluster.security is not None
    newcomer = hospital_principal(CONSORTIUM, COUNTY_HOSPITAL)
    roster = KafkaSecurity(cluster.security.folder, [newcomer])

    assert register_principals(cluster.bootstrap, roster, cluster.nodes) == [newcomer]
    assert register_principals(cluster.bootstrap, roster, cluster.nodes) == []
    assert AdminClient(config_of(cluster, newcomer)).list_topics(timeout=10).brokers


def test_a_plaintext_client_gets_no_metadata(cluster: KafkaCluster) -> None:
    refused({"bootstrap.servers": cluster.bootstrap})


def test_tls_without_scram_gets_no_metadata(cluster: KafkaCluster) -> None:
    config = config_of(cluster, bureau_principal(CONSORTIUM), security_protocol="SSL")
    for key in ("sasl.mechanism", "sasl.username", "sasl.password"):
        config.pop(key)
    refused(config)


def test_a_password_without_a_client_certificate_is_refused(cluster: KafkaCluster) -> None:
    refused(
        config_of(
            cluster,
            bureau_principal(CONSORTIUM),
            ssl_certificate_location=None,
            ssl_key_location=None,
        )
    )


def test_a_wrong_password_is_refused_as_an_authentication_failure(cluster: KafkaCluster) -> None:
    bureau = bureau_principal(CONSORTIUM)
    errors = refused(config_of(cluster, bureau, sasl_password="not-" + uuid.uuid4().hex))
    assert KafkaError._AUTHENTICATION in {e.code() for e in errors}
    # The same principal with its own password is let in.
    assert AdminClient(config_of(cluster, bureau)).list_topics(timeout=10).brokers


def test_a_bureau_reads_its_streams_but_no_event_topic(cluster: KafkaCluster) -> None:
    admin = safe_producer(cluster.bootstrap, **config_of(cluster, "admin"))
    encounters = event_topic(Family.ENCOUNTER, CONSORTIUM)
    assert produce_all(admin, encounters, [(b"k", b"a person's visit")]) == [None]
    assert produce_all(admin, REPORTING, [(b"k", b"counts")]) == [None]
    bureau = config_of(cluster, bureau_principal(CONSORTIUM))
    group = f"{CONSORTIUM}.bureau.{uuid.uuid4().hex[:6]}"

    denied = first_message(bureau, encounters, group)
    allowed = first_message(bureau, REPORTING, group)

    error = denied.error()
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert allowed.error() is None and allowed.value() == b"counts"


def test_a_processor_reads_the_families_it_projects_and_no_other(cluster: KafkaCluster) -> None:
    referrals = config_of(cluster, processor_principal(CONSORTIUM, "referrals"))
    group = f"{CONSORTIUM}.projection.referrals"
    admin = safe_producer(cluster.bootstrap, **config_of(cluster, "admin"))
    referral_topic = event_topic(Family.REFERRAL, CONSORTIUM)
    assert produce_all(admin, referral_topic, [(b"k", b"a referral")]) == [None]

    allowed = first_message(referrals, referral_topic, group)
    denied = first_message(referrals, event_topic(Family.PATIENT, CONSORTIUM), group)

    assert allowed.error() is None and allowed.value() == b"a referral"
    error = denied.error()
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


@pytest.mark.parametrize(
    ("family", "writer", "example_type"),
    [
        (Family.DERIVED_TRANSFERS, "transfers", "TransferDerived"),
        (Family.DERIVED_REPEATS, "record", "RepeatCheckDerived"),
    ],
)
def test_only_the_deriving_processor_writes_derived_facts_and_reporting_reads_them(
    cluster: KafkaCluster, family: Family, writer: str, example_type: str
) -> None:
    derived = event_topic(family, CONSORTIUM)
    revision = parse_event(example_data(example_type))
    for refused_writer in (
        gateway_principal(CONSORTIUM),
        processor_principal(CONSORTIUM, "reporting"),
        processor_principal(CONSORTIUM, "transfers" if writer == "record" else "record"),
    ):
        sdk = Publisher(cluster.bootstrap, CONSORTIUM, config=config_of(cluster, refused_writer))
        with sdk, pytest.raises(PublishError) as failure:
            sdk.publish([revision], timeout=20)
        assert "AUTHORIZATION" in " ".join(failure.value.failed.values()).upper()
    allowed = config_of(cluster, processor_principal(CONSORTIUM, writer))
    with Publisher(cluster.bootstrap, CONSORTIUM, config=allowed) as publisher:
        (delivery,) = publisher.publish([revision], timeout=20)
    assert delivery.topic == derived

    reporting = config_of(cluster, processor_principal(CONSORTIUM, "reporting"))
    group = f"{CONSORTIUM}.projection.reporting"
    read = first_message(reporting, derived, group)
    assert read.error() is None and read.value() is not None
    assert Codec(Catalog.load()).decode_event(read.value()) == revision
    # The SDK keys a derived fact by its entity, as the relay does (compaction keeps the latest).
    assert read.key() == revision.kafka_key()


def test_a_topic_without_grants_is_denied_to_every_principal(cluster: KafkaCluster) -> None:
    admin = safe_producer(cluster.bootstrap, **config_of(cluster, "admin"))
    assert produce_all(admin, UNGRANTED, [(b"k", b"secret")]) == [None]
    bureau = config_of(cluster, bureau_principal(CONSORTIUM))

    denied = first_message(bureau, UNGRANTED, f"{CONSORTIUM}.bureau.{uuid.uuid4().hex[:6]}")

    error = denied.error()
    assert error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


@pytest.mark.parametrize(
    "principal",
    [
        hospital_principal(CONSORTIUM, TOWNSHIP),
        bureau_principal(CONSORTIUM),
        processor_principal(CONSORTIUM, "referrals"),
    ],
)
def test_only_the_gateway_writes_events(cluster: KafkaCluster, principal: str) -> None:
    topic = event_topic(Family.ENCOUNTER, CONSORTIUM)
    before = records_in(cluster, topic)
    # Even an event of the principal's own institution: hospitals publish through the gateway.
    sdk = Publisher(cluster.bootstrap, CONSORTIUM, config=config_of(cluster, principal))
    with sdk, pytest.raises(PublishError) as failure:
        sdk.publish([encounter_event()], timeout=20)
    assert "AUTHORIZATION" in " ".join(failure.value.failed.values()).upper()
    # The broker's authorizer log is the audit trail of what Kafka refused, and to whom: the
    # writer is refused even a sight of the topic (DESCRIBE), so it never gets to produce.
    denials = [
        line
        for line in cluster.log_file(1).read_text().splitlines()
        if f"User:{principal} is Denied" in line and f"Topic:LITERAL:{topic} " in line
    ]
    assert denials

    gateway = config_of(cluster, gateway_principal(CONSORTIUM))
    with Publisher(cluster.bootstrap, CONSORTIUM, config=gateway) as publisher:
        (delivery,) = publisher.publish([encounter_event()], timeout=20)

    assert delivery.topic == topic
    assert records_in(cluster, topic) == before + 1


def test_the_gateway_refuses_an_event_claiming_another_institution(
    cluster: KafkaCluster, database_url: str
) -> None:
    topic = event_topic(Family.ENCOUNTER, CONSORTIUM)
    before = records_in(cluster, topic)
    township = {"Authorization": f"Bearer {issue_token(database_url, TOWNSHIP)}"}
    theirs = example_data("OutpatientVisitStarted")
    theirs["envelope"].update(event_id=str(uuid.uuid4()), source=COUNTY_HOSPITAL)
    config = GatewayConfig(CONSORTIUM, cluster.bootstrap, database_url, publish_timeout_s=2)

    with TestClient(create_app(config)) as client:
        response = client.post("/v1/events", json=theirs, headers=township)

    assert response.status_code == 403
    assert [e["path"] for e in response.json()["errors"]] == ["$.envelope.source"]
    assert records_in(cluster, topic) == before
