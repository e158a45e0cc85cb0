"""The index's PostgreSQL state (migrations 0004, 0006): apply batches effectively once, outbox.

A worker keeps the index in memory and checks the `state` row's version under a row lock at every
batch: the cache is used only if no other worker wrote since (and the schema was not swapped by a
rebuild). Decisions go to `outbox` in the same transaction as the state and the consumed event
ids; `relay_outbox` publishes them. The live index is schema `empi`; a rebuild writes another
schema (`generations.py`), so the batch SQL names tables through the transaction's search_path.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from events.codec import Codec
from events.envelope import Event
from events.patient import PatientDemographicsUpdated, PatientIdentifiersMerged, PatientRegistered
from events.person import (
    MatchReviewDecided,
    MatchReviewRequested,
    PersonLinked,
    PersonsMerged,
    PersonUnlinked,
    ReviewDecision,
)
from events.registry import from_record
from projections.empi.encoding import encoded
from projections.empi.identity import (
    Demographics,
    DemographicsChange,
    HashedId,
    RecordKey,
    identity_of,
)
from projections.empi.index import (
    Decided,
    IndexConfig,
    IndexState,
    Outcome,
    Review,
    Superseded,
    apply_outcome,
    current_person,
    new_state,
    open_review,
)
from projections.empi.matcher import blocking_keys
from projections.empi.relay import StoredDecision
from projections.frame.claims import Claims, ClaimTable, claim, content_digest

LIVE_SCHEMA = "empi"
log = logging.getLogger(__name__)
Cursor = psycopg.Cursor[Any]


class EmpiStore:
    """Applies batches of events to the index inside PostgreSQL transactions."""

    def __init__(self, config: IndexConfig, codec: Codec, schema: str = LIVE_SCHEMA) -> None:
        self.config = config
        self.codec = codec
        self.schema = schema
        self._state: IndexState | None = None
        # (the state table's oid, its version): a rebuild's switch swaps the table under the name.
        self._version: tuple[int, int] = (0, -1)

    def apply_batch(
        self,
        conn: psycopg.Connection[Any],
        events: Sequence[Event],
        digests: Sequence[int] | None = None,
        reused: list[int] | None = None,
    ) -> list[Event]:
        """Apply the events not yet consumed, in order; return the decisions they caused.

        `digests` are the events' records' content digests (`claims.content_digest`; without
        them, each event's own encoding): the positions of events whose id was consumed before
        from other content are added to `reused`, for the caller to dead-letter."""
        try:
            with conn.transaction(), conn.cursor() as cur:
                use_schema(cur, self.schema)
                row = cur.execute("SELECT tableoid, version FROM state FOR UPDATE").fetchone()
                version = (int(row[0]), int(row[1])) if row else (0, 0)
                if self._state is None or version != self._version:
                    self._state = load_state(cur, self.config)
                state, decisions = self._state, []
                claims = _claimed(cur, self.codec, events, digests)
                claimed = [events[i] for i in claims.new]
                if reused is not None:
                    reused += claims.reused
                later = _Later()
                # The writes need no results: pipelined, they cost no round trip each (a third
                # of a batch's time before), and an error still surfaces before the commit.
                with conn.pipeline():
                    for event in claimed:
                        parked = _had_parked(state, event)
                        state, outcome = apply_outcome(state, event)
                        _write(cur, state, event, outcome, later, parked)
                        decisions += outcome.events
                    later.flush(cur, state, self.codec)
                    cur.execute("UPDATE state SET version = version + 1")
                self._state, self._version = state, (version[0], version[1] + 1)
        except BaseException:
            self._state = None  # the in-memory index may hold half of a rolled-back batch
            raise
        return decisions


def use_schema(cur: Cursor, schema: str) -> None:
    """Name the index's tables in this schema until the transaction ends."""
    cur.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(sql.Identifier(schema)))


# Claims in `consumed` of the transaction's schema (frame/claims.py): the insert returns only the
# ids it did not insert (consumed before).
_CLAIMS = ClaimTable(
    "WITH wanted AS (SELECT * FROM unnest(%s::uuid[], %s::bigint[]) AS w(id, digest)),"
    " claimed AS (INSERT INTO consumed (event_id, content_digest) SELECT id, digest FROM wanted"
    "  ORDER BY id ON CONFLICT DO NOTHING RETURNING event_id)"
    " SELECT id FROM wanted EXCEPT ALL SELECT event_id FROM claimed",
    "SELECT event_id, content_digest FROM consumed WHERE event_id = ANY(%s::uuid[])",
)


