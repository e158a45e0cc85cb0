"""Throw-away databases next to the session's one (a live generation's views are per database)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from infra.migrate import apply_migrations


@contextmanager
def own_database(
    database_url: str, prefix: str = "scratch", migrate: bool = False
) -> Iterator[str]:
    """A new database on the session's server (migrated if asked), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_conninfo(database_url, dbname=name)
        if migrate:
            apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
