"""The shared record's PostgreSQL store: links, merges, entries, and the rows folded from them.

Lock order in a batch: local patient and retired person rows (the frame, key order), then the
subject lock rows of the results, orders and consents the batch touches (sorted), then the
person lock rows of every person the batch touches (sorted; checks.recheck). A subject is
re-folded from all its stored statements under its lock, and a person's repeat checks are
re-derived under the locks of all its ids, so concurrent workers cannot lose one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg import Cursor, sql

from events.envelope import CodedConcept
from projections.persons import LinkFact, MergeFact
from projections.record.aggregates import (
    PATIENT,
    PERSON,
    Aggregate,
    LocalPatient,
    RecordKey,
    RetiredPerson,
)
from projections.record.checks import recheck
from projections.record.consents import Consent, current_consent
from projections.record.entries import RESULT_KINDS, Entry, EntryKind
from projections.record.results import CurrentOrder, CurrentResult, current_order, current_result
from projections.record.subjects import CONSENT, ORDER, RESULTS, Subject, subjects_of, touched
from projections.record.tables import ENTRY_COLUMNS

_RESULT_KINDS = sorted(k.value for k in RESULT_KINDS)


class RecordStore:
    """Keeps local patients' links and entries; re-folds the results, orders, consents touched."""

    def lock(
        self, cur: Cursor[Any], schema: str, keys: Sequence[RecordKey]
    ) -> dict[RecordKey, Aggregate]:
        """Create placeholder rows for new keys, lock them in key order, return the aggregates."""
        s = sql.Identifier(schema)
        found: dict[RecordKey, Aggregate] = {}
        patients = [k for k in keys if k[0] == PATIENT]
        if patients:
            args = ([k[1] for k in patients], [k[2] for k in patients])
            cur.execute(
                sql.SQL(
                    "INSERT INTO {}.local_patients (institution, local_id)"
                    " SELECT i, l FROM unnest(%b::text[], %b::text[]) AS x(i, l) ORDER BY i, l"
                    " ON CONFLICT DO NOTHING"
                ).format(s),
                args,
            )
            rows = cur.execute(
                sql.SQL(
                    "SELECT p.institution, p.local_id, p.links FROM {}.local_patients p"
                    " JOIN unnest(%b::text[], %b::text[]) AS x(institution, local_id)"
                    " USING (institution, local_id)"
                    " ORDER BY p.institution, p.local_id FOR UPDATE OF p"
                ).format(s),
                args,
            ).fetchall()
            for institution, local_id, links in rows:
                facts = tuple(LinkFact.from_json(f) for f in links)
                found[(PATIENT, institution, local_id)] = LocalPatient(institution, local_id, facts)
        persons = [k[1] for k in keys if k[0] == PERSON]
        if persons:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {}.merged_persons (retired_person_id)"
                    " SELECT p FROM unnest(%b::text[]) AS p ORDER BY p ON CONFLICT DO NOTHING"
                ).format(s),
                (persons,),
            )
            rows = cur.execute(
                sql.SQL(
                    "SELECT retired_person_id, merges FROM {}.merged_persons"
                    " WHERE retired_person_id = ANY(%s) ORDER BY retired_person_id FOR UPDATE"
                ).format(s),
                (persons,),
            ).fetchall()
            for person_id, merges in rows:
                facts_ = tuple(MergeFact.from_json(m) for m in merges)
                found[(PERSON, person_id, "")] = RetiredPerson(person_id, facts_)
        return found

    def save(
        self,
        cur: Cursor[Any],
        schema: str,
        changed: Mapping[RecordKey, Aggregate],
        clock: datetime | None,
    ) -> None:
        """Write links, merges and new entries; re-fold every subject the new entries touch."""
        s = sql.Identifier(schema)
        patients = [a for a in changed.values() if isinstance(a, LocalPatient)]
        retired = [a for a in changed.values() if isinstance(a, RetiredPerson)]
        # Whose repeat checks this batch may change: the persons before and after it.
        persons = _linked_before(cur, s, patients)
        persons |= {p.person_id for p in patients if p.person_id is not None}
        persons |= {i for r in retired for i in (r.person_id, r.survivor_id) if i is not None}
        persons |= _survivors_before(cur, s, retired)
        if patients:
            _write_links(cur, s, patients)
            _insert_entries(cur, s, [e for p in patients for e in p.added])
        if retired:
            _write_merges(cur, s, retired)
        subjects = touched(e for p in patients for e in p.added)
        if subjects:
            _lock_subjects(cur, s, subjects)
            _refold_results(cur, s, [x for x in subjects if x[0] in RESULTS])
            _refold_orders(cur, s, [x for x in subjects if x[0] == ORDER])
            _refold_consents(cur, s, [x for x in subjects if x[0] == CONSENT])
        if persons or patients:
            from projections.record.queries import default_table

            local = [(p.institution, p.local_id) for p in patients]
            recheck(cur, schema, sorted(persons), local, default_table())

    def sweep(self, cur: Cursor[Any], schema: str, clock: datetime) -> int:
        """Nothing is derived from the clock: consent expiry and validity are read-time checks."""
        return 0


