"""One consistent view for a read made of several queries: a REPEATABLE READ, READ ONLY
transaction.

Autocommit queries each see the state committed when they start, so a read that decides, then
fetches, can mix two states. Inside `snapshot(conn)` every query sees the state committed
before the transaction's first query, and nothing can be written. The connection must not be
in a transaction already (the isolation level is set by the transaction's first statement).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from psycopg import AsyncConnection, Connection
from psycopg.pq import TransactionStatus

SET_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


class SnapshotError(RuntimeError):
    """A snapshot asked of a connection already inside a transaction."""


def _check_idle(status: TransactionStatus) -> None:
    if status is not TransactionStatus.IDLE:
        raise SnapshotError(
            f"a snapshot starts its own transaction; the connection is {status.name}"
        )


@contextmanager
def snapshot(conn: Connection[Any]) -> Iterator[Connection[Any]]:
    """Run the block's queries in one REPEATABLE READ, READ ONLY transaction on `conn`."""
    _check_idle(conn.info.transaction_status)
    with conn.transaction():
        conn.execute(SET_SNAPSHOT)
        yield conn


@asynccontextmanager
async def async_snapshot(conn: AsyncConnection[Any]) -> AsyncIterator[AsyncConnection[Any]]:
    """`snapshot` for an async connection."""
    _check_idle(conn.info.transaction_status)
    async with conn.transaction():
        await conn.execute(SET_SNAPSHOT)
        yield conn


__all__ = ["SET_SNAPSHOT", "SnapshotError", "async_snapshot", "snapshot"]
