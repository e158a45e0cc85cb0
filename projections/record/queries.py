"""Read functions over the live shared record, returning plain typed rows (an API maps them).

Every function reads through the stable views (`record.<table>`). A person id may be one the
index has since merged away: it is resolved to its survivor, and the person's local patients are
those linked to the survivor or to any person merged into it.

Most functions make several queries (each re-resolves the person): for one committed state
across them — and across a decision and the reads it allows — run them inside
`projections.snapshot.snapshot(conn)`, as the gateway does per read (docs/record.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection

from events.consent import ConsentPurpose, ConsentScope
from projections.persons import members, resolve
from projections.record.access import AccessInputs
from projections.record.checks import RECORD_VIEWS, merge_survivors, read_orders, read_priors
from projections.record.consents import Consent
from projections.record.entries import RESULT_KINDS, EntryKind
from projections.record.recognition import (
    PossibleRepeat,
    PriorResult,
    RecognitionTable,
    Recognizable,
    possible_repeats,
    recognizable,
)
from projections.record.referrals import referral_links
from projections.record.store import entry_of_row
from projections.record.tables import ENTRY_COLUMNS

MAX_PAGE = 500
_RESULT_KINDS = sorted(k.value for k in RESULT_KINDS)
_DEFAULT_TABLE: RecognitionTable | None = None


def default_table() -> RecognitionTable:
    """The recognition table: RECOGNITION_TABLE's CSV if set, else the bundled one; read once."""
    global _DEFAULT_TABLE  # noqa: PLW0603 - a read-only cache of a configuration file
    if _DEFAULT_TABLE is None:
        from consortium.settings import get_settings

        configured = get_settings().recognition_table
        _DEFAULT_TABLE = (
            RecognitionTable.load(configured) if configured else RecognitionTable.load()
        )
    return _DEFAULT_TABLE


@dataclass(frozen=True, slots=True)
class Person:
    """A person as the record knows it: the id asked for, the current id, its local patients."""

    asked: str
    person_id: str  # the survivor when the asked id was merged away
    merged_ids: tuple[str, ...]  # every id that resolves to person_id
    local_patients: tuple[tuple[str, str], ...]  # (institution, local id)


def person(conn: Connection[Any], person_id: str) -> Person:
    """Resolve a person id through merges and list the local patients linked to it.

    The same rule as the repeat checks' (checks.recheck): the id's merge group
    (`checks.merge_survivors`) resolved by `persons.resolve`/`members`, so a chain reads its end
    and every id of a cycle reads the cycle's smallest id, whichever id is asked."""
    survivors = merge_survivors(conn, RECORD_VIEWS, [person_id])
    survivor = resolve(survivors, person_id)
    ids = sorted(members(survivors, person_id))
    patients = conn.execute(
        "SELECT institution, local_id FROM record.local_patients WHERE person_id = ANY(%s)"
        " ORDER BY institution, local_id",
        (ids,),
    ).fetchall()
    return Person(person_id, survivor, tuple(ids), tuple((i, lid) for i, lid in patients))


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One line of a person's timeline (results in their current, amended form)."""

    entry_id: str
    kind: EntryKind
    institution: str
    local_id: str
    at: datetime  # when it happened (a lab result: when the specimen was observed)
    event_type: str
    subject_id: str | None
    status: str | None
    code_system: str | None
    code: str | None
    display: str | None
    detail: dict[str, Any]
    amendments: int  # results only: how many amendments replaced part of the report


@dataclass(frozen=True, slots=True)
class TimelinePage:
    """A page of a timeline, newest first, and the cursor of the next (older) page."""

    person: Person
    entries: tuple[TimelineEntry, ...]
    next_cursor: str | None


_TIMELINE = """
WITH mine AS (
    SELECT institution, local_id FROM unnest(%(insts)s::text[], %(locals)s::text[])
        AS x(institution, local_id)
), lines AS (
    SELECT e.event_id::text || ':' || e.seq AS entry_id, e.kind, e.institution, e.local_id,
           e.occurred_at AS at, e.event_type, e.subject_id, e.status, e.code_system, e.code,
           e.display, e.detail, 0 AS amendments
    FROM record.entries e JOIN mine USING (institution, local_id)
    WHERE e.kind <> ALL(%(result_kinds)s)
    UNION ALL
    SELECT r.institution || '|' || r.kind || '|' || r.result_id, r.kind, r.institution, r.local_id,
           r.effective_at,
           CASE r.kind WHEN 'LAB_RESULT' THEN 'LabResultReported' ELSE 'ImagingReportIssued' END,
           r.result_id, r.status, r.code_system, r.code, r.display,
           r.content || jsonb_build_object('order_id', r.order_id,
               'reported_at', r.reported_at, 'amended_at', r.amended_at),
           r.amendments
    FROM record.results r JOIN mine USING (institution, local_id)
)
SELECT entry_id, kind, institution, local_id, at, event_type, subject_id, status,
       code_system, code, display, detail, amendments
FROM lines
WHERE (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s))
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
  AND (%(before_at)s::timestamptz IS NULL
       OR (at, entry_id COLLATE "C") < (%(before_at)s, %(before_id)s COLLATE "C"))
ORDER BY at DESC, entry_id COLLATE "C" DESC
LIMIT %(limit)s
"""