def _linked_before(
    cur: Cursor[Any], s: sql.Identifier, patients: Sequence[LocalPatient]
) -> set[str]:
    """The persons these local patients were linked to before this batch."""
    if not patients:
        return set()
    rows = cur.execute(
        sql.SQL(
            "SELECT DISTINCT person_id FROM {}.local_patients"
            " JOIN unnest(%b::text[], %b::text[]) AS x(institution, local_id)"
            " USING (institution, local_id) WHERE person_id IS NOT NULL"
        ).format(s),
        ([p.institution for p in patients], [p.local_id for p in patients]),
    ).fetchall()
    return {row[0] for row in rows}


def _survivors_before(
    cur: Cursor[Any], s: sql.Identifier, retired: Sequence[RetiredPerson]
) -> set[str]:
    """The persons these retired ids were merged into before this batch."""
    if not retired:
        return set()
    rows = cur.execute(
        sql.SQL(
            "SELECT survivor_person_id FROM {}.merged_persons"
            " WHERE retired_person_id = ANY(%s) AND survivor_person_id IS NOT NULL"
        ).format(s),
        ([r.person_id for r in retired],),
    ).fetchall()
    return {row[0] for row in rows}


def _write_links(cur: Cursor[Any], s: sql.Identifier, patients: Iterable[LocalPatient]) -> None:
    rows = [
        {
            "institution": p.institution,
            "local_id": p.local_id,
            "person_id": p.person_id,
            "links": [f.to_json() for f in p.links],
        }
        for p in patients
    ]
    cur.execute(
        sql.SQL(
            "UPDATE {0}.local_patients p SET person_id = x.person_id, links = x.links,"
            " projected_at = now()"
            " FROM jsonb_to_recordset(%s::jsonb)"
            " AS x(institution text, local_id text, person_id text, links jsonb)"
            " WHERE p.institution = x.institution AND p.local_id = x.local_id"
            " AND (p.person_id IS DISTINCT FROM x.person_id OR p.links <> x.links)"
        ).format(s),
        (json.dumps(rows, ensure_ascii=False),),
    )


def _write_merges(cur: Cursor[Any], s: sql.Identifier, retired: Iterable[RetiredPerson]) -> None:
    rows = [
        {
            "retired": r.person_id,
            "survivor": r.survivor_id,
            "merges": [m.to_json() for m in r.merges],
        }
        for r in retired
    ]
    cur.execute(
        sql.SQL(
            "UPDATE {0}.merged_persons m SET survivor_person_id = x.survivor, merges = x.merges"
            " FROM jsonb_to_recordset(%s::jsonb) AS x(retired text, survivor text, merges jsonb)"
            " WHERE m.retired_person_id = x.retired"
        ).format(s),
        (json.dumps(rows, ensure_ascii=False),),
    )


