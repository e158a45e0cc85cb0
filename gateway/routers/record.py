"""Person-record reads in REST form: results another member may reuse (检查检验结果互认)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import anyio.to_thread
from fastapi import APIRouter, Request
from psycopg_pool import ConnectionPool
from pydantic import BaseModel

from gateway.audit import Outcome, Subject, audit
from gateway.deps import GatewayDep, PrincipalDep
from gateway.fhir import reads
from gateway.fhir.access import BadReaderError, Reader, reader_of, refusal
from gateway.fhir.orders import order_id
from gateway.fhir.systems import resource_id
from gateway.openapi import PROBLEM_RESPONSES
from gateway.principals import Role
from gateway.problems import ProblemError
from projections.record.recognition import PossibleRepeat, Recognizable

T = TypeVar("T")

router = APIRouter(
    prefix="/v1/persons",
    tags=["persons"],
    responses={
        400: {
            **PROBLEM_RESPONSES[400],
            "description": "A purpose or break-glass header we cannot read.",
        },
        403: {
            **PROBLEM_RESPONSES[401],
            "description": "No record of this person open to the reader (an unknown person too).",
        },
    },
)

PURPOSE = "RESULT_RECOGNITION"  # the consent purpose access.decide checks for recognition


class RecognizableResult(BaseModel):
    """A result the clinician may use instead of repeating the test, and until when."""

    institution: str
    result_id: str
    kind: str  # LAB or IMAGING
    test_system: str
    test_code: str
    test_display: str
    modality: str | None
    body_site: str | None
    effective_at: datetime
    reported_at: datetime
    valid_until: datetime
    fhir: str  # the same result in the FHIR API: Observation/<id> or DiagnosticReport/<id>


def _item(r: Recognizable) -> RecognizableResult:
    kind = "Observation" if r.prior.kind == "LAB" else "DiagnosticReport"
    return RecognizableResult(
        institution=r.prior.institution,
        result_id=r.prior.result_id,
        kind=r.prior.kind,
        test_system=r.test.system,
        test_code=r.test.code,
        test_display=r.test.display,
        modality=r.prior.modality,
        body_site=r.prior.body_site,
        effective_at=r.prior.effective_at,
        reported_at=r.prior.reported_at,
        valid_until=r.valid_until,
        fhir=f"{kind}/{resource_id(kind, r.prior.institution, r.prior.result_id)}",
    )


async def _recognition_read(
    person_id: uuid.UUID,
    request: Request,
    gateway: GatewayDep,
    principal: PrincipalDep,
    read: Callable[[ConnectionPool, str, Reader, datetime], tuple[reads.RecordRead, list[T]]],
) -> list[T]:
    """A clinician's read for mutual recognition, from the members the person's consent (for
    result recognition), an active referral, or break-glass lets it see; audited, refusals too."""
    try:
        reader = reader_of(principal, PURPOSE, request.headers.get("x-break-glass"))
    except BadReaderError as exc:
        raise ProblemError(400, "Bad request", str(exc)) from None
    subject = [Subject(person_id=person_id)]
    if principal.role is not Role.CLINICIAN:
        reason = f"role {principal.role.value} reads no clinical records"
        await audit(
            request,
            principal,
            subject,
            purpose=reader.purpose_code,
            outcome=Outcome.DENIED,
            reason=reason,
        )
        raise ProblemError(403, "Forbidden", reason)
    pool = reads.record_pool(request.app, gateway)
    work = partial(read, pool, str(person_id), reader, datetime.now(UTC))
    done, found = await anyio.to_thread.run_sync(work)
    if done.known:
        subject = [Subject(person_id=uuid.UUID(done.person.person_id))]
    verdict = done.verdict
    await audit(
        request,
        principal,
        subject,
        purpose=reader.purpose_code,
        outcome=Outcome(verdict.outcome),
        reason=verdict.reason,
        detail={"consent_purpose": PURPOSE, "grants": [asdict(g) for g in verdict.grants]}
        if verdict.grants
        else None,
    )
    # An unknown person is refused like one the reader may not see (docs/fhir.md, "Audit").
    if not done.known or verdict.outcome == "DENIED":  # the reason is the audit's only
        raise ProblemError(403, "Forbidden", refusal(reader))
    return found


@router.get(
    "/{person_id}/recognizable-results",
    summary="Results of this person that need not be repeated (mutual recognition)",
)
async def recognizable_results(
    person_id: uuid.UUID, request: Request, gateway: GatewayDep, principal: PrincipalDep
) -> list[RecognizableResult]:
    """Results a clinician may use instead of repeating the test, and until when."""
    found = await _recognition_read(person_id, request, gateway, principal, reads.read_recognizable)
    return [_item(r) for r in found]


class PossibleRepeatOrder(BaseModel):
    """An order of this person that repeats a test another member has a valid result of."""

    institution: str
    order_id: str
    placed_at: datetime | None
    status: str
    avoided: bool  # the order was cancelled after it was placed: the result was reused
    test_system: str
    test_code: str
    test_display: str
    prior_institution: str
    prior_result_id: str
    prior_reported_at: datetime
    fhir_order: str  # ServiceRequest/<id>
    fhir_prior: str  # Observation/<id> or DiagnosticReport/<id>


def _repeat(r: PossibleRepeat) -> PossibleRepeatOrder:
    kind = "Observation" if r.prior.kind == "LAB" else "DiagnosticReport"
    return PossibleRepeatOrder(
        institution=r.order.institution,
        order_id=r.order.order_id,
        placed_at=r.order.placed_at,
        status=r.order.status,
        avoided=r.avoided,
        test_system=r.test.system,
        test_code=r.test.code,
        test_display=r.test.display,
        prior_institution=r.prior.institution,
        prior_result_id=r.prior.result_id,
        prior_reported_at=r.prior.reported_at,
        fhir_order=f"ServiceRequest/{order_id(r.order.institution, r.order.order_id)}",
        fhir_prior=f"{kind}/{resource_id(kind, r.prior.institution, r.prior.result_id)}",
    )


@router.get(
    "/{person_id}/possible-repeats",
    summary="Orders of this person flagged as possible repeats (mutual recognition)",
)
async def possible_repeats(
    person_id: uuid.UUID, request: Request, gateway: GatewayDep, principal: PrincipalDep
) -> list[PossibleRepeatOrder]:
    """Orders for a test the person already had a still-valid result of at another member,
    where the clinician may see both members; the flag the projection keeps for each."""
    found = await _recognition_read(person_id, request, gateway, principal, reads.read_repeats)
    return [_repeat(r) for r in found]
