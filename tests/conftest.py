"""Fixtures shared by every test folder: servers (started lazily, once) and fresh names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from infra.testing import kafka_for_tests, postgres_for_tests


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a Kafka that lives as long as the test session."""
    with kafka_for_tests(tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a migrated PostgreSQL database that lives as long as the test session."""
    with postgres_for_tests(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture
def fresh_consortium_id() -> str:
    """A consortium (tenant) prefix no other test uses, so topics are new for each test."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def fresh_group(fresh_consortium_id: str) -> str:
    """A consumer group id no other test uses."""
    return f"{fresh_consortium_id}.group.{uuid.uuid4().hex[:6]}"
