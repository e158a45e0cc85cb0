"""What one gateway process shares between requests: the producer, the pool, the catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from events.catalog import Catalog
from gateway import credentials
from gateway.config import GatewayConfig
from gateway.delivery import AsyncPublisher
from gateway.grouped import Grouped
from gateway.ingest import Ingest
from gateway.principals import Principal


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
    _principals: Grouped[str, Principal | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._principals = Grouped(self._authenticate_all)

    async def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token, read from the database on every request."""
        return await self._principals(token)

    async def _authenticate_all(self, tokens: list[str]) -> list[Principal | None]:
        async with self.pool.connection() as conn:
            return await credentials.authenticate_all(conn, tokens)

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
        ingest = Ingest(
            publisher,
            pool,
            publish_timeout_s=config.publish_timeout_s,
            retry_after_s=config.retry_after_s,
        )
        return cls(config, catalog, publisher, pool, ingest)

    async def stop(self) -> None:
        """Deliver what is queued and close the pool."""
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.publisher.close)
        await self.pool.close()
