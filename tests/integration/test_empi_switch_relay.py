"""A rebuild's switch while the outbox relay is publishing: no decision marked that was not sent.

The relay selects unpublished rows of `empi.outbox`, waits for Kafka, then marks them. A switch
committed in between renamed the schemas, so the marks landed in the new generation's outbox,
matched by the old generation's seq values: when the live outbox had gaps in its sequence (a
rolled-back batch spends values) decisions never sent were marked published, i.e. lost.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import psycopg

from infra.migrate import apply_migrations
from projections.empi import generations
from projections.empi.relay import StoredDecision
from projections.empi.store import relay_outbox


def _insert(cur: psycopg.Cursor[Any], schema: str, event_id: uuid.UUID) -> None:
    cur.execute(
        f"INSERT INTO {schema}.outbox (event_id, person_id, event_type, payload)"
        " VALUES (%s, %s, 'PersonLinked', %s)",
        (event_id, uuid.uuid4(), b"\x00\x00\x00\x00\x17x"),
    )


def _waits_on_a_lock(url: str, pid: int) -> bool:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
    return bool(row and row[0])


def test_a_switch_during_a_relay_round_marks_exactly_the_decisions_sent(
    scratch_database_url: str,
) -> None:
    url = scratch_database_url
    apply_migrations(url)
    d1, d2, d3, d4 = (uuid.uuid4() for _ in range(4))
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.cursor()
        _insert(cur, "empi", d1)
        cur.execute("SELECT nextval('empi.outbox_seq_seq')")  # a gap, as a rolled-back batch
        _insert(cur, "empi", d2)
        _insert(cur, "empi", d3)
        built = generations.create(conn)
        for d in (d1, d2, d3, d4):  # the rebuild's replay: no gap in its sequence
            _insert(cur, built, d)

    published: list[StoredDecision] = []
    selected, release = threading.Event(), threading.Event()

    def publish(rows: list[StoredDecision]) -> None:  # Kafka's acks=all round trip
        published.extend(rows)
        selected.set()
        assert release.wait(60)

    def relay() -> None:
        with psycopg.connect(url) as conn:
            relay_outbox(conn, publish)

    switch_pid: list[int] = []

    def switch() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            switch_pid.append(conn.info.backend_pid)
            # The live runner's next batch commits a fourth decision meanwhile ...
            _insert(conn.cursor(), "empi", d4)
            # ... and the rebuild (which replayed that batch too) switches.
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (generations.BATCH_LOCK,))
                generations.switch(cur, built)

    relaying = threading.Thread(target=relay)
    relaying.start()
    assert selected.wait(60)
    switching = threading.Thread(target=switch)
    switching.start()
    # Kafka acknowledges once the switch has committed or waits for the relay's round.
    while switching.is_alive() and not (switch_pid and _waits_on_a_lock(url, switch_pid[0])):
        time.sleep(0.02)
    release.set()
    relaying.join(60)
    switching.join(60)
    assert not relaying.is_alive() and not switching.is_alive()

    with psycopg.connect(url) as conn:
        query = "SELECT event_id, published_at IS NOT NULL FROM empi.outbox ORDER BY seq"
        rows = conn.execute(query)
        outbox = rows.fetchall()
    marked = {e for e, published in outbox if published}
    unsent = [e for e, published in outbox if not published]
    assert {row.event_id for row in published} == {d1, d2, d3}
    assert marked == {d1, d2, d3}  # d4 is left for the relay's next round, d1..d3 not sent again
    assert unsent == [d4]
