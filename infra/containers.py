"""Kafka and PostgreSQL in Docker containers (testcontainers), for machines with an engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from infra.kafka import admin_client
from infra.process import free_port

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:16"


def docker_answers() -> bool:
    """Whether a Docker engine answers a ping through testcontainers' client."""
    try:
        from testcontainers.core.docker_client import DockerClient

        return bool(DockerClient().client.ping())
    except Exception:  # no socket, no permission, no package: all mean "no engine"
        return False


def _kafka_env(advertised: str) -> dict[str, str]:
    """A single KRaft node with the replication settings of our single-node launcher."""
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{advertised}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }


@contextmanager
def kafka_container(timeout: float = 120.0) -> Iterator[str]:
    """A one-node Kafka container; yields its bootstrap servers and removes it afterwards."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    # The advertised listener must name the host port, so pick it before the start.
    host, port = DockerClient().host(), free_port()
    container: Any = DockerContainer(KAFKA_IMAGE).with_bind_ports(9092, port)
    for key, value in _kafka_env(f"{host}:{port}").items():
        container.with_env(key, value)
    container.waiting_for(
        LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(int(timeout))
    )
    with container:
        bootstrap = f"{host}:{port}"
        _wait_for_metadata(bootstrap, timeout)
        yield bootstrap


@contextmanager
def postgres_container() -> Iterator[str]:
    """A PostgreSQL container with a `consortium` database; yields its URL."""
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers before the community split
        from testcontainers.postgres import PostgresContainer

    container: Any = PostgresContainer(
        POSTGRES_IMAGE, username="consortium", password="consortium", dbname="consortium"
    )
    with container:
        yield str(container.get_connection_url(driver=None))


def _wait_for_metadata(bootstrap: str, timeout: float) -> None:
    """Wait until the broker answers a metadata request."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if admin_client(bootstrap).list_topics(timeout=2).brokers:
                return
        except Exception:  # not answering yet
            pass
        time.sleep(0.5)
    raise TimeoutError(f"Kafka container at {bootstrap} did not answer")
