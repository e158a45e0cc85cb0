"""Reviews against the present state, in PostgreSQL: what the running index decided is what a
reloaded index holds (docs/empi.md, "Review decided").

A review superseded by its record's own change is `superseded` in the queue (no longer offered to
administrators; a late answer is ignored, by the running and by a reloaded index alike); an apart
pair whose person was merged away keeps the record apart from the survivor after a reload too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from empi_reviews import (
    FATHER,
    SON,
    SON_BORN,
    SON_ID,
    father,
    first_person,
    registered,
    son,
    son_answer,
    son_review_id,
    source_merge,
    updated,
)
from events.catalog import default_catalog
from events.codec import Codec
from events.envelope import Event
from events.person import ReviewDecision
from infra.migrate import apply_migrations
from projections.empi.evaluation import evaluation_config
from projections.empi.index import IndexState
from projections.empi.store import EmpiStore, load_state, open_reviews, use_schema

CODEC = Codec(default_catalog())
SAME, DIFFERENT = ReviewDecision.SAME_PERSON, ReviewDecision.DIFFERENT_PERSONS
OWN = ("439901-C01", "0000000077")
DUPLICATE = (FATHER[0], "JD0300002")
BARE = dict(resident_id_number=None, medical_insurance_number=None, phone=None, address=None)


def _reloaded(conn: psycopg.Connection[Any]) -> IndexState:
    with conn.transaction(), conn.cursor() as cur:
        use_schema(cur, "empi")
        return load_state(cur, evaluation_config())


def _view(state: IndexState) -> tuple[Any, ...]:
    """What the reviews' and links' rules read."""
    return (
        state.person_of,
        {person: set(members) for person, members in state.members.items()},
        state.merged_into,
        state.apart,
        state.reviews,
        state.open_pairs,
        state.open_of,
        state.decided_reviews,
        set(state.parked_decisions),
    )


def _batches(conn: psycopg.Connection[Any], *batches: Sequence[Event]) -> list[list[Event]]:
    """Apply the batches with one store; after each, a reloaded index equals the running one."""
    store, out = EmpiStore(evaluation_config(), CODEC), []
    for batch in batches:
        out.append(store.apply_batch(conn, batch))
        assert store._state is not None
        assert _view(_reloaded(conn)) == _view(store._state)
    return out


def _review(conn: psycopg.Connection[Any]) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT status, decided_by FROM empi.reviews WHERE review_id = %s", (son_review_id(),)
    ).fetchone()


def _person(conn: psycopg.Connection[Any], record: tuple[str, str]) -> Any:
    row = conn.execute(
        "SELECT person_id FROM empi.records WHERE institution = %s AND local_id = %s", record
    ).fetchone()
    return None if row is None else row[0]


def test_a_corrected_id_supersedes_the_review_and_a_late_answer_splits_nothing(
    scratch_database_url: str,
) -> None:
    apply_migrations(scratch_database_url)
    own = registered(
        OWN, "own", 2, name="李子轩", resident_id_number=SON_ID, birth_date=SON_BORN,
        medical_insurance_number=None, phone=None, address="城关镇", township_division_code=None,
    )  # fmt: skip
    fixed = updated(SON, "son fixed", 3, resident_id_number=SON_ID, birth_date=SON_BORN)
    with psycopg.connect(scratch_database_url) as conn:
        *_, late = _batches(conn, [father(), son()], [own, fixed], [son_answer(SAME, 9)])
        assert late == []
        assert _review(conn) == ("superseded", None)
        assert son_review_id() not in {r["review_id"] for r in open_reviews(conn)}
        assert _person(conn, SON) == _person(conn, OWN) != _person(conn, FATHER)


def test_a_different_persons_answer_for_records_joined_meanwhile_is_superseded(
    scratch_database_url: str,
) -> None:
    apply_migrations(scratch_database_url)
    township_son = (FATHER[0], "JD0300003")
    joined = [
        registered(township_son, "township son", 2, name="李子轩"),
        source_merge(FATHER, township_son, "joined", 3),
    ]
    with psycopg.connect(scratch_database_url) as conn:
        _batches(conn, [father(), son()], joined)
        # The queue shows the persons of now: the son's person was merged into his father's.
        [queued] = open_reviews(conn)
        assert queued["review_id"] == son_review_id()
        assert queued["current_person_id"] == queued["person_id"] == first_person(FATHER)
        stored = conn.execute("SELECT current_person_id FROM empi.reviews").fetchone()
        assert stored == (first_person(SON),)  # the request's, merged away
        _batches(conn, [son_answer(DIFFERENT, 9)])
        assert _review(conn) == ("superseded", "ADM-9")
        assert conn.execute("SELECT count(*) FROM empi.apart").fetchone() == (0,)
        assert _person(conn, SON) == _person(conn, FATHER)


def test_a_pair_kept_apart_stays_apart_across_a_merge_and_a_reload(
    scratch_database_url: str,
) -> None:
    apply_migrations(scratch_database_url)
    duplicate = registered(DUPLICATE, "duplicate", 4, name="某某", **BARE)
    retired = source_merge(DUPLICATE, FATHER, "father retired", 5)
    phone = updated(SON, "phone", 6, phone="13900000000")
    with psycopg.connect(scratch_database_url) as conn:
        _batches(conn, [father(), duplicate, son()], [son_answer(DIFFERENT, 3)], [retired])
        # A new worker (an index reloaded from the tables) decides as the running one would.
        [again] = _batches(conn, [phone])
        assert again == []
        assert _reloaded(conn).apart == {(SON, first_person(DUPLICATE))}
        row = conn.execute("SELECT institution, local_id, person_id FROM empi.apart").fetchall()
        assert row == [(*SON, first_person(FATHER))]  # the row: the person the answer found


def test_the_queue_shows_the_candidate_person_of_now(scratch_database_url: str) -> None:
    apply_migrations(scratch_database_url)
    duplicate = registered(DUPLICATE, "duplicate", 4, name="某某", **BARE)
    retired = source_merge(DUPLICATE, FATHER, "father retired", 5)
    with psycopg.connect(scratch_database_url) as conn:
        _batches(conn, [father(), duplicate, son()], [retired])
        [queued] = open_reviews(conn)  # the father's person followed to its survivor
        assert queued["person_id"] == first_person(DUPLICATE)
        assert queued["current_person_id"] == first_person(SON)
        assert open_reviews(conn, institution=SON[0]) == [queued]
        assert open_reviews(conn, institution="439901-S01") == []
        [merged] = _batches(conn, [son_answer(SAME, 9)])
        assert [d.person_id for d in merged] == [first_person(DUPLICATE)]
