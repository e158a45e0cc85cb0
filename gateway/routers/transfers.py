"""A referral desk's transfers: its patients who moved between members, referred or not."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from gateway.cursors import decode_cursor, next_cursor
from gateway.deps import GatewayDep, PrincipalDep
from gateway.openapi import PROBLEM_RESPONSES
from gateway.principals import Role
from gateway.problems import ProblemError
from gateway.routers.referrals import audit_parties
from projections.transfers import reads

# The desks only: a transfer shows the other member's stay (local id, encounter, discharge), which
# a clinician may see only with consent, a referral or break-glass (DESIGN.md; the record decides).
READERS = frozenset({Role.REFERRAL_DESK})

router = APIRouter(
    prefix="/v1/transfers",
    tags=["transfers"],
    responses={400: {**PROBLEM_RESPONSES[400], "description": "A cursor we did not issue."}},
)


class Transfer(BaseModel):
    """One person discharged at a member and admitted at another within 48 hours."""

    transfer_id: UUID
    from_institution: str
    from_patient_local_id: str
    from_person_id: UUID | None
    from_encounter_id: str
    discharged_at: datetime
    discharge_disposition: str
    to_institution: str
    to_patient_local_id: str
    to_person_id: UUID | None
    to_encounter_id: str
    admitted_at: datetime
    admission_source: str
    referred: bool
    referral_id: UUID | None


class TransferPage(BaseModel):
    """One page of a desk's transfers and the cursor of the next."""

    items: list[Transfer]
    next: str | None


@router.get("", summary="Transfers from or to the caller's institution")
async def list_transfers(
    request: Request,
    gateway: GatewayDep,
    principal: PrincipalDep,
    unreferred: Annotated[
        bool | None, Query(description="true: only transfers no referral covered")
    ] = None,
    direction: Annotated[
        Literal["incoming", "outgoing"] | None,
        Query(description="admitted at the caller's institution, or discharged from it"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[str | None, Query(description="`next` of the previous page")] = None,
) -> TransferPage:
    """Latest admission first; every person on the page is audited before it is returned."""
    if principal.role not in READERS:
        raise ProblemError(403, "Forbidden", f"role {principal.role.value} reads no transfers")
    cursor = decode_cursor(after) if after else None
    async with gateway.pool.connection() as conn:
        rows = await reads.transfer_page(
            conn,
            principal.institution,
            unreferred=unreferred,
            direction=direction,
            after=cursor,
            limit=limit,
        )
    await audit_parties(request, principal, rows)
    return TransferPage(
        items=[Transfer.model_validate(r) for r in rows],
        next=next_cursor(rows, limit, "admitted_at", "transfer_id"),
    )
