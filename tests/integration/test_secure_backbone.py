"""The backbone on a secure broker: gateway, processors, relay and refusals (docs/security.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import faust
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from consortium.kafka_config import (
    SETTINGS,
    KafkaSecurityError,
    aiokafka_settings,
    faust_credentials,
    kafka_client_config,
)
from consortium.topics import ensure_topics
from events.publisher import Publisher, PublishError
from events.registry import parse_event
from events.topics import (
    DEAD_LETTER_TOPICS,
    EVENT_TOPICS,
    READ_AUDIT_TOPIC,
    REPORTING_TOPICS,
    Family,
    event_topic,
)
from examples import TOWNSHIP, example_data
from gateway.app import create_app
from gateway.config import GatewayConfig
from gateway.principals import Role
from gateway.testing import issue_token
from infra.kafka import KafkaCluster
from infra.migrate import apply_migrations
from infra.probe import produce_all, safe_producer
from infra.security import (
    ADMIN,
    KafkaSecurity,
    apply_grants,
    bureau_principal,
    consortium_principals,
    gateway_principal,
    grants,
    hospital_principal,
    processor_principal,
)
from projections.referrals.synthetic import referral_flows

CONSORTIUM = "sb" + uuid.uuid4().hex[:8]
WAIT_S = 60.0
# What the referrals and reporting processors read and write (fewer partitions start faster).
FAMILIES = (Family.REFERRAL, Family.ENCOUNTER)
SPECS = [
    *(EVENT_TOPICS[f] for f in FAMILIES),
    *(DEAD_LETTER_TOPICS[f] for f in FAMILIES),
    *REPORTING_TOPICS.values(),
    READ_AUDIT_TOPIC,
]
SECURE_ENV = ("KAFKA_PRINCIPAL", "KAFKA_SECURITY_DIR", *SETTINGS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """One secure node with the consortium's principals and grants; topics made by the admin."""
    folder = tmp_path_factory.mktemp("secure-backbone")
    principals = [*consortium_principals(CONSORTIUM), hospital_principal(CONSORTIUM, TOWNSHIP)]
    node = KafkaCluster(1, folder, detach=False, security=KafkaSecurity(folder / "sec", principals))
    try:
        node.start()
        apply_grants(node.bootstrap, node.client_config, grants(CONSORTIUM))
        ensure_topics(node.bootstrap, CONSORTIUM, specs=SPECS, config=node.client_config)
        yield node
    finally:
        node.stop(timeout=10)


@pytest.fixture
def security_dir(cluster: KafkaCluster) -> Path:
    assert cluster.security is not None
    return cluster.security.folder


@pytest.fixture
def plain_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Kafka security in this process's environment, whatever the shell set."""
    for name in SECURE_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def migrated_url(scratch_database_url: str) -> str:
    apply_migrations(scratch_database_url)
    return scratch_database_url


def as_admin(cluster: KafkaCluster) -> dict[str, Any]:
    return {"bootstrap.servers": cluster.bootstrap, **cluster.client_config}


def records_in(cluster: KafkaCluster, topics: list[str]) -> int:
    """How many records the topics hold (all partitions), asked as the administrator."""
    consumer = Consumer({**as_admin(cluster), "group.id": "watermarks"})
    try:
        total = 0
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            for p in meta.partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += high - low
        return total
    finally:
        consumer.close()


def read_all(config: dict[str, Any], topics: list[str]) -> list[Any]:
    """Every message of the topics up to their current end, read without a group."""
    consumer = Consumer({**config, "group.id": "read-all", "enable.auto.commit": False})
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                ends[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p))[1]
        consumer.assign([TopicPartition(t, p, 0) for (t, p), end in ends.items() if end])
        messages: list[Any] = []
        deadline = time.monotonic() + WAIT_S
        while len(messages) < sum(ends.values()) and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
        return messages
    finally:
        consumer.close()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def scalar(url: str, query: str, *args: Any) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, args).fetchone()
    assert row is not None
    return int(row[0] or 0)


