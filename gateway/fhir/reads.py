"""The shared record read from PostgreSQL under the access rules (the only I/O of this package).

The record's queries (projections/record/queries.py) are synchronous psycopg; the gateway runs
them on its own small pool of synchronous connections, one worker-thread hop per request.
Each read — resolving the person, deciding access, reading what it releases — is one
REPEATABLE READ, READ ONLY transaction (`projections.snapshot`): a consent revoked, a referral
ended or a merge committed meanwhile is wholly in the read or wholly out (docs/record.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from fastapi import FastAPI
from psycopg import Connection
from psycopg_pool import ConnectionPool

from gateway.fhir.access import Reader, Verdict, clinician_verdict, denied, desk_verdict
from gateway.fhir.referrals import referrals_of
from gateway.state import Gateway
from projections.record import queries
from projections.record.entries import EntryKind
from projections.record.queries import Person, TimelineEntry
from projections.record.recognition import PossibleRepeat, Recognizable
from projections.snapshot import snapshot

POOL_SIZE = 4
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RecordRead:
    """A person as resolved, what the reader may see, and the entries it may see."""

    person: Person
    verdict: Verdict
    entries: tuple[TimelineEntry, ...] = ()

    @property
    def known(self) -> bool:
        """Whether any member's record is linked to the person."""
        return bool(self.person.local_patients)


def record_pool(app: FastAPI, gateway: Gateway) -> ConnectionPool:
    """The app's pool of synchronous connections for record reads, opened on first use."""
    pool: ConnectionPool | None = getattr(app.state, "record_pool", None)
    if pool is None or getattr(app.state, "record_pool_gateway", None) is not gateway:
        if pool is not None:
            pool.close()
        pool = ConnectionPool(
            gateway.config.database_url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True},
            open=True,
        )
        app.state.record_pool, app.state.record_pool_gateway = pool, gateway
    return pool


def close_record_pool(app: FastAPI) -> None:
    """Close the app's record pool, if one was opened (call at shutdown)."""
    pool: ConnectionPool | None = getattr(app.state, "record_pool", None)
    if pool is not None:
        pool.close()
        app.state.record_pool = None


def all_entries(
    conn: Connection[Any],
    person_id: str,
    institutions: Iterable[str],
    kinds: Iterable[EntryKind] | None = None,
) -> tuple[TimelineEntry, ...]:
    """Every timeline entry of the person recorded by these members, newest first (several
    queries: call it inside the read's snapshot)."""
    allowed, wanted = list(institutions), None if kinds is None else list(kinds)
    found: list[TimelineEntry] = []
    cursor: str | None = None
    while True:
        page = queries.timeline(
            conn,
            person_id,
            kinds=wanted,
            institutions=allowed,
            cursor=cursor,
            limit=queries.MAX_PAGE,
        )
        found.extend(page.entries)
        if page.next_cursor is None:
            return tuple(found)
        cursor = page.next_cursor


def read_as_clinician(
    pool: ConnectionPool, person_id: str, reader: Reader, now: datetime
) -> RecordRead:
    """The person's entries from every member whose record access.decide lets the reader see."""
    with pool.connection() as conn, snapshot(conn):
        person = queries.person(conn, person_id)
        if not person.local_patients:
            return RecordRead(person, denied("no member's record is linked to this person"))
        verdict = clinician_verdict(reader, person, queries.access_inputs(conn, person_id), now)
        if not verdict.allowed:
            return RecordRead(person, verdict)
        return RecordRead(person, verdict, all_entries(conn, person_id, verdict.allowed))


def read_as_desk(pool: ConnectionPool, person_id: str, reader: Reader) -> RecordRead:
    """The person's referrals that the desk's member sends or receives."""
    with pool.connection() as conn, snapshot(conn):
        person = queries.person(conn, person_id)
        if not person.local_patients:
            return RecordRead(person, denied("no member's record is linked to this person"))
        institutions = sorted({i for i, _ in person.local_patients})
        entries = all_entries(conn, person_id, institutions, [EntryKind.REFERRAL])
    mine = reader.principal.institution
    shown = [r for r in referrals_of(entries) if mine in r.parties]
    verdict = desk_verdict(reader, [(r.referral_id, r.parties) for r in shown])
    return RecordRead(person, verdict, tuple(e for r in shown for e in r.lines))


def _clinician_read(
    pool: ConnectionPool,
    person_id: str,
    reader: Reader,
    now: datetime,
    find: Callable[[Connection[Any]], list[T]],
    members_of: Callable[[T], Iterable[str]],
) -> tuple[RecordRead, list[T]]:
    """A clinician's verdict on the person, and what `find` reads of them, kept where every
    member an item comes from is one the reader may see."""
    with pool.connection() as conn, snapshot(conn):
        person = queries.person(conn, person_id)
        if not person.local_patients:
            none = denied("no member's record is linked to this person")
            return RecordRead(person, none), []
        verdict = clinician_verdict(reader, person, queries.access_inputs(conn, person_id), now)
        if not verdict.allowed:
            return RecordRead(person, verdict), []
        found = find(conn)
    seen = verdict.allowed
    return RecordRead(person, verdict), [i for i in found if set(members_of(i)) <= seen]


def read_repeats(
    pool: ConnectionPool, person_id: str, reader: Reader, now: datetime
) -> tuple[RecordRead, list[PossibleRepeat]]:
    """The person's orders flagged as possible repeats, where the reader may see both the
    ordering member and the member whose result it repeats."""
    return _clinician_read(
        pool,
        person_id,
        reader,
        now,
        lambda conn: queries.repeats_of(conn, person_id),
        lambda r: (r.order.institution, r.prior.institution),
    )


def read_recognizable(
    pool: ConnectionPool, person_id: str, reader: Reader, now: datetime
) -> tuple[RecordRead, list[Recognizable]]:
    """The results the reader may reuse: recognisable ones from members it may see."""
    return _clinician_read(
        pool,
        person_id,
        reader,
        now,
        lambda conn: queries.recognizable_results(conn, person_id, now),
        lambda r: (r.prior.institution,),
    )
