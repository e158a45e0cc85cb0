"""What one gateway process shares between requests: the producer, the pool, the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from events.catalog import Catalog
from gateway import credentials
from gateway.config import GatewayConfig
from gateway.delivery import AsyncPublisher
from gateway.grouped import Grouped
from gateway.hl7.mapping import Namespaces
from gateway.ingest import RECORDED_ROWS, Ingest, Known, all_ids, recorded_of
from gateway.principals import Principal
from gateway.streams import StreamSlots


async def _configure(conn: AsyncConnection[Any]) -> None:
    """Session settings of the gateway's connections."""
    # The idempotency record is an optimisation (losing one costs a harmless republish on
    # retry, see docs/gateway.md), so its INSERT need not wait for the WAL flush.
    await conn.execute("SET synchronous_commit = off")


@dataclass
class Gateway:
    """The process-wide parts; created at start-up, closed at shutdown."""

    config: GatewayConfig
    catalog: Catalog
    publisher: AsyncPublisher
    pool: AsyncConnectionPool
    ingest: Ingest
    # The keyed namespaces of the ids derived from HL7 v2 (migration 0016, `gateway_id_key`).
    hl7_namespaces: Namespaces
    streams: StreamSlots = field(init=False, repr=False)
    _principals: Grouped[str, Principal | None] = field(init=False, repr=False)
    _reads: Grouped[tuple[str, list[UUID]], tuple[Principal | None, Known]] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        config = self.config
        self.streams = StreamSlots(
            config.max_streams, config.max_streams_per_credential, config.retry_after_s
        )
        self._principals = Grouped(self._authenticate_all)
        self._reads = Grouped(self._authenticate_and_look_up_all)

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token, read from the database on every request."""
        return await self._principals(token)

    async def _authenticate_all(self, tokens: list[str]) -> list[Principal | None]:
        async with self.pool.connection() as conn:
            return await credentials.authenticate_all(conn, tokens)

    async def authenticate_and_look_up(
        self, token: str, event_ids: list[UUID]
    ) -> tuple[Principal | None, Known]:
        """`authenticate` and `Ingest.look_up` in one statement (one round trip, not two).

        For a caller that has both at once (an MLLP message: token in MSH-8); grouped like
        each of them, so the credential is still read on every message."""
        return await self._reads((token, event_ids))

    async def _authenticate_and_look_up_all(
        self, requests: list[tuple[str, list[UUID]]]
    ) -> list[tuple[Principal | None, Known]]:
        tokens = [token for token, _ in requests]
        id_lists = [ids for _, ids in requests]
        # Both reads as one result; the first column tells credential rows from records.
        statement = (
            "SELECT true, c.*, NULL::int, NULL::bigint"
            f" FROM ({credentials.CREDENTIAL_ROWS}) c UNION ALL"
            " SELECT false, r.event_id, r.content_sha256, r.topic, NULL, r.kafka_partition,"
            f" r.kafka_offset FROM ({RECORDED_ROWS}) r"
        )
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                statement, (credentials.credential_ids(tokens), all_ids(id_lists))
            )
            rows = await cursor.fetchall()
        credential_rows = {r[1]: (bytes(r[2]), r[3], r[4]) for r in rows if r[0]}
        principals = credentials.principals_of(tokens, credential_rows)
        recorded = recorded_of(id_lists, ((*r[1:4], *r[5:]) for r in rows if not r[0]))
        return [
            (principal, Known(frozenset(ids), known))
            for principal, ids, known in zip(principals, id_lists, recorded, strict=True)
        ]

    @classmethod
    async def start(cls, config: GatewayConfig, catalog: Catalog) -> Gateway:
        """Open the connection pool and the producer."""
        from events.codec import Codec

        publisher = AsyncPublisher(
            config.bootstrap_servers,
            config.consortium_id,
            Codec(catalog),
            # librdkafka must give up no later than the gateway does, so that a 503 is final.
            {
                **config.kafka_config(),
                "delivery.timeout.ms": int(config.publish_timeout_s * 1000),
                "linger.ms": config.linger_ms,
            },
        )
        pool = AsyncConnectionPool(
            config.database_url,
            min_size=config.pool_size,
            max_size=config.pool_size,
            # Each statement is its own transaction: no BEGIN/COMMIT round trips per request.
            kwargs={"autocommit": True},
            configure=_configure,
            open=False,
        )
        await pool.open()
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT id_key FROM gateway_id_key")
            row = await cursor.fetchone()
        if row is None:  # the migration inserts it: a deleted row must not fall back to public ids
            await pool.close()
            raise RuntimeError("gateway_id_key holds no key: apply migration 0016 again")
        ingest = Ingest(
            publisher,
            pool,
            publish_timeout_s=config.publish_timeout_s,
            retry_after_s=config.retry_after_s,
        )
        return cls(config, catalog, publisher, pool, ingest, Namespaces.keyed(bytes(row[0])))

    async def stop(self) -> None:
        """Deliver what is queued and close the pool."""
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.publisher.close)
        await self.pool.close()
