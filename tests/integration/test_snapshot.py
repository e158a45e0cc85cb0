"""projections.snapshot against real PostgreSQL: one state for every query, no writes."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from projections.snapshot import SnapshotError, async_snapshot, snapshot


def _table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS facts (n int)")
        conn.execute("TRUNCATE facts")
        conn.execute("INSERT INTO facts VALUES (1)")


def _commit_another(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("INSERT INTO facts VALUES (2)")


@pytest.mark.parametrize("autocommit", [True, False])
def test_a_commit_between_two_queries_is_not_seen(
    scratch_database_url: str, autocommit: bool
) -> None:
    _table(scratch_database_url)
    with psycopg.connect(scratch_database_url, autocommit=autocommit) as conn:
        with snapshot(conn):
            first = conn.execute("SELECT array_agg(n ORDER BY n) FROM facts").fetchone()
            _commit_another(scratch_database_url)
            second = conn.execute("SELECT array_agg(n ORDER BY n) FROM facts").fetchone()
            level = conn.execute("SHOW transaction_isolation").fetchone()
            read_only = conn.execute("SHOW transaction_read_only").fetchone()
        assert first == second == ([1],)
        assert level == ("repeatable read",) and read_only == ("on",)
        after = conn.execute("SELECT array_agg(n ORDER BY n) FROM facts").fetchone()
        assert after == ([1, 2],)  # the snapshot ended with the block


def test_nothing_can_be_written_in_a_snapshot(scratch_database_url: str) -> None:
    _table(scratch_database_url)
    with psycopg.connect(scratch_database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), snapshot(conn):
            conn.execute("INSERT INTO facts VALUES (3)")
        assert conn.execute("SELECT count(*) FROM facts").fetchone() == (1,)


def test_a_connection_already_in_a_transaction_is_refused(scratch_database_url: str) -> None:
    _table(scratch_database_url)
    with psycopg.connect(scratch_database_url) as conn:
        conn.execute("SELECT 1")  # the implicit transaction, read committed
        with pytest.raises(SnapshotError, match="INTRANS"), snapshot(conn):
            pass
        conn.execute("INSERT INTO facts VALUES (4)")  # the caller's transaction is untouched
        conn.commit()
        assert conn.execute("SELECT count(*) FROM facts").fetchone() == (2,)


def test_the_async_snapshot_sees_one_state_too(scratch_database_url: str) -> None:
    _table(scratch_database_url)

    async def run() -> tuple[object, object]:
        conn = await psycopg.AsyncConnection.connect(scratch_database_url, autocommit=True)
        async with conn:
            async with async_snapshot(conn):
                first = await (await conn.execute("SELECT count(*) FROM facts")).fetchone()
                await asyncio.to_thread(_commit_another, scratch_database_url)
                second = await (await conn.execute("SELECT count(*) FROM facts")).fetchone()
            await conn.execute("BEGIN")
            with pytest.raises(SnapshotError):
                async with async_snapshot(conn):
                    pass
        return first, second

    assert asyncio.run(run()) == ((1,), (1,))
