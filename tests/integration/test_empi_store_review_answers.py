"""Answers to reviews in PostgreSQL: what the pure index applied is what a reload finds.

An answer read before its review's request is parked and applied when the request comes; the
store wrote a review's status and apart pair only when the event at hand was the answer itself, so
the review stayed open in the queue and a reloaded index decided otherwise than a running one.
"""

from __future__ import annotations

from typing import Any

import psycopg

from empi_reviews import answer, until_review
from events.catalog import default_catalog
from events.codec import Codec
from events.person import MatchReviewRequested, ReviewDecision
from infra.migrate import apply_migrations
from projections.empi.evaluation import evaluation_config
from projections.empi.index import IndexState
from projections.empi.store import EmpiStore, load_state, open_reviews, use_schema

CODEC = Codec(default_catalog())


def _reloaded(conn: psycopg.Connection[Any]) -> IndexState:
    with conn.transaction(), conn.cursor() as cur:
        use_schema(cur, "empi")
        return load_state(cur, evaluation_config())


def _stored(conn: psycopg.Connection[Any], request: MatchReviewRequested) -> tuple[Any, ...]:
    status = conn.execute(
        "SELECT status, decided_by FROM empi.reviews WHERE review_id = %s", (request.review_id,)
    ).fetchone()
    apart = conn.execute("SELECT institution, local_id, person_id FROM empi.apart").fetchall()
    parked = conn.execute("SELECT count(*) FROM empi.parked").fetchone()
    queued = {r["review_id"] for r in open_reviews(conn, limit=5000)}
    return status, apart, parked, request.review_id in queued


def test_an_early_answer_applied_when_its_request_comes_closes_the_review_in_postgresql(
    scratch_database_url: str,
) -> None:
    apply_migrations(scratch_database_url)
    _, events, request = until_review()
    store = EmpiStore(evaluation_config(), CODEC)
    with psycopg.connect(scratch_database_url) as conn:
        # Read first (another partition, an earlier batch): parked.
        store.apply_batch(conn, [answer(request, ReviewDecision.DIFFERENT_PERSONS, 1)])
        store.apply_batch(conn, events)  # the request comes; the parked answer is applied
        kept = store._state
        assert kept is not None and request.review_id not in kept.reviews
        pair = ((request.institution, request.local_id), request.person_id)
        assert pair in kept.apart
        row = (request.institution, request.local_id, request.person_id)
        assert _stored(conn, request) == (("different_persons", "ADM-1"), [row], (0,), False)
        reloaded = _reloaded(conn)
        assert request.review_id not in reloaded.reviews and pair in reloaded.apart
        assert reloaded.decided_reviews == kept.decided_reviews == {request.review_id}


def test_a_second_answer_changes_nothing_in_postgresql(scratch_database_url: str) -> None:
    apply_migrations(scratch_database_url)
    _, events, request = until_review()
    store = EmpiStore(evaluation_config(), CODEC)
    with psycopg.connect(scratch_database_url) as conn:
        store.apply_batch(conn, events)
        store.apply_batch(conn, [answer(request, ReviewDecision.SAME_PERSON, 1)])
        before = _stored(conn, request)
        assert before[0] == ("same_person", "ADM-1") and before[1] == []
        # A second administrator's answer, accepted while the first was on its way.
        second = answer(request, ReviewDecision.DIFFERENT_PERSONS, 2)
        assert store.apply_batch(conn, [second]) == []
        assert _stored(conn, request) == before  # not parked, no apart pair
        reloaded = _reloaded(conn)
        assert not reloaded.parked_decisions and not reloaded.apart
        assert request.review_id in reloaded.decided_reviews