@contextmanager
def processor(name: str, url: str, cluster: KafkaCluster, env: dict[str, str]) -> Iterator[None]:
    """`process NAME` in its own process with the given Kafka security environment."""
    clean = {k: v for k, v in os.environ.items() if k not in SECURE_ENV}
    child = subprocess.Popen(
        [sys.executable, "-m", "processors.cli", "process", name, "--within", "0.02"],
        env={
            **clean,
            **env,
            "CONSORTIUM_ID": CONSORTIUM,
            "KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap,
            "DATABASE_URL": url,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
        assert child.poll() is None, f"process {name} ended with {child.returncode}"
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def test_the_environment_chooses_the_settings(security_dir: Path) -> None:
    referrals = processor_principal(CONSORTIUM, "referrals")
    assert kafka_client_config(referrals, environ={}) == {}  # plaintext: nothing changes
    # The folder alone: every component connects as its own principal.
    by_folder = kafka_client_config(referrals, {"KAFKA_SECURITY_DIR": str(security_dir)})
    assert by_folder["sasl.username"] == referrals
    assert by_folder["security.protocol"] == "SASL_SSL"
    assert Path(by_folder["ssl.certificate.location"]).parent == security_dir / "principals"
    # An operator's principal wins; single variables win over both.
    named = {"KAFKA_SECURITY_DIR": str(security_dir), "KAFKA_PRINCIPAL": ADMIN}
    assert kafka_client_config(referrals, named)["sasl.username"] == ADMIN
    overridden = kafka_client_config(referrals, {**named, "KAFKA_SASL_PASSWORD": "x"})
    assert overridden["sasl.password"] == "x"
    explicit = {name: f"v-{name}" for name in SETTINGS}
    assert kafka_client_config(None, explicit) == {k: f"v-{n}" for n, k in SETTINGS.items()}
    # Secure mode but no principal for a client that has none (the SDK publisher): refused.
    with pytest.raises(KafkaSecurityError):
        kafka_client_config(None, {"KAFKA_SECURITY_DIR": str(security_dir)})


def test_faust_and_aiokafka_get_the_same_principal(security_dir: Path) -> None:
    env = {"KAFKA_SECURITY_DIR": str(security_dir)}
    config = kafka_client_config(processor_principal(CONSORTIUM, "transfers"), env)

    credentials = faust_credentials(config)
    settings = aiokafka_settings(config)

    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.username == config["sasl.username"]
    assert credentials.password == config["sasl.password"]
    assert credentials.ssl_context is not None and credentials.ssl_context.check_hostname
    assert settings["sasl_plain_username"] == config["sasl.username"]
    assert faust_credentials({}) is None
    assert aiokafka_settings({}) == {"security_protocol": "PLAINTEXT"}


def test_the_backbone_runs_secured_end_to_end(
    cluster: KafkaCluster, security_dir: Path, migrated_url: str, plain_env: pytest.MonkeyPatch
) -> None:
    events = [e for flow in referral_flows(31, 12) for e in flow]
    by_source: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_source.setdefault(event.envelope.source, []).append(event.model_dump(mode="json"))
    referral_topic = event_topic(Family.REFERRAL, CONSORTIUM)
    before = records_in(cluster, [referral_topic])

    # The gateway finds its principal through the environment (`consortium serve` does too).
    plain_env.setenv("KAFKA_SECURITY_DIR", str(security_dir))
    config = GatewayConfig(CONSORTIUM, cluster.bootstrap, migrated_url)
    assert config.kafka_config()["sasl.username"] == gateway_principal(CONSORTIUM)
    with TestClient(create_app(config)) as client:
        for source, batch in by_source.items():
            token = {"Authorization": f"Bearer {issue_token(migrated_url, source)}"}
            response = client.post("/v1/events", json=batch, headers=token)
            assert response.status_code == 202, response.text
    plain_env.delenv("KAFKA_SECURITY_DIR")
    assert records_in(cluster, [referral_topic]) == before + len(events)
    # A record no codec reads: the processor must dead-letter it as its own principal.
    poison = safe_producer(cluster.bootstrap, **cluster.client_config)
    assert produce_all(poison, referral_topic, [(b"poison", b"\x00not avro")]) == [None]

    referrals = kafka_client_config(
        processor_principal(CONSORTIUM, "referrals"), {"KAFKA_SECURITY_DIR": str(security_dir)}
    )
    # The referrals processor gets single variables; the reporting one only the folder.
    explicit = {name: referrals[key] for name, key in SETTINGS.items()}
    folder = {"KAFKA_SECURITY_DIR": str(security_dir)}
    positions = "SELECT sum(next_offset) FROM consumer_offsets WHERE projection LIKE %s"
    encounter_topic = event_topic(Family.ENCOUNTER, CONSORTIUM)
    reads = {"referrals": [referral_topic], "reporting": [referral_topic, encounter_topic]}
    dead_letters = DEAD_LETTER_TOPICS[Family.REFERRAL].name(CONSORTIUM)
    reporting = [spec.name(CONSORTIUM) for spec in REPORTING_TOPICS.values()]
    with ExitStack() as running:
        running.enter_context(processor("referrals", migrated_url, cluster, explicit))
        running.enter_context(processor("reporting", migrated_url, cluster, folder))
        for name, topics in reads.items():
            end = records_in(cluster, topics)
            caught_up = partial(scalar, migrated_url, positions, f"{name}.g%")
            wait_for(lambda: caught_up() == end, f"the {name} projection")  # noqa: B023
        wait_for(lambda: records_in(cluster, [dead_letters]) >= 1, "the poison's dead letter")
        wait_for(lambda: records_in(cluster, reporting) > 0, "the relay's bureau streams")

    # Both projections read the referral topic: each dead-lettered the poison as itself.
    letters = read_all(as_admin(cluster), [dead_letters])
    assert sorted(dict(m.headers() or [])["projection"] for m in letters) == [
        b"referrals",
        b"reporting",
    ]
    assert {m.value() for m in letters} == {b"\x00not avro"}
    claimed = "SELECT count(*) FROM consumed_events WHERE projection LIKE %s"
    assert scalar(migrated_url, claimed, "referrals.g%") == len(events)
    # The bureau reads what the relay wrote as the reporting processor.
    bureau = kafka_client_config(bureau_principal(CONSORTIUM), folder)
    streams = read_all({"bootstrap.servers": cluster.bootstrap, **bureau}, reporting)
    assert streams and len(streams) == records_in(cluster, reporting)
    assert {dict(m.headers() or [])["view"] for m in streams} <= {
        v.encode() for v in REPORTING_TOPICS
    }

    # A desk's read is audited on Kafka, written as the gateway's own principal.
    audit_topic = READ_AUDIT_TOPIC.name(CONSORTIUM)
    audited = records_in(cluster, [audit_topic])
    desk_of = events[0].envelope.source
    plain_env.setenv("KAFKA_SECURITY_DIR", str(security_dir))
    with TestClient(create_app(config)) as client:
        token = {
            "Authorization": f"Bearer {issue_token(migrated_url, desk_of, Role.REFERRAL_DESK)}"
        }
        board = client.get("/v1/referrals", headers=token)
        assert board.status_code == 200, board.text
        assert board.json()["items"]
    plain_env.delenv("KAFKA_SECURITY_DIR")
    assert records_in(cluster, [audit_topic]) > audited


def test_a_hospitals_own_publisher_is_refused(
    cluster: KafkaCluster, security_dir: Path, plain_env: pytest.MonkeyPatch
) -> None:
    topic = event_topic(Family.ENCOUNTER, CONSORTIUM)
    before = records_in(cluster, [topic])
    data = example_data("OutpatientVisitStarted")
    data["envelope"].update(event_id=str(uuid.uuid4()), source=TOWNSHIP)
    plain_env.setenv("KAFKA_SECURITY_DIR", str(security_dir))
    plain_env.setenv("KAFKA_PRINCIPAL", hospital_principal(CONSORTIUM, TOWNSHIP))

    with Publisher(cluster.bootstrap, CONSORTIUM) as sdk, pytest.raises(PublishError) as refused:
        sdk.publish([parse_event(data)], timeout=20)

    assert "AUTHORIZATION" in " ".join(refused.value.failed.values()).upper()
    assert records_in(cluster, [topic]) == before
