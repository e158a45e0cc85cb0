"""The referral desk's read API: its board, one referral's timeline, and a stream of changes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from gateway import streams
from gateway.audit import NOBODY, Outcome, Subject, audit
from gateway.cursors import aware, decode_cursor, next_cursor
from gateway.deps import GatewayDep, PrincipalDep
from gateway.openapi import PROBLEM_RESPONSES
from gateway.principals import Principal, Role
from gateway.problems import ProblemError
from gateway.streams import TOO_MANY_STREAMS
from projections.referrals import reads
from projections.referrals.lifecycle import ReferralState

router = APIRouter(
    prefix="/v1/referrals",
    tags=["referrals"],
    responses={
        400: {**PROBLEM_RESPONSES[400], "description": "A cursor or filter we cannot read."},
        404: {**PROBLEM_RESPONSES[401], "description": "No such referral, or not the caller's."},
    },
)

Direction = Literal["incoming", "outgoing", "UP", "DOWN", "LATERAL", "up", "down", "lateral"]
# The states a desk can see (a referral awaiting its request is not shown), upper or lower case.
State = Literal[
    "REQUESTED", "ACCEPTED", "REJECTED", "CANCELLED", "EXPIRED", "ARRIVED", "COMPLETED",
    "requested", "accepted", "rejected", "cancelled", "expired", "arrived", "completed",
]  # fmt: skip
assert {v.upper() for v in get_args(State)} == set(ReferralState) - {"AWAITING_REQUEST"}
READERS = frozenset({Role.REFERRAL_DESK, Role.CLINICIAN})
PURPOSE = "COC"  # HL7 v3 PurposeOfUse: coordination of care
POLL_S = 0.5


class TimelineEntry(BaseModel):
    """One event of a referral: APPLIED, PARKED (its predecessor has not arrived), IGNORED (the
    referral took another path), NOT_A_PARTY (its sender may not send it) or DERIVED (expiry)."""

    at: datetime
    kind: str
    status: str
    event_id: UUID | None
    source: str | None


class Referral(BaseModel):
    """A referral as its desks see it (the patient by each institution's local id)."""

    referral_id: UUID
    state: str
    direction: str | None
    from_institution: str | None
    to_institution: str | None
    urgency: str | None
    reason_code: str | None
    requested_service: str | None
    from_patient_local_id: str | None
    to_patient_local_id: str | None
    from_person_id: UUID | None
    to_person_id: UUID | None
    requested_at: datetime | None
    accept_deadline: datetime | None
    expires_at: datetime | None
    answered_at: datetime | None
    scheduled_arrival: datetime | None
    arrived_at: datetime | None
    closed_at: datetime | None
    overdue: bool
    parked_events: int
    projected_at: datetime


class ReferralWithTimeline(Referral):
    """A referral and every event of it, in order."""

    timeline: list[TimelineEntry]


class ReferralPage(BaseModel):
    """One page of a desk's referrals, the cursor of the next, and where a stream may start."""

    items: list[Referral]
    next: str | None
    stream_cursor: datetime


def subjects_of(row: dict[str, Any]) -> list[Subject]:
    """The persons a referral row shows: its two parties, once each."""
    found: dict[object, Subject] = {}
    for side in ("from", "to"):
        person, local = row[f"{side}_person_id"], row[f"{side}_patient_local_id"]
        if person is None and local is None:
            continue
        subject = Subject(person, row[f"{side}_institution"], local)
        found.setdefault(person or (subject.institution, local), subject)
    return list(found.values())


async def audit_parties(
    request: Request, principal: Principal, rows: Sequence[dict[str, Any]]
) -> None:
    """Audit both parties of every row of a page (`from_…`/`to_…` columns) before it is sent."""
    await audit(request, principal, [s for r in rows for s in subjects_of(r)], purpose=PURPOSE)


def _may_read(principal: Principal) -> None:
    if principal.role not in READERS:
        raise ProblemError(403, "Forbidden", f"role {principal.role.value} reads no referrals")


@router.get("", summary="The referrals from or to the caller's institution")
async def list_referrals(
    request: Request,
    gateway: GatewayDep,
    principal: PrincipalDep,
    state: Annotated[State | None, Query(description="the referral's state")] = None,
    direction: Annotated[
        Direction | None,
        Query(description="incoming, outgoing, or a level direction (UP, DOWN, LATERAL)"),
    ] = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(description="`next` of the previous page")] = None,
) -> ReferralPage:
    """Newest request first; every person on the page is audited before it is returned."""
    _may_read(principal)
    cursor = decode_cursor(after) if after else None
    async with gateway.pool.connection() as conn:
        stream_cursor = await reads.change_horizon(conn)
        rows = await reads.referral_page(
            conn,
            principal.institution,
            state=state,
            direction=direction,
            overdue=overdue,
            after=cursor,
            limit=limit,
        )
    await audit_parties(request, principal, rows)
    return ReferralPage(
        items=[Referral.model_validate(r) for r in rows],
        next=next_cursor(rows, limit, "requested_at", "referral_id"),
        stream_cursor=stream_cursor,
    )


class UnmatchedEvent(BaseModel):
    """One of the caller's own events of a referral id that is not on its board."""

    at: datetime
    kind: str
    event_id: UUID
    patient_local_id: str | None


class UnmatchedReferral(BaseModel):
    """A referral id the caller sent events of that is not on its board: its request has not
    arrived, or names other institutions (the two are not told apart)."""

    referral_id: UUID
    waiting_since: datetime
    events: list[UnmatchedEvent]


