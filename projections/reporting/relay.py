"""The outbox relay: changed figures go to the reporting topics after their batch committed.

A crash after Kafka acknowledged a record but before its outbox row was deleted sends that
record again on the next run: the same key with the same value, which a compacted topic and
any reader keeping the latest value per key absorb. No change is lost: a row leaves the outbox
only in the transaction that follows Kafka's acknowledgement.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import psycopg
from confluent_kafka import KafkaError, Message, Producer
from psycopg import sql

from events.publisher import SAFE_PRODUCER_CONFIG
from events.topics import REPORTING_TOPICS
from projections.frame import generations
from projections.reporting.projection import NAME

log = logging.getLogger(__name__)


class RelayError(RuntimeError):
    """Kafka did not acknowledge every record; they stay in the outbox for the next run."""


class Relay:
    """Drains the live generation's outbox to `<consortium>.reporting.<view>.v1`."""

    def __init__(
        self,
        database_url: str,
        bootstrap_servers: str,
        consortium_id: str,
        timeout: float = 30.0,
        *,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        from consortium.kafka_config import with_environment
        from infra.security import processor_principal

        self._database_url = database_url
        # The relay runs in the reporting processor and writes as its principal.
        own = with_environment(config, processor_principal(consortium_id, NAME))
        self._producer = Producer(
            {"bootstrap.servers": bootstrap_servers, **SAFE_PRODUCER_CONFIG, **own}
        )
        self._consortium_id = consortium_id
        self._timeout = timeout

    def once(self, limit: int = 2_000) -> int:
        """Publish up to `limit` changed records, oldest change first; how many."""
        with psycopg.connect(self._database_url) as conn, conn.transaction(), conn.cursor() as cur:
            live = generations.live(cur, NAME)
            if live is None:
                return 0
            schema = sql.Identifier(live.schema)
            rows = cur.execute(
                sql.SQL(
                    "SELECT view, kafka_key, payload, seq FROM {}.outbox"
                    " ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED"
                ).format(schema),
                (limit,),
            ).fetchall()
            if not rows:
                return 0
            self._produce(rows)
            cur.execute(
                sql.SQL("DELETE FROM {}.outbox WHERE seq = ANY(%s)").format(schema),
                ([seq for *_, seq in rows],),
            )
        return len(rows)

    def _produce(self, rows: list[tuple[Any, ...]]) -> None:
        errors: list[str] = []
        acknowledged = 0

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            nonlocal acknowledged
            if err is None:
                acknowledged += 1
            else:
                errors.append(err.str())

        for view, key, payload, _seq in rows:
            self._producer.produce(
                REPORTING_TOPICS[view].name(self._consortium_id),
                value=bytes(payload),
                key=bytes(key),
                headers=[
                    ("view", view.encode()),
                    ("schema_id", str(int.from_bytes(payload[1:5], "big")).encode()),
                ],
                on_delivery=on_delivery,
            )
        remaining = self._producer.flush(self._timeout)
        if errors or remaining or acknowledged != len(rows):
            raise RelayError(f"{acknowledged} of {len(rows)} acknowledged; errors: {errors[:3]}")

    def drain(self) -> int:
        """Publish until the outbox is empty; how many."""
        total = 0
        while n := self.once():
            total += n
        return total

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        """Drain every interval until stopped; failures are logged and retried."""
        while not stop.is_set():
            try:
                if self.once():
                    continue
            except Exception:
                log.exception("reporting relay failed; retrying")
            stop.wait(interval)
