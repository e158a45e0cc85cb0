"""Fixtures of the integration tests: throw-away databases next to the session's one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from own_databases import own_database


@pytest.fixture
def scratch_database_url(database_url: str) -> Iterator[str]:
    """A new, empty database on the session's server, dropped after the test."""
    with own_database(database_url) as url:
        yield url