def timeline(
    conn: Connection[Any],
    person_id: str,
    *,
    kinds: Iterable[EntryKind] | None = None,
    institutions: Iterable[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> TimelinePage:
    """A page of the person's timeline across members, newest first (keyset-paged by cursor).

    `institutions` restricts to what these members recorded: the caller passes the members
    whose records access.decide allowed.
    """
    limit = max(1, min(limit, MAX_PAGE))
    who = person(conn, person_id)
    allowed = None if institutions is None else set(institutions)
    mine = [p for p in who.local_patients if allowed is None or p[0] in allowed]
    before_at, before_id = _parse_cursor(cursor)
    rows = conn.execute(
        _TIMELINE,
        {
            "insts": [p[0] for p in mine],
            "locals": [p[1] for p in mine],
            "result_kinds": _RESULT_KINDS,
            "kinds": None if kinds is None else [EntryKind(k).value for k in kinds],
            "since": since,
            "until": until,
            "before_at": before_at,
            "before_id": before_id,
            "limit": limit + 1,
        },
    ).fetchall()
    entries = tuple(TimelineEntry(r[0], EntryKind(r[1]), *r[2:]) for r in rows[:limit])
    more = len(rows) > limit
    last = entries[-1] if entries else None
    next_cursor = f"{last.at.isoformat()}|{last.entry_id}" if more and last else None
    return TimelinePage(who, entries, next_cursor)


def _parse_cursor(cursor: str | None) -> tuple[datetime | None, str | None]:
    if not cursor:
        return None, None
    at, _, entry_id = cursor.partition("|")
    return datetime.fromisoformat(at), entry_id


def result_history(
    conn: Connection[Any], institution: str, result_id: str, kind: EntryKind | None = None
) -> list[TimelineEntry]:
    """Every statement of one result (reports and amendments), oldest first: its history.

    `kind` (LAB_RESULT or IMAGING_REPORT) picks one of a lab result and a report that share
    the id at this member; None lists both."""
    columns = ", ".join(ENTRY_COLUMNS)
    kinds = _RESULT_KINDS if kind is None else [EntryKind(kind).value]
    rows = conn.execute(
        f"SELECT {columns} FROM record.entries"
        " WHERE institution = %s AND subject_id = %s AND kind = ANY(%s)"
        " ORDER BY occurred_at, event_id, seq",
        (institution, result_id, kinds),
    ).fetchall()
    history = []
    for row in rows:
        e = entry_of_row(row)
        history.append(
            TimelineEntry(
                e.entry_id,
                e.kind,
                e.institution,
                e.local_id,
                e.occurred_at,
                e.event_type,
                e.subject_id,
                e.status,
                e.code.system if e.code else None,
                e.code.code if e.code else None,
                e.code.display if e.code else None,
                e.detail,
                0,
            )
        )
    return history


@dataclass(frozen=True, slots=True)
class ConsentStatus:
    """A consent of the person and its state at the moment asked."""

    consent: Consent
    state: str  # ACTIVE, PENDING, EXPIRED or REVOKED


def _consents(conn: Connection[Any], who: Person) -> list[Consent]:
    rows = conn.execute(
        "SELECT consent_id, institution, local_id, scope, institutions, purposes, valid_from,"
        " expires_at, granted_at, revoked_at FROM record.consents"
        " JOIN unnest(%b::text[], %b::text[]) AS x(institution, local_id)"
        " USING (institution, local_id) ORDER BY granted_at, consent_id",
        ([p[0] for p in who.local_patients], [p[1] for p in who.local_patients]),
    ).fetchall()
    return [
        Consent(
            consent_id=r[0],
            institution=r[1],
            local_id=r[2],
            scope=ConsentScope(r[3]),
            institutions=tuple(r[4]),
            purposes=tuple(ConsentPurpose(p) for p in r[5]),
            valid_from=r[6],
            expires_at=r[7],
            granted_at=r[8],
            revoked_at=r[9],
        )
        for r in rows
    ]


def consents(conn: Connection[Any], person_id: str, now: datetime) -> list[ConsentStatus]:
    """The consents signed for any of the person's local patients, with their state at now."""
    return [ConsentStatus(c, c.state_at(now)) for c in _consents(conn, person(conn, person_id))]


def access_inputs(conn: Connection[Any], person_id: str) -> AccessInputs:
    """What access.decide needs about a person: consents and referrals in the record."""
    who = person(conn, person_id)
    columns = ", ".join(f"e.{c}" for c in ENTRY_COLUMNS)
    rows = conn.execute(
        f"SELECT {columns} FROM record.entries e"
        " JOIN unnest(%b::text[], %b::text[]) AS x(institution, local_id)"
        " USING (institution, local_id) WHERE e.kind = 'REFERRAL'",
        ([p[0] for p in who.local_patients], [p[1] for p in who.local_patients]),
    ).fetchall()
    referrals = referral_links(entry_of_row(r) for r in rows)
    return AccessInputs(who.person_id, tuple(_consents(conn, who)), tuple(referrals))


def _priors(conn: Connection[Any], patients: Sequence[tuple[str, str]]) -> list[PriorResult]:
    return read_priors(conn, RECORD_VIEWS, patients)


def recognizable_results(
    conn: Connection[Any],
    person_id: str,
    now: datetime,
    table: RecognitionTable | None = None,
) -> list[Recognizable]:
    """The person's results that another member may recognise instead of repeating, at now."""
    who = person(conn, person_id)
    return recognizable(_priors(conn, who.local_patients), table or default_table(), now)


def repeats_of(
    conn: Connection[Any], person_id: str, table: RecognitionTable | None = None
) -> list[PossibleRepeat]:
    """The person's orders flagged as possible repeats of another member's valid result."""
    who = person(conn, person_id)
    orders = read_orders(conn, RECORD_VIEWS, who.local_patients)
    priors = _priors(conn, who.local_patients)
    return possible_repeats(orders, priors, table or default_table())


__all__ = [
    "ConsentStatus",
    "Person",
    "TimelineEntry",
    "TimelinePage",
    "access_inputs",
    "consents",
    "person",
    "recognizable_results",
    "repeats_of",
    "result_history",
    "timeline",
]
