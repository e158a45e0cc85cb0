"""The transfer projection's PostgreSQL store: local patients as facts, transfers per person.

The index's merges are pseudo-patient rows of the same `patients` table: institution MERGES
(empty, which no member code is), local id the retired person id, person_id the survivor, facts
the merge decisions. A patient row's person_id is the person its links name (perhaps retired);
the store resolves it through the merges when it re-derives, so nothing else is rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import Cursor, sql

from projections import outbox
from projections.persons import members, merge_group
from projections.transfers import derived
from projections.transfers.persons import LocalPatient
from projections.transfers.stays import (
    MERGES,
    Fact,
    Patient,
    Route,
    Transfer,
    merge_routes,
    transfers_of_persons,
)

_TRANSFER_COLUMNS = (
    "transfer_id",
    "person_id",
    "from_institution",
    "from_patient_local_id",
    "from_encounter_id",
    "discharged_at",
    "discharge_disposition",
    "to_institution",
    "to_patient_local_id",
    "to_encounter_id",
    "admitted_at",
    "admission_source",
    "referred",
    "referral_id",
)


def _patient(institution: str, local_id: str, facts: list[Any]) -> Patient:
    return Patient(institution, local_id, tuple(Fact.from_json(f) for f in facts))


class TransferStore:
    """Keeps each local patient's facts; re-derives the transfers of every person they touch.

    Lock order in a batch: patient rows (the frame), then referral route rows, then person
    rows, each sorted; a worker that changes a person's patients always re-derives the person
    under its lock, so the last one to commit has seen every other's rows.

    Merges: a merge's pseudo-patient row (MERGES, retired id) is a patient row, locked by the
    frame like any other. A person stands for its merge group: re-deriving it locks the person
    rows of every id that resolves to the same survivor (the ids a patient row may name), in
    sorted order, then reads the merges again; when a merge committed meanwhile grew the group,
    the new ids are locked too (after the first ones: the one exception to sorted person locks;
    a deadlock it may cause is retried by the frame) until the merges read match the locks.
    Only then are the patients read. So a merge (which locks the retired id and its survivors)
    and a link to a retired id (which locks it and the survivor's group) meet on a person row,
    and the last to commit derives the survivor from both: a merge moves the patients named by
    the retired id to the survivor, a link to a retired id lands on the survivor, and the
    retired id keeps no transfers.
    """

    def lock(
        self, cur: Cursor[Any], schema: str, keys: Sequence[LocalPatient]
    ) -> dict[LocalPatient, Patient]:
        """Create placeholder rows for new local patients, then lock them in key order."""
        if not keys:
            return {}
        s = sql.Identifier(schema)
        institutions, locals_ = [k[0] for k in keys], [k[1] for k in keys]
        cur.execute(
            sql.SQL(
                "INSERT INTO {}.patients (institution, local_id)"
                " SELECT i, l FROM unnest(%s::text[], %s::text[]) AS x(i, l) ORDER BY i, l"
                " ON CONFLICT DO NOTHING"
            ).format(s),
            (institutions, locals_),
        )
        rows = cur.execute(
            sql.SQL(
                "SELECT p.institution, p.local_id, p.facts FROM {}.patients p"
                " JOIN unnest(%s::text[], %s::text[]) AS x(institution, local_id)"
                " USING (institution, local_id)"
                " ORDER BY p.institution, p.local_id FOR UPDATE OF p"
            ).format(s),
            (institutions, locals_),
        ).fetchall()
        return {(i, lid): _patient(i, lid, facts) for i, lid, facts in rows}

    def save(
        self,
        cur: Cursor[Any],
        schema: str,
        changed: Mapping[LocalPatient, Patient],
        clock: datetime | None,
    ) -> None:
        """Write the changed patients, then re-derive every person whose transfers may change."""
        if not changed:
            return
        s = sql.Identifier(schema)
        # Before: the persons the patients named (they may lose stays), the survivors the
        # merges named (they may lose the retired person's patients).
        persons = _previous_persons(cur, s, changed)
        _write_patients(cur, s, changed.values())
        persons |= _lock_routes(cur, s, changed.values())
        for p in changed.values():
            now = (p.local_id, p.survivor_id) if p.is_merge else (p.person_id,)
            persons |= {i for i in now if i is not None}
        _rederive(cur, schema, sorted(persons), changed)

    def sweep(self, cur: Cursor[Any], schema: str, clock: datetime) -> int:
        """Nothing here depends on the event clock alone."""
        return 0


def _previous_persons(
    cur: Cursor[Any], s: sql.Identifier, changed: Mapping[LocalPatient, Patient]
) -> set[str]:
    """The persons the changed patients named before this batch (they may lose stays), and the
    survivors the changed merges named (they may lose the retired person's patients)."""
    rows = cur.execute(
        sql.SQL(
            "SELECT DISTINCT p.person_id FROM {}.patients p"
            " JOIN unnest(%s::text[], %s::text[]) AS x(institution, local_id)"
            " USING (institution, local_id) WHERE p.person_id IS NOT NULL"
        ).format(s),
        ([k[0] for k in changed], [k[1] for k in changed]),
    ).fetchall()
    return {row[0] for row in rows}


def _write_patients(cur: Cursor[Any], s: sql.Identifier, patients: Iterable[Patient]) -> None:
    rows = [
        {
            "institution": p.institution,
            "local_id": p.local_id,
            "person_id": p.survivor_id if p.is_merge else p.person_id,
            "referral_ids": sorted(str(r) for r in p.referral_ids),
            "facts": [f.to_json() for f in p.facts],
        }
        for p in patients
    ]
    cur.execute(
        sql.SQL(
            "UPDATE {0}.patients p SET person_id = x.person_id, referral_ids = x.referral_ids,"
            " facts = x.facts, projected_at = now()"
            " FROM jsonb_to_recordset(%s::jsonb) AS x(institution text, local_id text,"
            " person_id text, referral_ids uuid[], facts jsonb)"
            " WHERE p.institution = x.institution AND p.local_id = x.local_id"
        ).format(s),
        (json.dumps(rows, ensure_ascii=False),),
    )


def _lock_routes(cur: Cursor[Any], s: sql.Identifier, patients: Iterable[Patient]) -> set[str]:
    """Lock the route rows of the referrals these patients name; set the routes they request.

    Returns the persons whose patients named a referral whose route this batch made known.
    """
    patients = list(patients)
    named = sorted({r for p in patients for r in p.referral_ids})
    if not named:
        return set()
    cur.execute(
        sql.SQL(
            "INSERT INTO {}.referral_routes (referral_id)"
            " SELECT r FROM unnest(%s::uuid[]) AS r ORDER BY r ON CONFLICT DO NOTHING"
        ).format(s),
        (named,),
    )
    cur.execute(
        sql.SQL(
            "SELECT referral_id FROM {}.referral_routes WHERE referral_id = ANY(%s)"
            " ORDER BY referral_id FOR UPDATE"
        ).format(s),
        (named,),
    )
    routes = sorted(merge_routes(patients).values(), key=lambda r: r.referral_id)
    if not routes:
        return set()
    # A repeated referral id keeps the earliest request (requested_at, then event id: the one
    # the referrals board applies), in any order.
    learnt = cur.execute(
        sql.SQL(
            "UPDATE {0}.referral_routes r SET from_institution = x.f, to_institution = x.t,"
            " requested_at = x.at, event_id = x.e"
            " FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::timestamptz[], %s::uuid[])"
            " AS x(id, f, t, at, e)"
            " WHERE r.referral_id = x.id"
            " AND (r.event_id IS NULL OR (r.requested_at, r.event_id) > (x.at, x.e))"
            " RETURNING r.referral_id"
        ).format(s),
        (
            [r.referral_id for r in routes],
            [r.from_institution for r in routes],
            [r.to_institution for r in routes],
            [r.requested_at for r in routes],
            [r.event_id for r in routes],
        ),
    ).fetchall()
    if not learnt:
        return set()
    rows = cur.execute(
        sql.SQL(
            "SELECT DISTINCT person_id FROM {}.patients"
            " WHERE referral_ids && %s::uuid[] AND person_id IS NOT NULL"
            " AND institution <> %s"
        ).format(s),
        ([row[0] for row in learnt], MERGES),
    ).fetchall()
    return {row[0] for row in rows}


def _rederive(
    cur: Cursor[Any],
    schema: str,
    persons: list[str],
    changed: Mapping[LocalPatient, Patient],
) -> None:
    """Lock the persons' merge groups, read all their patients and the routes they name, and
    rewrite the transfers of each group's survivor (and none of its retired ids)."""
    if not persons:
        return
    s = sql.Identifier(schema)
    survivors, ids = _lock_groups(cur, s, persons)
    rows = cur.execute(
        sql.SQL(
            "SELECT institution, local_id, facts FROM {}.patients"
            " WHERE person_id = ANY(%s) AND institution <> %s"
            " ORDER BY institution, local_id"  # one order, though derive_transfers needs none
        ).format(s),
        (ids, MERGES),
    ).fetchall()
    # This batch's patients are already in memory (and equal to what was just written).
    patients = [changed.get((i, lid)) or _patient(i, lid, facts) for i, lid, facts in rows]
    routes = _routes(cur, s, {r for p in patients for r in p.referral_ids})
    transfers = transfers_of_persons(patients, routes, survivors)
    before = _published(cur, s, ids)
    cur.execute(sql.SQL("DELETE FROM {}.transfers WHERE person_id = ANY(%s)").format(s), (ids,))
    if transfers:
        _copy_transfers(cur, s, transfers)
    now = {t.transfer_id: derived.Published.of(t) for t in transfers}
    revised = sorted(outbox.changes(before, now))
    outbox.announce(cur, schema, derived.VIEW, revised, derived.revision)


def _lock_groups(
    cur: Cursor[Any], s: sql.Identifier, persons: list[str]
) -> tuple[dict[str, str], list[str]]:
    """Lock every id of these persons' merge groups; the merges read under the locks, and the
    ids (sorted). Repeated while a merge committed meanwhile adds ids (see TransferStore)."""
    locked: set[str] = set()
    survivors = _survivors(cur, s, persons)
    while True:
        group = {m for p in persons for m in members(survivors, p)}
        missing = sorted(group - locked)
        if not missing:
            return survivors, sorted(locked)
        _lock_persons(cur, s, missing)
        locked.update(missing)
        survivors = _survivors(cur, s, sorted(locked))


def _survivors(cur: Cursor[Any], s: sql.Identifier, ids: Sequence[str]) -> dict[str, str]:
    """The merges (retired → survivor) of the merge groups of these ids, from the merge rows."""
    query = sql.SQL(
        "SELECT local_id, person_id FROM {}.patients"
        " WHERE institution = %(merges)s AND person_id IS NOT NULL"
        " AND (local_id = ANY(%(ids)s) OR person_id = ANY(%(ids)s))"
    ).format(s)
    return merge_group(
        ids, lambda frontier: cur.execute(query, {"merges": MERGES, "ids": frontier}).fetchall()
    )


def _lock_persons(cur: Cursor[Any], s: sql.Identifier, persons: list[str]) -> None:
    """Create the lock rows of these persons (sorted) and lock them in that order."""
    cur.execute(
        sql.SQL(
            "INSERT INTO {}.persons (person_id) SELECT p FROM unnest(%s::text[]) AS p ORDER BY p"
            " ON CONFLICT DO NOTHING"
        ).format(s),
        (persons,),
    )
    cur.execute(
        sql.SQL(
            "SELECT person_id FROM {}.persons WHERE person_id = ANY(%s)"
            " ORDER BY person_id FOR UPDATE"
        ).format(s),
        (persons,),
    )


def _published(
    cur: Cursor[Any], s: sql.Identifier, persons: list[str]
) -> dict[UUID, derived.Published]:
    rows = cur.execute(
        sql.SQL(
            "SELECT transfer_id, from_institution, to_institution, admitted_at, referred"
            " FROM {}.transfers WHERE person_id = ANY(%s)"
        ).format(s),
        (persons,),
    ).fetchall()
    return {row[0]: derived.Published(*row) for row in rows}


def _routes(cur: Cursor[Any], s: sql.Identifier, referral_ids: set[UUID]) -> dict[UUID, Route]:
    if not referral_ids:
        return {}
    rows = cur.execute(
        sql.SQL(
            "SELECT referral_id, from_institution, to_institution, requested_at, event_id"
            " FROM {}.referral_routes WHERE referral_id = ANY(%s) AND event_id IS NOT NULL"
        ).format(s),
        (sorted(referral_ids),),
    ).fetchall()
    return {row[0]: Route(*row) for row in rows}


def _copy_transfers(cur: Cursor[Any], s: sql.Identifier, transfers: Sequence[Transfer]) -> None:
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in _TRANSFER_COLUMNS)
    with cur.copy(sql.SQL("COPY {}.transfers ({}) FROM STDIN").format(s, columns)) as copy:
        for t in transfers:
            copy.write_row(
                [t.referred if c == "referred" else getattr(t, c) for c in _TRANSFER_COLUMNS]
            )