def _claimed(
    cur: Cursor, codec: Codec, events: Sequence[Event], digests: Sequence[int] | None
) -> Claims[int]:
    """The positions of the events whose ids this index had not consumed yet (redelivery,
    retries), in order, and of those whose ids it consumed from other content."""
    if digests is None:
        digests = [content_digest(codec.encode_event(event)) for event in events]
    items = [
        (event.envelope.event_id, d, i)
        for i, (event, d) in enumerate(zip(events, digests, strict=True))
    ]
    return claim(cur, _CLAIMS, items)


# --- writing what one event changed ------------------------------------------------------------


@dataclass
class _Later:
    """The batch's most frequent writes, made once at its end in one statement each.

    Per event they were three statements (a record's upsert, a decision's outbox row, the
    parked updates' delete), and psycopg's per-statement work was ~40 % of a batch. A record's
    row is written once with its final state (each write wrote the state at that point and the
    last one stood); outbox rows keep their order (seq follows the decisions' order).
    """

    touched: dict[RecordKey, None] = field(default_factory=dict)
    outbox: list[Event] = field(default_factory=list)

    def flush(self, cur: Cursor, state: IndexState, codec: Codec) -> None:
        rows = [(key, state.person_of[key]) for key in self.touched if key in state.person_of]
        if rows:
            cur.execute(
                "INSERT INTO records (institution, local_id, person_id, demographics,"
                " indexed_seq, assigned_seq)"
                # One jsonb array for the batch's demographics: an array of jsonb values was
                # dumped element by element (~1 s of 5 in a 4,891-record profile).
                " SELECT * FROM ROWS FROM (unnest(%s::text[]), unnest(%s::text[]),"
                " unnest(%s::uuid[]), jsonb_array_elements(%s::jsonb), unnest(%s::bigint[]),"
                " unnest(%s::bigint[])) ON CONFLICT (institution, local_id)"
                " DO UPDATE SET person_id = excluded.person_id,"
                " demographics = excluded.demographics, indexed_seq = excluded.indexed_seq,"
                " assigned_seq = excluded.assigned_seq",
                (
                    [key[0] for key, _ in rows],
                    [key[1] for key, _ in rows],
                    [person for _, person in rows],
                    Jsonb([_demographics_json(state.demographics[key]) for key, _ in rows]),
                    [state.indexed_at[key] for key, _ in rows],
                    [state.assigned_at[key] for key, _ in rows],
                ),
            )
        if self.outbox:
            cur.execute(
                "INSERT INTO outbox (event_id, person_id, event_type, payload)"
                " SELECT e, p, t, v FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::bytea[])"
                " WITH ORDINALITY AS x(e, p, t, v, n) ORDER BY n ON CONFLICT (event_id) DO NOTHING",
                (
                    [d.envelope.event_id for d in self.outbox],
                    [uuid.UUID(d.envelope.patient_local_id) for d in self.outbox],
                    [d.event_type for d in self.outbox],
                    [encoded(codec, d) for d in self.outbox],
                ),
            )


def _had_parked(state: IndexState, event: Event) -> bool:
    """Whether a registration finds updates parked for its record (rows to delete)."""
    if not isinstance(event, PatientRegistered):
        return False
    return (event.envelope.source, event.envelope.patient_local_id or "") in state.parked_updates


