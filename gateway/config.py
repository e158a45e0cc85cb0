"""The gateway's configuration: the process settings plus the limits a deployment may tune."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from consortium.endpoints import database_url, kafka_bootstrap
from consortium.settings import get_settings

MAX_BATCH = 1_000
# Validating a body up to this size takes less than a hop to a worker thread and back.
INLINE_BYTES = 16 * 1024


@dataclass(frozen=True)
class GatewayConfig:
    """Where Kafka and PostgreSQL are, which consortium, and the request limits."""

    consortium_id: str
    bootstrap_servers: str
    database_url: str
    max_body_bytes: int = 8 * 1024 * 1024
    max_hl7_bytes: int = 1024 * 1024
    # Kafka gives up on an event after this long; only then does the gateway answer 503.
    publish_timeout_s: float = 10.0
    retry_after_s: int = 5
    pool_size: int = 8
    # A request waits for its acknowledgement, so every ms of linger is a ms of its latency;
    # batches of a request are queued at once and fill Kafka batches without lingering. 0, not
    # 1: librdkafka's linger timer cost about as much CPU as the rest of a publish
    # (docs/gateway.md, Performance).
    linger_ms: float = 0.0
    # Kafka client settings (security); None: the environment's, as the gateway's principal.
    kafka: Mapping[str, Any] | None = None
    # Open server-sent event streams per worker process, and per credential in it: each holds a
    # database poll (referrals) or a Kafka consumer and a thread (reports) (docs/gateway.md).
    max_streams: int = 200
    max_streams_per_credential: int = 4

    def kafka_config(self) -> dict[str, Any]:
        """The settings every Kafka client of the gateway adds to its bootstrap servers."""
        from consortium.kafka_config import with_environment
        from infra.security import gateway_principal

        return with_environment(self.kafka, gateway_principal(self.consortium_id))

    @classmethod
    def from_settings(
        cls, bootstrap: str | None = None, database: str | None = None
    ) -> GatewayConfig:
        """The configuration of `consortium serve`: options, then the environment, then infra up."""
        return cls(
            consortium_id=get_settings().consortium_id,
            bootstrap_servers=kafka_bootstrap(bootstrap),
            database_url=database_url(database),
        )
