"""The index in PostgreSQL: batches applied once, a reloaded index decides alike, reviews."""

from __future__ import annotations

from typing import Any

import psycopg

from events.catalog import default_catalog
from events.codec import Codec
from events.envelope import Envelope, Event
from events.person import MatchReviewDecided, MatchReviewRequested, PersonLinked, ReviewDecision
from infra.migrate import apply_migrations
from projections.empi.evaluation import evaluation_config, labelled_identities
from projections.empi.index import apply, new_state
from projections.empi.store import EmpiStore, open_reviews, person_of, relay_outbox

CODEC = Codec(default_catalog())


def in_memory(events: list[Event]) -> list[Event]:
    """The decisions of a pure index that never saw PostgreSQL."""
    state, decisions = new_state(evaluation_config()), []
    for event in events:
        state, out = apply(state, event)
        decisions += out
    return decisions


def test_a_reloaded_index_decides_exactly_as_one_that_never_stopped(
    scratch_database_url: str,
) -> None:
    apply_migrations(scratch_database_url)
    events: list[Event] = list(labelled_identities(1200, seed=21).registrations)
    expected = in_memory(events)
    decisions: list[Event] = []
    with psycopg.connect(scratch_database_url) as conn:
        for start in range(0, len(events), 300):
            # A new worker per batch: each one loads the index from PostgreSQL.
            store = EmpiStore(evaluation_config(), CODEC)
            decisions += store.apply_batch(conn, events[start : start + 300])
        assert decisions == expected
        # Redelivered events are claimed already: no decision, no change.
        assert EmpiStore(evaluation_config(), CODEC).apply_batch(conn, events[:300]) == []
        outbox = conn.execute("SELECT count(*) FROM empi.outbox").fetchone()
        assert outbox is not None and outbox[0] == len(expected)
        linked = [d for d in expected if isinstance(d, PersonLinked)]
        for decision in linked[-50:]:
            assert isinstance(decision, PersonLinked)
            now = person_of(conn, decision.institution, decision.local_id)
            assert now is not None
        stored = conn.execute("SELECT demographics::text FROM empi.records").fetchall()
        for event in events:
            rid = getattr(event, "resident_id_number", None)
            if rid:
                assert not any(rid[:17] in text for (text,) in stored)


def test_the_review_queue_fills_and_a_decision_closes_it(scratch_database_url: str) -> None:
    apply_migrations(scratch_database_url)
    events: list[Event] = list(labelled_identities(1500, seed=22).registrations)
    store = EmpiStore(evaluation_config(), CODEC)
    with psycopg.connect(scratch_database_url) as conn:
        decisions = store.apply_batch(conn, events)
        requested = [d for d in decisions if isinstance(d, MatchReviewRequested)]
        queue = open_reviews(conn, limit=1000)
        assert {row["review_id"] for row in queue} == {r.review_id for r in requested}
        assert requested, "a county this size always has borrowed cards or near misses"
        review = requested[0]
        one_member = open_reviews(conn, institution=review.institution, limit=1000)
        assert review.review_id in {row["review_id"] for row in one_member}
        decided = MatchReviewDecided(
            envelope=Envelope(
                event_id="7d0c7e1c-8a55-4b0a-a4c1-6d3e2b1f0a01",
                event_type="MatchReviewDecided",
                occurred_at=review.envelope.occurred_at,
                recorded_at=review.envelope.occurred_at,
                source=review.envelope.source,
                patient_local_id=str(review.person_id),
            ),
            review_id=review.review_id,
            person_id=review.person_id,
            institution=review.institution,
            local_id=review.local_id,
            decision=ReviewDecision.SAME_PERSON,
            decided_by="ADM-0001",
        )
        # A fresh worker (reloaded state) applies the decision.
        EmpiStore(evaluation_config(), CODEC).apply_batch(conn, [decided])
        assert review.review_id not in {row["review_id"] for row in open_reviews(conn, limit=1000)}
        assert person_of(conn, review.institution, review.local_id) == review.person_id
        status = conn.execute(
            "SELECT status, decided_by FROM empi.reviews WHERE review_id = %s", (review.review_id,)
        ).fetchone()
        assert status == ("same_person", "ADM-0001")


def test_the_outbox_relay_publishes_each_decision_once(scratch_database_url: str) -> None:
    apply_migrations(scratch_database_url)
    events: list[Event] = list(labelled_identities(200, seed=23).registrations)
    published: list[Any] = []
    with psycopg.connect(scratch_database_url) as conn:
        decisions = EmpiStore(evaluation_config(), CODEC).apply_batch(conn, events)
        total = 0
        while sent := relay_outbox(conn, published.extend, limit=64):
            total += sent
        # As stored: the bytes the batch encoded, keyed by the person, in the decisions' order.
        assert total == len(decisions)
        assert [CODEC.decode_event(row.payload) for row in published] == decisions
        assert [row.payload for row in published] == [CODEC.encode_event(d) for d in decisions]
        assert [(row.event_id, row.person_id, row.event_type) for row in published] == [
            (d.envelope.event_id, d.person_id, d.event_type) for d in decisions
        ]
        assert relay_outbox(conn, published.extend) == 0