class UnmatchedPage(BaseModel):
    """One page of the caller's unmatched referral ids, and the cursor of the next."""

    items: list[UnmatchedReferral]
    next: str | None


@router.get(
    "/unmatched",
    summary="The caller's own events of referral ids that are not on its board",
)
async def list_unmatched(
    request: Request,
    gateway: GatewayDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(description="`next` of the previous page")] = None,
) -> UnmatchedPage:
    """Longest waiting first; the caller's patients on the page are audited before it is
    returned. A referral leaves the list when a request naming the caller arrives (it is then on
    the board); a request naming others leaves it here."""
    _may_read(principal)
    cursor = decode_cursor(after) if after else None
    async with gateway.pool.connection() as conn:
        rows = await reads.unmatched_page(conn, principal.institution, after=cursor, limit=limit)
    subjects = {
        (principal.institution, e["patient_local_id"])
        for r in rows
        for e in r["events"]
        if e["patient_local_id"] is not None
    }
    await audit(
        request,
        principal,
        [Subject(None, i, local) for i, local in sorted(subjects)],
        purpose=PURPOSE,
    )
    return UnmatchedPage(
        items=[UnmatchedReferral.model_validate(r) for r in rows],
        next=next_cursor(rows, limit, "waiting_since", "referral_id"),
    )


@router.get(
    "/stream",
    summary="Server-sent events: the caller's referrals as they change",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 429: TOO_MANY_STREAMS},
)
async def stream_referrals(
    request: Request,
    gateway: GatewayDep,
    principal: PrincipalDep,
    cursor: Annotated[datetime | None, Query(description="`stream_cursor` of a page")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Each changed referral as a `referral` event (audited before it is sent); resumable."""
    _may_read(principal)
    try:
        since = None if cursor is None else aware(cursor)
    except ValueError as exc:
        raise ProblemError(400, "Bad request", "the cursor must carry its UTC offset") from exc
    if last_event_id:
        try:
            since = aware(datetime.fromisoformat(last_event_id))
        except ValueError as exc:
            raise ProblemError(400, "Bad request", "Last-Event-ID is not a cursor") from exc
    slot = gateway.streams.take(principal)  # 429 when the gateway or the credential is full
    try:
        if since is None:
            async with gateway.pool.connection() as conn:
                since = await reads.change_horizon(conn)
    except BaseException:
        slot.release()
        raise
    return StreamingResponse(
        slot.around(_changes(request, gateway, principal, since)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _changes(
    request: Request, gateway: GatewayDep, principal: Principal, since: datetime
) -> AsyncIterator[str]:
    # Rows at or after the horizon may be seen twice; `sent` drops the versions already sent.
    sent: dict[UUID, datetime] = {}
    while not await request.is_disconnected():
        async with gateway.pool.connection() as conn:
            horizon = await reads.change_horizon(conn)
            rows = await reads.changes_since(conn, principal.institution, since)
            # The credential is read again every poll, after the rows: a change committed after
            # a revocation is read by a poll whose check comes later still, and is never sent.
            revoked = await streams.revoked(conn, principal)
        if revoked is not None:
            yield _event("error", since, revoked)
            return
        for row in rows:
            if sent.get(row["referral_id"]) == row["projected_at"]:
                continue
            try:
                await audit(
                    request,
                    principal,
                    subjects_of(row),
                    purpose=PURPOSE,
                    resource_id=str(row["referral_id"]),
                )
            except ProblemError as exc:
                yield _event("error", since, streams.problem_data(exc))
                return
            sent[row["referral_id"]] = row["projected_at"]
            yield _event("referral", since, Referral.model_validate(row).model_dump(mode="json"))
        since = max(since, horizon)
        sent = {rid: at for rid, at in sent.items() if at >= since}
        yield f"id: {since.isoformat()}\n\n"  # the resume point moves on; doubles as keep-alive
        await asyncio.sleep(POLL_S)


def _event(kind: Literal["referral", "error"], cursor: datetime, data: dict[str, Any]) -> str:
    # The id is the poll's starting cursor: resuming from it re-sends, never skips.
    payload = json.dumps(data, ensure_ascii=False)
    return f"event: {kind}\nid: {cursor.isoformat()}\ndata: {payload}\n\n"


@router.get("/{referral_id}", summary="One referral with its timeline")
async def get_referral(
    referral_id: UUID, request: Request, gateway: GatewayDep, principal: PrincipalDep
) -> ReferralWithTimeline:
    """403 for a role that reads no referrals, whatever the id (so ids cannot be probed); 404
    for a referral neither from nor to the caller's institution, as for an unknown id (its
    existence is not revealed). Every denied attempt is audited as denied, on an unknown id too
    (naming nobody): the same audit write, so the same answer also when the audit fails."""
    reader = principal.role in READERS
    async with gateway.pool.connection() as conn:
        row = await reads.referral(
            conn, referral_id, timeline_for=principal.institution if reader else None
        )
    mine = row is not None and principal.institution in (
        row["from_institution"],
        row["to_institution"],
    )
    if not reader or not mine:
        if not reader:
            reason = "not a reading role"
        else:
            reason = "no such referral" if row is None else "not its institution's"
        await audit(
            request,
            principal,
            (subjects_of(row) if row is not None else []) or [NOBODY],
            purpose=PURPOSE,
            outcome=Outcome.DENIED,
            reason=reason,
            resource_id=str(referral_id),
        )
        _may_read(principal)  # the role first: 403 whatever the id
        raise ProblemError(404, "Not found", "no such referral")
    assert row is not None
    await audit(request, principal, subjects_of(row), purpose=PURPOSE, resource_id=str(referral_id))
    return ReferralWithTimeline.model_validate(row)
