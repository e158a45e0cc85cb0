"""What the shared record tells reporting about repeat tests: each checked order, no person.

An order is *checked* when it is an order of a test in the recognition table, placed, by a
local patient linked to a person. Its check says whether it repeats another member's final
result still valid when it was placed (`recognition.possible_repeat`: flagged) and whether it
was then cancelled (the result reused). A check depends on the person's results at other
members and on the index's links and merges, so the record store re-checks every order of each
person a batch touches and publishes what changed (docs/reporting.md, "Derived repeat checks"):
one revision per changed check on `<consortium>.derived.repeats.v1`, through the outbox in the
batch's transaction; an order no longer checked gets a revision with present = false.

A revision holds a name-based check id, the ordering member, the placing instant and the two
flags: never a person id, local id or order id. Checks depend only on stored facts (results'
times against the order's placing time, never the wall clock), so a rebuild derives the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Connection, Cursor, sql

from events.derived import RepeatCheckDerived
from projections.record.entries import EntryKind
from projections.record.recognition import (
    OrderedTest,
    PriorResult,
    RecognitionTable,
    possible_repeat,
)

# The stable views readers use; the store passes its generation's schema instead.
RECORD_VIEWS = "record"

_CHECK_IDS = uuid.UUID("6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f")
_REVISION_IDS = uuid.UUID("7d2e3f4a-5b6c-4d7e-9f8a-0b1c2d3e4f5a")
# The outbox's `view` of derived checks (the relay's name for the topic).
VIEW = "repeats"


def check_id(institution: str, order_id: str) -> UUID:
    """The published id of a member's order: name-based, so every revision has the same key."""
    return uuid.uuid5(_CHECK_IDS, f"{institution}|{order_id}")


@dataclass(frozen=True, slots=True, order=True)
class Check:
    """One checked order as reporting sees it (order_id stays in the record's own table)."""

    institution: str
    order_id: str
    ordered_at: datetime
    flagged: bool
    reused: bool

    @property
    def key(self) -> tuple[str, str]:
        """The order it is the check of."""
        return (self.institution, self.order_id)


def checks_of(
    orders: Iterable[OrderedTest], priors: Sequence[PriorResult], table: RecognitionTable
) -> list[Check]:
    """The checks of one person's orders against the person's results at every member."""
    found = []
    for order in orders:
        if order.placed_at is None or table.test(order.system, order.code) is None:
            continue
        repeat = possible_repeat(order, priors, table)
        flagged = repeat is not None
        reused = repeat is not None and repeat.avoided
        found.append(Check(order.institution, order.order_id, order.placed_at, flagged, reused))
    return sorted(found)


_PRIORS = """
SELECT r.institution, r.result_id, r.local_id, r.kind, r.code_system, r.code,
       o.code_system, o.code, r.content ->> 'modality', r.content ->> 'body_site', r.status,
       r.effective_at, r.reported_at
FROM {0}.results r
JOIN unnest(%b::text[], %b::text[]) AS x(institution, local_id) USING (institution, local_id)
LEFT JOIN {0}.orders o ON o.institution = r.institution AND o.order_id = r.order_id
WHERE r.status = 'FINAL'
"""

_ORDERS = """
SELECT o.institution, o.order_id, o.local_id, o.code_system, o.code, o.placed_at, o.status
FROM {0}.orders o
JOIN unnest(%b::text[], %b::text[]) AS x(institution, local_id) USING (institution, local_id)
WHERE o.placed_at IS NOT NULL
"""

Reader = Connection[Any] | Cursor[Any]


def _run(db: Reader, query: str, schema: str, patients: Sequence[tuple[str, str]]) -> list[Any]:
    statement = sql.SQL(query).format(sql.Identifier(schema))
    args = ([p[0] for p in patients], [p[1] for p in patients])
    return db.execute(statement, args).fetchall()


def read_priors(db: Reader, schema: str, patients: Sequence[tuple[str, str]]) -> list[PriorResult]:
    """The final results of these local patients as recognition sees them."""
    return [
        PriorResult(
            institution=r[0],
            result_id=r[1],
            local_id=r[2],
            kind="IMAGING" if r[3] == EntryKind.IMAGING_REPORT.value else "LAB",
            codes=frozenset(
                (s, c) for s, c in ((r[4], r[5]), (r[6], r[7])) if s is not None and c is not None
            ),
            modality=r[8],
            body_site=r[9],
            status=r[10],
            effective_at=r[11],
            reported_at=r[12],
        )
        for r in _run(db, _PRIORS, schema, patients)
    ]


