"""Person-level reports: who looked at a person's data ("who viewed me")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from psycopg.rows import class_row
from pydantic import BaseModel

from gateway.audit import Outcome, Subject, audit
from gateway.deps import GatewayDep, PrincipalDep
from gateway.principals import Role
from gateway.problems import ProblemError

router = APIRouter(prefix="/v1/persons", tags=["persons"])

PURPOSE = "PATRQT"  # HL7 v3 PurposeOfUse: patient requested (the "who viewed me" report)
ACCESS_LOG_READERS = frozenset({Role.ADMINISTRATOR})

# Reads of the person by id, and of the member records the patient index links to the person
# now (also those read before the link existed).
_ACCESS_LOG = """
SELECT audit_id, audited_at, institution, role, credential_id, resource, resource_id, purpose,
       outcome, reason, client_address, subject_institution, subject_local_id
FROM read_audit a
WHERE (a.person_id = %(person)s
       OR (a.subject_institution, a.subject_local_id) IN
          (SELECT institution, local_id FROM empi.records WHERE person_id = %(person)s))
  AND (%(before)s::timestamptz IS NULL OR a.audited_at < %(before)s)
ORDER BY a.audited_at DESC, a.audit_id
LIMIT %(limit)s
"""


class AccessLogEntry(BaseModel):
    """One read of the person's data: who, from where, what, why, and whether it was released."""

    audit_id: uuid.UUID
    audited_at: datetime
    institution: str
    role: str
    credential_id: uuid.UUID
    resource: str
    resource_id: str | None
    purpose: str
    outcome: str
    reason: str | None
    client_address: str | None
    subject_institution: str | None
    subject_local_id: str | None


@router.get("/{person_id}/access-log", summary="Who read this person's data, newest first")
async def access_log(
    person_id: uuid.UUID,
    request: Request,
    gateway: GatewayDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    before: Annotated[datetime | None, Query(description="only reads before this time")] = None,
) -> list[AccessLogEntry]:
    """An administrator's report; reading it is itself audited, and so is a refusal."""
    subject = [Subject(person_id=person_id)]
    if principal.role not in ACCESS_LOG_READERS:
        await audit(
            request,
            principal,
            subject,
            purpose=PURPOSE,
            outcome=Outcome.DENIED,
            reason=f"role {principal.role.value} reads no access logs",
        )
        raise ProblemError(403, "Forbidden", "only an administrator reads access logs")
    # Audited first, so the report includes this read of it.
    await audit(request, principal, subject, purpose=PURPOSE)
    async with (
        gateway.pool.connection() as conn,
        conn.cursor(row_factory=class_row(AccessLogEntry)) as cur,
    ):
        await cur.execute(_ACCESS_LOG, {"person": person_id, "before": before, "limit": limit})
        return await cur.fetchall()