def _write(
    cur: Cursor,
    state: IndexState,
    cause: Event,
    outcome: Outcome,
    later: _Later,
    parked: bool,
) -> None:
    touched = later.touched
    source, local_id = cause.envelope.source, cause.envelope.patient_local_id or ""
    if isinstance(cause, PatientRegistered | PatientDemographicsUpdated):
        touched[(source, local_id)] = None
    if parked:  # the parked table holds what state.parked_updates held before the event
        cur.execute(
            "DELETE FROM parked WHERE institution = %s AND local_id = %s", (source, local_id)
        )
    parked_changes = state.parked_updates.get((source, local_id))
    if isinstance(cause, PatientDemographicsUpdated) and parked_changes:
        # Parked by this event (a known record's update is applied, never parked): its change,
        # last in the list, as the index keeps it — the resident id hashed.
        change = {_CHANGE: _change_json(parked_changes[-1])}
        _park(cur, cause.envelope.event_id, source, local_id, None, change)
    if isinstance(cause, PatientIdentifiersMerged):
        _partners(cur, source, cause.surviving_local_id, cause.retired_local_id)
        _partners(cur, source, cause.retired_local_id, cause.surviving_local_id)
    waiting = state.parked_decisions  # an answer whose request is still to come
    if isinstance(cause, MatchReviewDecided) and waiting.get(cause.review_id) is cause:
        _park(
            cur, cause.envelope.event_id, None, None, cause.review_id, cause.model_dump(mode="json")
        )
    for decision in outcome.events:
        _decision(cur, state, decision, touched)
        later.outbox.append(decision)
    # After the decisions: a parked answer applied now closes the review its request just opened.
    for decided in outcome.decided:
        _decided(cur, decided)
    for superseded in outcome.superseded:
        _superseded(cur, superseded)
    for ignored in outcome.ignored:
        log.warning(
            "review %s: answer %s (%s) ignored, the review was answered already or it decides"
            " nothing",
            ignored.review_id,
            ignored.envelope.event_id,
            ignored.decision,
        )


def _decision(
    cur: Cursor, state: IndexState, decision: Event, touched: dict[RecordKey, None]
) -> None:
    if isinstance(decision, PersonLinked | PersonUnlinked):
        touched[(decision.institution, decision.local_id)] = None
    elif isinstance(decision, PersonsMerged):
        cur.execute(
            "INSERT INTO merged_persons (retired_person_id, person_id) VALUES (%s, %s)"
            " ON CONFLICT (retired_person_id) DO UPDATE SET person_id = excluded.person_id",
            (decision.retired_person_id, decision.person_id),
        )
        touched.update(dict.fromkeys(state.members.get(decision.person_id, {})))
    elif isinstance(decision, MatchReviewRequested):
        cur.execute(
            "INSERT INTO reviews (review_id, institution, local_id, person_id,"
            " current_person_id, candidate_institution, candidate_local_id, score, agreement,"
            " requested_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (review_id) DO NOTHING",
            (
                decision.review_id, decision.institution, decision.local_id, decision.person_id,
                decision.current_person_id, decision.candidate_institution,
                decision.candidate_local_id, decision.score,
                Jsonb([a.model_dump(mode="json") for a in decision.agreement]),
                decision.envelope.occurred_at,
            ),
        )  # fmt: skip
        cur.execute("DELETE FROM parked WHERE review_id = %s", (decision.review_id,))


def _decided(cur: Cursor, decided: Decided) -> None:
    decision = decided.decision
    status = {
        ReviewDecision.SAME_PERSON: "same_person",
        ReviewDecision.DIFFERENT_PERSONS: "different_persons",
    }[decision.decision]
    cur.execute(
        "UPDATE reviews SET status = %s, decided_by = %s, decided_at = %s, note = %s"
        " WHERE review_id = %s AND status = 'open'",
        (
            status,
            decision.decided_by,
            decision.envelope.occurred_at,
            decision.note,
            decision.review_id,
        ),
    )
    if decided.apart is not None:
        (institution, local_id), person = decided.apart
        cur.execute(
            "INSERT INTO apart VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            (institution, local_id, person),
        )


def _superseded(cur: Cursor, superseded: Superseded) -> None:
    answer = superseded.answer
    if answer is not None:
        log.warning(
            "review %s: answer %s (%s) not applied, record and candidate are one person now",
            superseded.review_id,
            answer.envelope.event_id,
            answer.decision,
        )
    cur.execute(
        "UPDATE reviews SET status = 'superseded', decided_by = %s, decided_at = %s, note = %s"
        " WHERE review_id = %s AND status = 'open'",
        (
            None if answer is None else answer.decided_by,
            None if answer is None else answer.envelope.occurred_at,
            None if answer is None else answer.note,
            superseded.review_id,
        ),
    )


def _partners(cur: Cursor, institution: str, local_id: str, partner: str) -> None:
    cur.execute(
        "INSERT INTO source_partners (institution, local_id, partner_local_id)"
        " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
        (institution, local_id, partner),
    )