def read_orders(db: Reader, schema: str, patients: Sequence[tuple[str, str]]) -> list[OrderedTest]:
    """The placed orders of these local patients as recognition sees them."""
    return [OrderedTest(*r) for r in _run(db, _ORDERS, schema, patients)]


def revision(
    check: Check, present: bool, generation: int, sequence: int, recorded_at: datetime
) -> RepeatCheckDerived:
    """The derived event of one revision; its id is a function of the check and its place."""
    cid = check_id(check.institution, check.order_id)
    event_id = uuid.uuid5(_REVISION_IDS, f"{cid}|{generation}|{sequence}")
    envelope = {
        "event_id": event_id,
        "event_type": RepeatCheckDerived.event_type,
        "occurred_at": check.ordered_at,
        "recorded_at": max(recorded_at, check.ordered_at),
        "source": check.institution,
    }
    fields = {
        "envelope": envelope,
        "check_id": cid,
        "institution": check.institution,
        "ordered_at": check.ordered_at,
        "flagged": check.flagged,
        "reused": check.reused,
        "present": present,
        "generation": generation,
        "sequence": sequence,
    }
    # The facts were validated when they were published: a replay's checks only.
    return RepeatCheckDerived.model_validate(fields, context={"replay": True})


def recheck(
    cur: Cursor[Any],
    schema: str,
    persons: Iterable[str],
    patients: Iterable[tuple[str, str]],
    table: RecognitionTable,
) -> None:
    """Re-check every order of these persons (and of these local patients), under person locks,
    and put a revision of each check that changed, appeared or went in the outbox.

    `persons` are the ids a batch touched (before and after its links and merges); each stands
    for its whole member set (the ids merged into the same survivor), and every id of the set is
    locked, in order, before anything is read: a batch touching the person at another member
    waits, and then reads what this one wrote."""
    from projections import outbox
    from projections.persons import members, resolve

    s = sql.Identifier(schema)
    patients = sorted(set(patients))
    persons = sorted(set(persons))
    survivors = merge_survivors(cur, schema, persons)
    touched = {m for p in persons for m in members(survivors, p)}
    if not touched and not patients:
        return
    _lock_persons(cur, s, sorted(touched | {resolve(survivors, p) for p in touched}))
    # A merge may have committed while this batch waited.
    survivors = merge_survivors(cur, schema, sorted(touched))
    wanted = {resolve(survivors, p) for p in touched}
    ids = sorted({m for p in wanted for m in members(survivors, p)})
    linked = cur.execute(
        sql.SQL(
            "SELECT person_id, institution, local_id FROM {}.local_patients"
            " WHERE person_id = ANY(%s)"
        ).format(s),
        (ids,),
    ).fetchall()
    patients_of: dict[str, list[tuple[str, str]]] = {}
    for p, institution, local_id in linked:
        patients_of.setdefault(resolve(survivors, p), []).append((institution, local_id))
    owner = {lp: p for p, lps in patients_of.items() for lp in lps}
    every = sorted(owner)
    priors_of: dict[str, list[PriorResult]] = {}
    for prior in read_priors(cur, schema, every):
        priors_of.setdefault(owner[(prior.institution, prior.local_id)], []).append(prior)
    orders_of: dict[str, list[OrderedTest]] = {}
    for order in read_orders(cur, schema, every):
        orders_of.setdefault(owner[(order.institution, order.local_id)], []).append(order)
    now: dict[tuple[str, str], tuple[Check, str, str]] = {}
    for person, orders in orders_of.items():
        local = {o.order_id: o.local_id for o in orders}
        for c in checks_of(orders, priors_of.get(person, []), table):
            now[c.key] = (c, local[c.order_id], person)
    before = _stored(cur, s, sorted(touched | set(ids)), patients, sorted(now))
    _write(cur, s, [k for k in before if k not in now], [now[k] for k in sorted(now)])
    revised = sorted(
        outbox.changes(
            {k: v for k, (v, _, _) in before.items()}, {k: c for k, (c, _, _) in now.items()}
        )
    )
    outbox.announce(cur, schema, VIEW, revised, revision)