def _insert_entries(cur: Cursor[Any], s: sql.Identifier, entries: Sequence[Entry]) -> None:
    if not entries:
        return
    rows = [
        {
            "event_id": str(e.event_id),
            "seq": e.seq,
            "kind": e.kind.value,
            "institution": e.institution,
            "local_id": e.local_id,
            "occurred_at": e.occurred_at.isoformat(),
            "event_type": e.event_type,
            "subject_id": e.subject_id,
            "status": e.status,
            "code_system": e.code.system if e.code else None,
            "code": e.code.code if e.code else None,
            "display": e.code.display if e.code else None,
            "detail": e.detail,
        }
        for e in entries
    ]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in ENTRY_COLUMNS)
    cur.execute(
        sql.SQL(
            "INSERT INTO {0}.entries ({1}) SELECT {1} FROM jsonb_to_recordset(%s::jsonb) AS x("
            "event_id uuid, seq integer, kind text, institution text, local_id text,"
            " occurred_at timestamptz, event_type text, subject_id text, status text,"
            " code_system text, code text, display text, detail jsonb)"
            " ORDER BY event_id, seq ON CONFLICT DO NOTHING"
        ).format(s, columns),
        (json.dumps(rows, ensure_ascii=False),),
    )


def entry_of_row(row: Sequence[Any]) -> Entry:
    """An entry from a row of ENTRY_COLUMNS."""
    event_id, seq, kind, institution, local_id, at, event_type, subject, status = row[:9]
    system, code, display, detail = row[9:]
    concept = None if code is None else CodedConcept(system=system, code=code, display=display)
    return Entry(
        event_id,
        seq,
        EntryKind(kind),
        institution,
        local_id,
        at,
        event_type,
        subject,
        status,
        concept,
        detail,
    )


def _lock_subjects(cur: Cursor[Any], s: sql.Identifier, subjects: Sequence[Subject]) -> None:
    args = ([x[0] for x in subjects], [x[1] for x in subjects], [x[2] for x in subjects])
    cur.execute(
        sql.SQL(
            "INSERT INTO {}.subject_locks (kind, institution, subject_id)"
            " SELECT k, i, x FROM unnest(%b::text[], %b::text[], %b::text[]) AS u(k, i, x)"
            " ORDER BY k, i, x ON CONFLICT DO NOTHING"
        ).format(s),
        args,
    )
    cur.execute(
        sql.SQL(
            "SELECT 1 FROM {}.subject_locks l"
            " JOIN unnest(%b::text[], %b::text[], %b::text[]) AS u(kind, institution, subject_id)"
            " USING (kind, institution, subject_id)"
            " ORDER BY l.kind, l.institution, l.subject_id FOR UPDATE OF l"
        ).format(s),
        args,
    )


