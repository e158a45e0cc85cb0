"""Fixtures shared by every test folder: servers (started lazily, once) and fresh names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from consortium.settings import Settings
from consortium.topics import drop_topics
from infra.testing import kafka_for_tests, postgres_for_tests

# The consortia this session handed out: their topics go when the session ends.
_FRESH: list[str] = []


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a Kafka that lives as long as the test session."""
    with kafka_for_tests(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap
        if Settings().kafka_bootstrap_servers:
            # A broker that outlives the session (KAFKA_BOOTSTRAP_SERVERS) would keep every
            # test's topics until it runs out of file descriptors; a session's own broker goes.
            drop_topics(bootstrap, _FRESH, timeout=60)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a migrated PostgreSQL database that lives as long as the test session."""
    with postgres_for_tests(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture
def fresh_consortium_id() -> str:
    """A consortium (tenant) prefix no other test uses, so topics are new for each test."""
    consortium_id = "t" + uuid.uuid4().hex[:10]
    _FRESH.append(consortium_id)
    return consortium_id


@pytest.fixture
def fresh_group(fresh_consortium_id: str) -> str:
    """A consumer group id no other test uses."""
    return f"{fresh_consortium_id}.group.{uuid.uuid4().hex[:6]}"
