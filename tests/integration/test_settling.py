"""Waiting for the projections to settle names what is late: a record, or an outbox row."""

from __future__ import annotations

import time

import psycopg
import pytest

from consortium.processes import settle_pass, wait_settled
from consortium.topics import ensure_topics
from events.topics import Family, event_topic
from infra.migrate import apply_migrations
from infra.probe import produce_all, safe_producer
from projections import outbox
from projections.frame import generations
from projections.transfers.projection import TRANSFERS


def test_a_late_partition_and_an_unrelayed_row_are_named(
    kafka_bootstrap: str, scratch_database_url: str, fresh_consortium_id: str
) -> None:
    apply_migrations(scratch_database_url)
    ensure_topics(kafka_bootstrap, fresh_consortium_id)
    referral_topic = event_topic(Family.REFERRAL, fresh_consortium_id)
    # One record that no processor reads, so every projection of the referral topic is behind.
    assert produce_all(safe_producer(kafka_bootstrap), referral_topic, [(b"R1", b"x")]) == [None]
    with psycopg.connect(scratch_database_url) as conn:
        live = generations.create(conn, TRANSFERS, "live")
        with conn.transaction(), conn.cursor() as cur:
            outbox.put(cur, live.schema, [("transfers", b"k", b"v")])

    late: list[str] = []
    behind, ends = settle_pass(kafka_bootstrap, scratch_database_url, fresh_consortium_id, late)

    assert ends is not None
    [(partition, end)] = [(p, e) for (t, p), e in ends.items() if t == referral_topic and e]
    assert end == 1
    assert behind["referrals"] == 1
    assert behind["transfers"] == 2  # the record and the row
    assert f"referrals {referral_topic}[{partition}] stored 0 of 1" in late
    assert f"transfers {referral_topic}[{partition}] stored 0 of 1" in late
    assert "transfers outbox 1" in late
    assert not any(line.startswith("reporting outbox") for line in late)

    with pytest.raises(TimeoutError) as raised:
        wait_settled(
            kafka_bootstrap,
            scratch_database_url,
            fresh_consortium_id,
            time.monotonic() - 1,
            lambda _line: None,
        )
    message = str(raised.value)
    assert "'transfers': 2" in message
    assert "transfers outbox 1" in message
    assert f"referrals {referral_topic}[{partition}] stored 0 of 1" in message
