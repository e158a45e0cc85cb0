"""Async reads of the live referral board for the gateway: pages, one referral, changes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row

from projections.empi.links import party_persons
from projections.referrals.queries import INCOMING, OUTGOING
from projections.snapshot import async_snapshot

# Each party's consortium person, when the patient index has linked the local record.
_SELECT = """
SELECT r.referral_id, r.state, r.direction, r.from_institution, r.to_institution, r.urgency,
       r.reason_code, r.requested_service, r.from_patient_local_id, r.to_patient_local_id,
       r.requested_at, r.accept_deadline, r.expires_at, r.answered_at, r.scheduled_arrival,
       r.arrived_at, r.closed_at, r.overdue, r.parked_events, r.projected_at,
       f.person_id AS from_person_id, t.person_id AS to_person_id
FROM referrals.referrals r
""" + party_persons("r")
# Placeholder rows of referrals whose request has not arrived yet are nobody's referral.
_KNOWN = sql.SQL("r.state <> 'AWAITING_REQUEST'")
_MINE = sql.SQL("(r.from_institution = %(inst)s OR r.to_institution = %(inst)s)")


async def referral_page(
    conn: AsyncConnection[Any],
    institution: str,
    *,
    state: str | None = None,
    direction: str | None = None,
    overdue: bool | None = None,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """One page of the referrals from or to an institution, newest request first."""
    where = [_KNOWN, _MINE]
    params: dict[str, Any] = {"inst": institution, "limit": limit}
    if state is not None:
        where.append(sql.SQL("r.state = %(state)s"))
        params["state"] = state.upper()
    if direction == INCOMING:
        where.append(sql.SQL("r.to_institution = %(inst)s"))
    elif direction == OUTGOING:
        where.append(sql.SQL("r.from_institution = %(inst)s"))
    elif direction is not None:
        where.append(sql.SQL("r.direction = %(direction)s"))
        params["direction"] = direction.upper()
    if overdue is not None:
        where.append(sql.SQL("r.overdue = %(overdue)s"))
        params["overdue"] = overdue
    if after is not None:
        where.append(sql.SQL("(r.requested_at, r.referral_id) < (%(at)s, %(id)s)"))
        params["at"], params["id"] = after
    query = sql.SQL("{} WHERE {} ORDER BY r.requested_at DESC, r.referral_id DESC LIMIT %(limit)s")
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query.format(sql.SQL(_SELECT), sql.SQL(" AND ").join(where)), params)
        return await cur.fetchall()


# The caller's events of referral ids that are not on its board: their request has not
# arrived (the row has no parties yet), or it names other institutions (the caller's events are
# NOT_A_PARTY: a mistyped referral number). Both are listed alike, so the list does not tell
# whether another member's referral has that id; only the caller's own events are shown.
_UNMATCHED = """
SELECT r.referral_id, min(e.at) AS waiting_since,
       jsonb_agg(jsonb_build_object(
           'at', e.at, 'kind', e.fact->>'kind', 'event_id', e.fact->>'event_id',
           'patient_local_id', e.fact->>'patient_local_id'
       ) ORDER BY e.at, e.fact->>'event_id') AS events
FROM referrals.referrals r
CROSS JOIN LATERAL (
    SELECT f AS fact, (f->>'occurred_at')::timestamptz AS at
    FROM jsonb_array_elements(r.facts) AS f
) e
WHERE jsonb_path_query_array(r.facts, '$[*].source') @> jsonb_build_array(%(inst)s::text)
  AND (r.state = 'AWAITING_REQUEST'
       OR %(inst)s::text NOT IN (r.from_institution, r.to_institution))
  AND e.fact->>'source' = %(inst)s
GROUP BY r.referral_id
"""


async def unmatched_page(
    conn: AsyncConnection[Any],
    institution: str,
    *,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """One page of the referral ids the institution sent events of that are not on its board,
    with those events only; the longest waiting first."""
    query = "SELECT * FROM (" + _UNMATCHED + ") w"
    params: dict[str, Any] = {"inst": institution, "limit": limit}
    if after is not None:
        query += " WHERE (w.waiting_since, w.referral_id) > (%(at)s, %(id)s)"
        params["at"], params["id"] = after
    query += " ORDER BY w.waiting_since, w.referral_id LIMIT %(limit)s"
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def referral(
    conn: AsyncConnection[Any], referral_id: UUID, *, timeline_for: str | None
) -> dict[str, Any] | None:
    """One referral, whoever it belongs to (the caller checks access), with its timeline when
    it is from or to `timeline_for` (None: never). A denied read thus costs the one query an
    unknown id costs, not a second one for a timeline nobody is shown.

    The row and its timeline are read in one snapshot (a batch between two autocommit reads
    gave a row of one write and the timeline of the next)."""
    async with async_snapshot(conn), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("{} WHERE r.referral_id = %s AND {}").format(sql.SQL(_SELECT), _KNOWN),
            (referral_id,),
        )
        row = await cur.fetchone()
        parties = (row["from_institution"], row["to_institution"]) if row else ()
        if row is None or timeline_for is None or timeline_for not in parties:
            return row
        await cur.execute(
            "SELECT at, kind, status, event_id, source FROM referrals.referral_timeline"
            " WHERE referral_id = %s ORDER BY seq",
            (referral_id,),
        )
        row["timeline"] = await cur.fetchall()
    return row


async def changes_since(
    conn: AsyncConnection[Any], institution: str, since: datetime
) -> list[dict[str, Any]]:
    """An institution's referrals projected at or after `since`, oldest change first."""
    # No LIMIT: one batch writes all its rows with one `projected_at`, so a page boundary
    # inside it could never be passed; a desk's referrals are a few thousand at most.
    query = sql.SQL(
        "{} WHERE {} AND {} AND r.projected_at >= %(since)s ORDER BY r.projected_at, r.referral_id"
    ).format(sql.SQL(_SELECT), _KNOWN, _MINE)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, {"inst": institution, "since": since})
        return await cur.fetchall()


async def change_horizon(conn: AsyncConnection[Any]) -> datetime:
    """A time before which every referral change is committed and visible (docs/read-api.md).

    `projected_at` is the clock of its writing statement (CHANGED_NOW), which runs inside a
    transaction pg_stat_activity already shows, and a row committed after a read may carry an
    earlier time: no transaction still open started before the oldest open one did. The clock
    is read *before* the scan: a writer the scan misses stamps its rows later still.
    """
    async with conn.cursor() as cur:
        await cur.execute("SELECT clock_timestamp()")
        clock = await cur.fetchone()
        await cur.execute(
            "SELECT min(xact_start) FROM pg_stat_activity"
            " WHERE xact_start IS NOT NULL AND state IS DISTINCT FROM 'idle'"
            " AND pid <> pg_backend_pid()"
        )
        oldest = await cur.fetchone()
    assert clock is not None and oldest is not None
    horizon: datetime = clock[0] if oldest[0] is None else min(clock[0], oldest[0])
    return horizon
