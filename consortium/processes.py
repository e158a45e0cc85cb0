"""Runs the projection processors as child processes and waits until they have caught up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, KafkaException, TopicPartition

from consortium.kafka_config import kafka_client_config
from events.topics import Family, event_topic
from infra.runtime import Endpoints
from infra.security import ADMIN


@contextmanager
def processors_running(
    endpoints: Endpoints, consortium_id: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`consortium process all` as a child process, stopped (SIGTERM) when the block ends."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.bootstrap_servers,
        "DATABASE_URL": endpoints.database_url,
        "CONSORTIUM_ID": consortium_id,
    }
    if env.get("CONSORTIUM_ENVIRONMENT", "development") == "development":
        # The patient index refuses to run without a hash key; a development run gets a
        # public one (its hashes protect nothing, and nothing outside development accepts it).
        env.setdefault("EMPI_ID_HASH_KEY", "development-only-resident-id-hash-key")
    child = subprocess.Popen(
        [sys.executable, "-m", "processors.cli", "process", "all"], env=env, start_new_session=True
    )
    try:
        yield child
    finally:
        stop_group(child)


def stop_group(child: subprocess.Popen[bytes], timeout: float = 40.0) -> None:
    """SIGTERM the child's whole process group, then SIGKILL whatever outlives the timeout."""
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.poll()
        try:
            os.killpg(child.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def log_ends(bootstrap: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """The next offset of every partition of the topics."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            **kafka_client_config(ADMIN),
            "group.id": "consortium-log-ends",
        }
    )
    try:
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
                ends[topic, partition] = int(high)
        return ends
    finally:
        consumer.close()


def _wait_index(
    endpoints: Endpoints,
    consortium_id: str,
    child: subprocess.Popen[bytes],
    deadline: float,
    report: Callable[[str], None],
) -> None:
    """Until the patient index has read every registration and published every decision."""
    import psycopg

    patients = event_topic(Family.PATIENT, consortium_id)
    ends = log_ends(endpoints.bootstrap_servers, [patients])
    total = sum(ends.values())
    while True:
        if child.poll() is not None:
            raise RuntimeError(f"the processors stopped (exit {child.returncode})")
        try:
            with psycopg.connect(endpoints.database_url, autocommit=True) as conn:
                stored = dict(
                    ((t, p), n)
                    for t, p, n in conn.execute(
                        "SELECT topic, partition, next_offset FROM empi.positions"
                    ).fetchall()
                )
                row = conn.execute(
                    "SELECT count(*) FROM empi.outbox WHERE published_at IS NULL"
                ).fetchone()
                unpublished = row[0] if row else 0
        except psycopg.errors.UndefinedTable:
            stored, unpublished = {}, 0
        behind = sum(max(0, end - stored.get(tp, 0)) for tp, end in ends.items())
        report(
            f"patient index: {total - behind:,} of {total:,} registrations,"
            f" {unpublished:,} decisions to publish"
        )
        if behind == 0 and unpublished == 0:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the patient index is still {behind:,} registrations behind")
        time.sleep(1.0)


def wait_caught_up(
    endpoints: Endpoints,
    consortium_id: str,
    child: subprocess.Popen[bytes],
    timeout: float = 300.0,
    report: Callable[[str], None] = lambda _: None,
) -> None:
    """Return once every registered projection has consumed its topics up to their current end.

    The patient index goes first: its decisions (on the person topic) are what the shared record
    joins members' records by, so the record's end is read once the index has settled."""

    deadline = time.monotonic() + timeout
    _wait_index(endpoints, consortium_id, child, deadline, report)

    def alive() -> None:
        if child.poll() is not None:
            raise RuntimeError(f"the processors stopped (exit {child.returncode})")

    wait_settled(
        endpoints.bootstrap_servers, endpoints.database_url, consortium_id, deadline, report, alive
    )


def wait_settled(
    bootstrap: str,
    database_url: str,
    consortium_id: str,
    deadline: float,
    report: Callable[[str], None],
    alive: Callable[[], None] = lambda: None,
) -> None:
    """Poll until two passes in a row find nothing behind over the same log ends.

    One zero pass is not enough: a record consumed just after its topic's end was read can have
    its outbox row relayed (and gone) before the outbox is counted, putting a record on a
    downstream topic whose end this pass read before it. That record moves the end, so a second
    pass over unchanged ends is the settled state. TimeoutError at the deadline."""
    settled_ends: dict[tuple[str, int], int] | None = None
    late_parts: list[str] = []
    while True:
        alive()
        behind, ends = settle_pass(bootstrap, database_url, consortium_id, late_parts)
        report("; ".join(f"{name}: {n:,} behind" for name, n in behind.items()))
        if not any(behind.values()):
            if ends == settled_ends:
                return
            settled_ends = ends
            continue
        settled_ends = None
        if time.monotonic() > deadline:
            late = {name: n for name, n in behind.items() if n}
            # Which partitions or outboxes: "1 behind" alone cannot tell an unapplied record
            # from an unrelayed row (the soak's transfers stayed 1 behind; docs/reliability.md).
            raise TimeoutError(f"still behind: {late} ({'; '.join(late_parts) or 'no detail'})")
        time.sleep(1.0)


def projections_behind(bootstrap: str, database_url: str, consortium_id: str) -> dict[str, int]:
    """Per registered projection: records not yet applied plus rows its outbox has yet to relay."""
    return settle_pass(bootstrap, database_url, consortium_id)[0]


def settle_pass(
    bootstrap: str, database_url: str, consortium_id: str, late: list[str] | None = None
) -> tuple[dict[str, int], dict[tuple[str, int], int] | None]:
    """One pass: what `projections_behind` returns, and the log ends it read (None if unread).

    Every log end is read first, with one client; then every stored position; then the outboxes.
    `late`, if given, is refilled with what is behind: "<projection> <topic>[<partition>] stored
    <next offset> of <end>" and "<projection> outbox <rows>"."""
    import psycopg

    from processors.positions import stored_positions
    from processors.wiring import PROJECTIONS
    from projections.frame import generations

    if late is not None:
        late.clear()
    topics = sorted(
        {event_topic(f, consortium_id) for p in PROJECTIONS.values() for f in p.families}
    )
    try:
        ends: dict[tuple[str, int], int] | None = log_ends(bootstrap, topics)
    except KafkaException:  # a broker away (the fault campaign): unknown is not settled
        ends = None
    behind: dict[str, int] = {}
    for projection in PROJECTIONS.values():
        if ends is None:
            behind[projection.name] = 1
            continue
        own_topics = {event_topic(f, consortium_id) for f in projection.families}
        own = {tp: end for tp, end in ends.items() if tp[0] in own_topics}
        try:
            stored = stored_positions(database_url, projection.name, own)
        except psycopg.OperationalError:  # the database restarting (the fault campaign)
            stored = {}
        at = stored.get
        short = [(tp, at(tp, 0), end) for tp, end in sorted(own.items()) if end > at(tp, 0)]
        behind[projection.name] = sum(end - n for _, n, end in short)
        if late is not None:
            late += [f"{projection.name} {t}[{p}] stored {n} of {end}" for (t, p), n, end in short]
    try:
        with psycopg.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
            for projection in PROJECTIONS.values():
                live = generations.live(cur, projection.name)
                if live is None or "outbox" not in {t.name for t in projection.tables}:
                    continue
                row = cur.execute(
                    psycopg.sql.SQL("SELECT count(*) FROM {}.outbox").format(
                        psycopg.sql.Identifier(live.schema)
                    )
                ).fetchone()
                rows = int(row[0]) if row else 0
                behind[projection.name] += rows
                if late is not None and rows:
                    late.append(f"{projection.name} outbox {rows}")
    except psycopg.OperationalError:  # unknown is not settled
        behind = {name: n + 1 for name, n in behind.items()}
    return behind, ends