def _park(
    cur: Cursor,
    event_id: uuid.UUID,
    institution: str | None,
    local_id: str | None,
    review: uuid.UUID | None,
    data: dict[str, Any],
) -> None:
    cur.execute(
        "INSERT INTO parked (event_id, institution, local_id, review_id, event)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING",
        (event_id, institution, local_id, review, Jsonb(data)),
    )


# A parked update's row: {"demographics_change": ...}, the change as the index keeps it. A review
# answer's row is the answer's JSON; so was an update's before 2026-12-08 (resident id in clear).
_CHANGE = "demographics_change"


def _hashed_json(hashed: HashedId | None) -> dict[str, Any] | None:
    if hashed is None:
        return None
    return {"full": hashed.full, "first17": hashed.first17, "valid": hashed.valid}


def _change_json(c: DemographicsChange) -> dict[str, Any]:
    return {
        "name": c.name,
        "sex": c.sex,
        "birth_date": None if c.birth_date is None else c.birth_date.isoformat(),
        "resident_id": _hashed_json(c.resident_id),
        "medical_insurance_number": c.medical_insurance_number,
        "phone": c.phone,
        "address": c.address,
        "township_division_code": c.township_division_code,
    }


def _change_of(data: dict[str, Any]) -> DemographicsChange:
    hashed, born = data["resident_id"], data["birth_date"]
    return DemographicsChange(
        name=data["name"],
        sex=data["sex"],
        birth_date=None if born is None else date.fromisoformat(born),
        resident_id=None if hashed is None else HashedId(**hashed),
        medical_insurance_number=data["medical_insurance_number"],
        phone=data["phone"],
        address=data["address"],
        township_division_code=data["township_division_code"],
    )


def _demographics_json(d: Demographics) -> dict[str, Any]:
    hashed = d.resident_id
    return {
        "name": d.name,
        "sex": d.sex,
        "birth_date": d.birth_date.isoformat(),
        "resident_id": _hashed_json(hashed),
        "medical_insurance_number": d.medical_insurance_number,
        "phone": d.phone,
        "address": d.address,
        "township_division_code": d.township_division_code,
    }


def _demographics_of(data: dict[str, Any]) -> Demographics:
    hashed = data["resident_id"]
    return Demographics(
        name=data["name"],
        sex=data["sex"],
        birth_date=date.fromisoformat(data["birth_date"]),
        resident_id=None if hashed is None else HashedId(**hashed),
        medical_insurance_number=data["medical_insurance_number"],
        phone=data["phone"],
        address=data["address"],
        township_division_code=data["township_division_code"],
    )


# --- loading -----------------------------------------------------------------------------------


def load_state(cur: Cursor, config: IndexConfig) -> IndexState:
    """The index as PostgreSQL holds it (schema of `use_schema`), blocks and members in order."""
    state = new_state(config)
    rows = cur.execute(
        "SELECT institution, local_id, person_id, demographics, indexed_seq, assigned_seq"
        " FROM records"
    ).fetchall()
    for institution, local_id, person, data, indexed, assigned in sorted(rows, key=lambda r: r[4]):
        key = (institution, local_id)
        demographics = _demographics_of(data)
        state.demographics[key] = demographics
        identity = state.identities[key] = identity_of(demographics)
        state.indexed_at[key], state.assigned_at[key] = indexed, assigned
        state.person_of[key] = person
        for block in blocking_keys(identity):
            state.blocks.setdefault(block, {})[key] = None
    for institution, local_id, person, *_ in sorted(rows, key=lambda r: r[5]):
        state.members.setdefault(person, {})[(institution, local_id)] = None
    state.serial = max((max(r[4], r[5]) for r in rows), default=0)
    state.merged_into.update(cur.execute("SELECT * FROM merged_persons").fetchall())
    for institution, local_id, partner in cur.execute(
        "SELECT institution, local_id, partner_local_id FROM source_partners ORDER BY seq"
    ):
        state.source_partners.setdefault((institution, local_id), []).append((institution, partner))
    for review_id, institution, local_id, person in cur.execute(
        "SELECT review_id, institution, local_id, person_id FROM reviews"
        " WHERE status = 'open' ORDER BY requested_at, review_id"
    ):
        open_review(state, Review(review_id, (institution, local_id), person))
    state.decided_reviews.update(
        r for (r,) in cur.execute("SELECT review_id FROM reviews WHERE status <> 'open'")
    )
    apart = cur.execute("SELECT institution, local_id, person_id FROM apart").fetchall()
    # A row names the person as the answer found it; the index holds the person it is now.
    state.apart.update(
        ((institution, local_id), current_person(state, person))
        for institution, local_id, person in apart
    )
    for institution, local_id, data in cur.execute(
        "SELECT institution, local_id, event FROM parked ORDER BY seq"
    ):
        _unpark(state, (institution, local_id), data)
    return state


