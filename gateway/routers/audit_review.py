"""Break-glass reads for review: every record released on a stated reason, newest first."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from psycopg.rows import class_row
from pydantic import BaseModel

from events.membership import CODE_PATTERN
from gateway.audit import Subject, audit
from gateway.deps import GatewayDep, PrincipalDep
from gateway.openapi import PROBLEM_RESPONSES
from gateway.principals import Role
from gateway.problems import ProblemError

router = APIRouter(
    prefix="/v1/audit",
    tags=["audit"],
    responses={403: {**PROBLEM_RESPONSES[403], "description": "Not an administrator."}},
)

PURPOSE = "HCOMPL"  # HL7 v3 PurposeOfUse: health compliance (reviewing emergency access)

# The partial index read_audit_break_glass (migration 0005) serves this query.
_BREAK_GLASS = """
SELECT audit_id, audited_at, institution, role, credential_id, person_id, subject_institution,
       subject_local_id, resource, resource_id, purpose, reason, client_address
FROM read_audit
WHERE outcome = 'BREAK_GLASS'
  AND (%(institution)s::text IS NULL OR institution = %(institution)s)
  AND (%(before)s::timestamptz IS NULL OR audited_at < %(before)s)
ORDER BY audited_at DESC, audit_id
LIMIT %(limit)s
"""


class BreakGlassRead(BaseModel):
    """One read released on a stated reason: who, whose data, why, from where."""

    audit_id: uuid.UUID
    audited_at: datetime
    institution: str
    role: str
    credential_id: uuid.UUID
    person_id: uuid.UUID | None
    subject_institution: str | None
    subject_local_id: str | None
    resource: str
    resource_id: str | None
    purpose: str
    reason: str
    client_address: str | None


@router.get("/break-glass", summary="Break-glass reads to review, newest first")
async def break_glass(
    request: Request,
    gateway: GatewayDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Annotated[datetime | None, Query(description="only reads before this time")] = None,
    institution: Annotated[
        str | None, Query(pattern=CODE_PATTERN.pattern, description="only readers of this member")
    ] = None,
) -> list[BreakGlassRead]:
    """An administrator's review list. The persons it names are read here too, so the list is
    audited before it is answered (purpose HCOMPL), like every read of person-level data."""
    if principal.role is not Role.ADMINISTRATOR:
        raise ProblemError(403, "Forbidden", "only an administrator reviews break-glass reads")
    async with (
        gateway.pool.connection() as conn,
        conn.cursor(row_factory=class_row(BreakGlassRead)) as cur,
    ):
        await cur.execute(
            _BREAK_GLASS, {"institution": institution, "before": before, "limit": limit}
        )
        found = await cur.fetchall()
    subjects = {
        Subject(
            person_id=r.person_id, institution=r.subject_institution, local_id=r.subject_local_id
        )
        for r in found
    }
    await audit(request, principal, sorted(subjects, key=str), purpose=PURPOSE)
    return found
