"""The transactional outbox and its relay, shared by projections that publish to Kafka.

A projection writes the records it publishes (Avro bytes, latest per key) to its generation's
`outbox` table in the transaction of its batch; the relay sends them with acks=all and
idempotence and deletes them only after every acknowledgement. A crash after Kafka
acknowledged but before the delete committed sends the same key and value again: a duplicate
that a compacted topic and any reader keeping the latest value per key absorb. No change is
lost: a row leaves the outbox only in the transaction that follows Kafka's acknowledgement.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import psycopg
from confluent_kafka import Producer
from psycopg import Cursor, sql

from events.codec import Codec
from events.publisher import SAFE_PRODUCER_CONFIG, produce_acknowledged
from projections.frame import generations
from projections.frame.declaration import Table

if TYPE_CHECKING:
    from events.envelope import Event

log = logging.getLogger(__name__)

# Records changed but not yet on their topics (latest per key). `view` names the topic.
OUTBOX = Table(
    name="outbox",
    ddl="""
CREATE SEQUENCE {schema}.outbox_seq;
CREATE TABLE {schema}.outbox (
    view      text   NOT NULL,
    kafka_key bytea  NOT NULL,
    payload   bytea  NOT NULL,
    seq       bigint NOT NULL DEFAULT nextval('{schema}.outbox_seq'),
    PRIMARY KEY (view, kafka_key)
);
CREATE INDEX ON {schema}.outbox (seq);
""",
    digest_columns=(),
    order_by=("seq",),
)


def put(cur: Cursor[Any], schema: str, rows: Sequence[tuple[str, bytes, bytes]]) -> None:
    """Upsert (view, key, payload) rows: a key changed again is sent once, with its latest value.

    One statement; rows take their sequence numbers in the order given (a key given twice keeps
    its last value and the place of its last change)."""
    latest: dict[tuple[str, bytes], bytes] = {}
    for view, key, payload in rows:
        latest.pop((view, key), None)
        latest[(view, key)] = payload
    if not latest:
        return
    cur.execute(
        sql.SQL(
            "INSERT INTO {}.outbox (view, kafka_key, payload)"
            " SELECT v, k, p FROM unnest(%b::text[], %b::bytea[], %b::bytea[])"
            " WITH ORDINALITY AS x(v, k, p, n) ORDER BY n"
            " ON CONFLICT (view, kafka_key) DO UPDATE"
            " SET payload = excluded.payload, seq = excluded.seq"
        ).format(sql.Identifier(schema)),
        ([v for v, _ in latest], [k for _, k in latest], list(latest.values())),
    )


K = TypeVar("K")
V = TypeVar("V")


def changes(before: Mapping[K, V], now: Mapping[K, V]) -> list[tuple[V, bool]]:
    """(value, present) for each entity that appeared or changed (True) or vanished (False)."""
    found = [(v, True) for k, v in now.items() if before.get(k) != v]
    found += [(v, False) for k, v in before.items() if k not in now]
    return found


# A derived revision from (the entity's published part, present, generation, sequence, now).
Reviser = Callable[[V, bool, int, int, datetime], "Event"]


def announce(
    cur: Cursor[Any], schema: str, view: str, changed: Sequence[tuple[V, bool]], revise: Reviser[V]
) -> None:
    """Put one derived revision per changed entity in the outbox, in the batch's transaction.

    (generation, sequence) orders the revisions of an entity across batches and rebuilds: the
    generation is the frame's schema number, the sequence the outbox's own."""
    if not changed:
        return
    generation = int(schema.rsplit("_g", 1)[1])  # the frame's schema: <projection>_g<number>
    sequences = cur.execute(
        sql.SQL("SELECT nextval({}) FROM generate_series(1, %s)").format(
            sql.Literal(f"{schema}.outbox_seq")
        ),
        (len(changed),),
    ).fetchall()
    now = datetime.now(UTC)  # recorded_at only: nothing derived depends on the wall clock
    codec = _codec()
    rows = []
    for (value, present), (sequence,) in zip(changed, sequences, strict=True):
        event = revise(value, present, generation, sequence, now)
        rows.append((view, event.kafka_key(), codec.encode_event(event)))
    put(cur, schema, rows)


@cache
def _codec() -> Codec:
    from events.catalog import default_catalog

    return Codec(default_catalog())


class RelayError(RuntimeError):
    """Kafka did not acknowledge every record; they stay in the outbox for the next run."""


class OutboxRelay:
    """Drains one projection's live outbox to the topics its rows name (subclasses say which)."""

    projection: ClassVar[str]

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
        # The relay runs in the projection's processor and writes as its principal.
        own = with_environment(config, processor_principal(consortium_id, self.projection))
        self._producer = Producer(
            {"bootstrap.servers": bootstrap_servers, **SAFE_PRODUCER_CONFIG, **own}
        )
        self.consortium_id = consortium_id
        self._timeout = timeout

    def topic(self, view: str) -> str:
        """The topic of an outbox row's view."""
        raise NotImplementedError

    def once(self, limit: int = 2_000) -> int:
        """Publish up to `limit` changed records, oldest change first; how many."""
        with psycopg.connect(self._database_url) as conn, conn.transaction(), conn.cursor() as cur:
            live = generations.live(cur, self.projection)
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
        acknowledged, errors = produce_acknowledged(
            self._producer,
            (
                (
                    self.topic(view),
                    bytes(payload),
                    bytes(key),
                    [
                        ("view", view.encode()),
                        ("schema_id", str(int.from_bytes(payload[1:5], "big")).encode()),
                    ],
                )
                for view, key, payload, _seq in rows
            ),
            self._timeout,
        )
        if errors or acknowledged != len(rows):
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
                log.exception("%s relay failed; retrying", self.projection)
            stop.wait(interval)