def _unpark(state: IndexState, key: RecordKey, data: dict[str, Any]) -> None:
    change = data.get(_CHANGE)
    if change is not None:
        state.parked_updates.setdefault(key, []).append(_change_of(change))
        return
    event = from_record(data)
    if isinstance(event, PatientDemographicsUpdated):
        # Parked before 2026-12-08, as the event (resident id in clear): hashed as it is read,
        # applied as before; its row goes when its registration comes (or a rebuild rewrites it).
        key = (event.envelope.source, event.envelope.patient_local_id or "")
        change = DemographicsChange.of(event, state.config.hasher)
        state.parked_updates.setdefault(key, []).append(change)
    elif isinstance(event, MatchReviewDecided):
        state.parked_decisions[event.review_id] = event


# --- reads for the gateway and the relay ------------------------------------------------------


def person_of(conn: psycopg.Connection[Any], institution: str, local_id: str) -> uuid.UUID | None:
    """Re-keying from PostgreSQL: the person id of a member's local patient, if linked."""
    row = conn.execute(
        "SELECT person_id FROM empi.records WHERE institution = %s AND local_id = %s",
        (institution, local_id),
    ).fetchone()
    return None if row is None else uuid.UUID(str(row[0]))


def open_reviews(
    conn: psycopg.Connection[Any], limit: int = 100, institution: str | None = None
) -> list[dict[str, Any]]:
    """The review queue, oldest first; optionally only reviews of one member's records.

    The persons are those of now, as the index will apply an answer: `person_id` the candidate
    person followed through merges, `current_person_id` the record's person (the request's
    ids may have been merged away since)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(
            "WITH RECURSIVE queue AS ("
            "  SELECT * FROM empi.reviews WHERE status = 'open'"
            "  AND (%(institution)s::text IS NULL OR institution = %(institution)s"
            "       OR candidate_institution = %(institution)s)"
            "  ORDER BY requested_at, review_id LIMIT %(limit)s),"
            " chain (review_id, person_id) AS ("
            "  SELECT review_id, person_id FROM queue UNION"
            "  SELECT c.review_id, m.person_id FROM chain c"
            "  JOIN empi.merged_persons m ON m.retired_person_id = c.person_id)"
            " SELECT q.review_id, q.institution, q.local_id,"
            "  (SELECT c.person_id FROM chain c WHERE c.review_id = q.review_id AND NOT EXISTS"
            "   (SELECT FROM empi.merged_persons m WHERE m.retired_person_id = c.person_id))"
            "  AS person_id,"
            "  coalesce(r.person_id, q.current_person_id) AS current_person_id,"
            "  q.candidate_institution, q.candidate_local_id, q.score, q.agreement, q.requested_at"
            " FROM queue q LEFT JOIN empi.records r"
            "  ON r.institution = q.institution AND r.local_id = q.local_id"
            " ORDER BY q.requested_at, q.review_id",
            {"institution": institution, "limit": limit},
        ).fetchall()


def relay_outbox(
    conn: psycopg.Connection[Any],
    publish: Callable[[list[StoredDecision]], object],
    limit: int = 2_000,
) -> int:
    """Publish unpublished decisions in order, as stored, and mark them; how many were published.

    Rows are marked by event id, not seq: seq values are a generation's own (a rebuilt outbox
    numbers the same decisions otherwise), and a switch waits for this transaction (it locks
    the live outbox), so the marks always land in the outbox the rows were read from."""
    with conn.transaction(), conn.cursor() as cur:
        rows = cur.execute(
            "SELECT event_id, person_id, event_type, payload FROM empi.outbox"
            " WHERE published_at IS NULL ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
            (limit,),
        ).fetchall()
        if not rows:
            return 0
        publish([StoredDecision(e, p, t, bytes(v)) for e, p, t, v in rows])
        cur.execute(
            "UPDATE empi.outbox SET published_at = now() WHERE event_id = ANY(%s::uuid[])",
            ([e for e, *_ in rows],),
        )
    return len(rows)