def merge_survivors(db: Reader, schema: str, ids: Sequence[str]) -> dict[str, str]:
    """The merges (retired → survivor) of the merge groups these ids belong to, and no others
    (projections/persons.merge_group), walked from the client, one indexed statement per step.
    The one way the record reads merges: the re-checks (the store's schema) and the reads
    (`RECORD_VIEWS`) both resolve ids with `persons.resolve`/`members` over this map.
    (A recursive CTE did it in one, but its row estimate grows with the table until PostgreSQL
    JIT-compiles it: 130–190 ms per batch with 200,000 merges, for a 15 ms query.)"""
    from projections.persons import merge_group

    query = sql.SQL(
        "SELECT retired_person_id, survivor_person_id FROM {}.merged_persons"
        " WHERE survivor_person_id IS NOT NULL"
        " AND (retired_person_id = ANY(%(ids)s) OR survivor_person_id = ANY(%(ids)s))"
    ).format(sql.Identifier(schema))
    return merge_group(ids, lambda frontier: db.execute(query, {"ids": frontier}).fetchall())


def _lock_persons(cur: Cursor[Any], s: sql.Identifier, ids: list[str]) -> None:
    cur.execute(
        sql.SQL(
            "INSERT INTO {}.person_locks (person_id) SELECT p FROM unnest(%b::text[]) AS p"
            " ORDER BY p ON CONFLICT DO NOTHING"
        ).format(s),
        (ids,),
    )
    cur.execute(
        sql.SQL(
            "SELECT 1 FROM {}.person_locks WHERE person_id = ANY(%s) ORDER BY person_id FOR UPDATE"
        ).format(s),
        (ids,),
    )


def _stored(
    cur: Cursor[Any],
    s: sql.Identifier,
    ids: list[str],
    patients: Sequence[tuple[str, str]],
    orders: Sequence[tuple[str, str]],
) -> dict[tuple[str, str], tuple[Check, str, str]]:
    """The stored checks of these persons, of these local patients and of these orders."""
    rows = cur.execute(
        sql.SQL(
            "SELECT institution, order_id, ordered_at, flagged, reused, local_id, person_id"
            " FROM {0}.repeat_checks WHERE person_id = ANY(%s)"
            " UNION SELECT c.institution, c.order_id, c.ordered_at, c.flagged, c.reused,"
            " c.local_id, c.person_id FROM {0}.repeat_checks c"
            " JOIN unnest(%b::text[], %b::text[]) AS x(institution, local_id)"
            " USING (institution, local_id)"
            " UNION SELECT c.institution, c.order_id, c.ordered_at, c.flagged, c.reused,"
            " c.local_id, c.person_id FROM {0}.repeat_checks c"
            " JOIN unnest(%b::text[], %b::text[]) AS x(institution, order_id)"
            " USING (institution, order_id)"
        ).format(s),
        (
            ids,
            [p[0] for p in patients],
            [p[1] for p in patients],
            [o[0] for o in orders],
            [o[1] for o in orders],
        ),
    ).fetchall()
    return {(r[0], r[1]): (Check(*r[:5]), r[5], r[6]) for r in rows}


def _write(
    cur: Cursor[Any],
    s: sql.Identifier,
    gone: Sequence[tuple[str, str]],
    now: Sequence[tuple[Check, str, str]],
) -> None:
    if gone:
        cur.execute(
            sql.SQL(
                "DELETE FROM {}.repeat_checks c USING unnest(%b::text[], %b::text[])"
                " AS x(institution, order_id)"
                " WHERE c.institution = x.institution AND c.order_id = x.order_id"
            ).format(s),
            ([g[0] for g in gone], [g[1] for g in gone]),
        )
    if not now:
        return
    cur.execute(
        sql.SQL(
            "INSERT INTO {}.repeat_checks"
            " (institution, order_id, local_id, person_id, ordered_at, flagged, reused)"
            " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[],"
            " %b::timestamptz[], %b::boolean[], %b::boolean[])"
            " ON CONFLICT (institution, order_id) DO UPDATE SET local_id = excluded.local_id,"
            " person_id = excluded.person_id, ordered_at = excluded.ordered_at,"
            " flagged = excluded.flagged, reused = excluded.reused"
        ).format(s),
        (
            [c.institution for c, _, _ in now],
            [c.order_id for c, _, _ in now],
            [local for _, local, _ in now],
            [person for _, _, person in now],
            [c.ordered_at for c, _, _ in now],
            [c.flagged for c, _, _ in now],
            [c.reused for c, _, _ in now],
        ),
    )