def _statements(
    cur: Cursor[Any], s: sql.Identifier, kinds: Sequence[str], subjects: Sequence[Subject]
) -> dict[Subject, list[Entry]]:
    """The stored entries of these kinds about these subjects, by subject (`subjects_of`: a
    result's names its kind; a consent's institution is "", its id consortium-wide)."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in ENTRY_COLUMNS)
    if all(x[0] == CONSENT for x in subjects):
        query = sql.SQL("SELECT {} FROM {}.entries WHERE subject_id = ANY(%s) AND kind = ANY(%s)")
        args: tuple[Any, ...] = ([x[2] for x in subjects], list(kinds))
    else:
        query = sql.SQL(
            "SELECT {} FROM {}.entries JOIN unnest(%b::text[], %b::text[])"
            " AS u(institution, subject_id) USING (institution, subject_id) WHERE kind = ANY(%s)"
        )
        pairs = sorted({x[1:] for x in subjects})  # a lab result and a report may share one
        args = ([p[0] for p in pairs], [p[1] for p in pairs], list(kinds))
    found: dict[Subject, list[Entry]] = {}
    for row in cur.execute(query.format(columns, s), args).fetchall():
        e = entry_of_row(row)
        found.setdefault(subjects_of(e)[0], []).append(e)
    return found


def _refold_results(cur: Cursor[Any], s: sql.Identifier, subjects: Sequence[Subject]) -> None:
    if not subjects:
        return
    statements = _statements(cur, s, _RESULT_KINDS, subjects)
    current = [r for x in subjects if (r := current_result(statements.get(x, []))) is not None]
    cur.execute(
        sql.SQL(
            "DELETE FROM {}.results t USING unnest(%b::text[], %b::text[], %b::text[])"
            " AS u(kind, institution, id)"
            " WHERE t.institution = u.institution AND t.kind = u.kind AND t.result_id = u.id"
        ).format(s),
        ([x[0] for x in subjects], [x[1] for x in subjects], [x[2] for x in subjects]),
    )
    if current:
        _copy(cur, s, "results", [_result_row(r) for r in current])


def _result_row(r: CurrentResult) -> dict[str, Any]:
    return {
        "institution": r.institution,
        "result_id": r.result_id,
        "local_id": r.local_id,
        "kind": r.kind.value,
        "order_id": r.order_id,
        "code_system": r.code_system,
        "code": r.code,
        "display": r.display,
        "status": r.status,
        "content": json.dumps(r.values, ensure_ascii=False),
        "effective_at": r.effective_at,
        "reported_at": r.reported_at,
        "amendments": r.amendments,
        "amended_at": r.amended_at,
        "report_event_id": r.report_event_id,
    }


def _refold_orders(cur: Cursor[Any], s: sql.Identifier, subjects: Sequence[Subject]) -> None:
    if not subjects:
        return
    statements = _statements(cur, s, [EntryKind.ORDER.value], subjects)
    rows = cur.execute(
        sql.SQL(
            "SELECT r.institution, r.order_id, r.status FROM {}.results r"
            " JOIN unnest(%b::text[], %b::text[]) AS u(institution, order_id)"
            " USING (institution, order_id)"
        ).format(s),
        ([x[1] for x in subjects], [x[2] for x in subjects]),
    ).fetchall()
    answers: dict[tuple[str, str], list[str]] = {}
    for institution, order_id, status in rows:
        answers.setdefault((institution, order_id), []).append(status)
    current = []
    for x in subjects:
        order = current_order(statements.get(x, []), answers.get(x[1:], []))
        if order is not None:
            current.append(order)
    _delete(cur, s, "orders", "order_id", subjects)
    if current:
        _copy(cur, s, "orders", [_order_row(o) for o in current])


def _order_row(o: CurrentOrder) -> dict[str, Any]:
    return {
        "institution": o.institution,
        "order_id": o.order_id,
        "local_id": o.local_id,
        "category": o.category,
        "code_system": o.code_system,
        "code": o.code,
        "display": o.display,
        "priority": o.priority,
        "placed_at": o.placed_at,
        "cancelled_at": o.cancelled_at,
        "status": o.status,
        "results": o.results,
    }


def _refold_consents(cur: Cursor[Any], s: sql.Identifier, subjects: Sequence[Subject]) -> None:
    if not subjects:
        return
    statements = _statements(cur, s, [EntryKind.CONSENT.value], subjects)
    current = [c for x in subjects if (c := current_consent(statements.get(x, []))) is not None]
    cur.execute(
        sql.SQL("DELETE FROM {}.consents WHERE consent_id = ANY(%s)").format(s),
        ([x[2] for x in subjects],),
    )
    if current:
        _copy(cur, s, "consents", [_consent_row(c) for c in current])


def _consent_row(c: Consent) -> dict[str, Any]:
    return {
        "consent_id": c.consent_id,
        "institution": c.institution,
        "local_id": c.local_id,
        "scope": c.scope.value,
        "institutions": list(c.institutions),
        "purposes": [p.value for p in c.purposes],
        "valid_from": c.valid_from,
        "expires_at": c.expires_at,
        "granted_at": c.granted_at,
        "revoked_at": c.revoked_at,
    }


def _delete(
    cur: Cursor[Any], s: sql.Identifier, table: str, id_column: str, subjects: Sequence[Subject]
) -> None:
    cur.execute(
        sql.SQL(
            "DELETE FROM {}.{} t USING unnest(%b::text[], %b::text[]) AS u(institution, id)"
            " WHERE t.institution = u.institution AND t.{} = u.id"
        ).format(s, sql.Identifier(table), sql.Identifier(id_column)),
        ([x[1] for x in subjects], [x[2] for x in subjects]),
    )


def _copy(cur: Cursor[Any], s: sql.Identifier, table: str, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(rows[0])
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    with cur.copy(
        sql.SQL("COPY {}.{} ({}) FROM STDIN").format(s, sql.Identifier(table), names)
    ) as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])
