"""Servers for test sessions: the environment's, a Docker container's, or our own launcher's."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from consortium.settings import Settings
from infra.containers import docker_answers, kafka_container, postgres_container
from infra.kafka import KafkaCluster
from infra.migrate import apply_migrations
from infra.postgres import PostgresServer


@functools.cache
def use_docker() -> bool:
    """Whether to use testcontainers: a Docker engine answers (asked once per process)."""
    return docker_answers()


@contextmanager
def kafka_for_tests(tmp: Path) -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS, else a container, else a one-node broker in tmp; bootstrap."""
    configured = Settings().kafka_bootstrap_servers
    if configured:
        yield configured
    elif use_docker():
        with kafka_container() as bootstrap:
            yield bootstrap
    else:
        # Own ports and folder, so a test session never touches a demo's broker.
        cluster = KafkaCluster(1, tmp, detach=False)
        try:
            yield cluster.start()
        finally:
            cluster.stop(timeout=15)


@contextmanager
def postgres_for_tests(tmp: Path) -> Iterator[str]:
    """DATABASE_URL, else a container, else a private cluster in tmp; migrated; its URL."""
    configured = Settings().database_url
    if configured is not None:
        url = configured.get_secret_value()
        apply_migrations(url)
        yield url
    elif use_docker():
        with postgres_container() as url:
            apply_migrations(url)
            yield url
    else:
        server = PostgresServer(tmp, detach=False)
        try:
            url = server.start()
            apply_migrations(url)
            yield url
        finally:
            server.remove()
