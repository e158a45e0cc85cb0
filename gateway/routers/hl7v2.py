"""`POST /v1/hl7v2`: HL7 v2 messages in ER7 text, answered with an HL7 ACK."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.body import read_limited
from gateway.deps import GatewayDep, PrincipalDep
from gateway.hl7.service import handle
from gateway.openapi import PROBLEM_RESPONSES

ER7 = "x-application/hl7-v2+er7"

router = APIRouter(prefix="/v1/hl7v2", tags=["hl7v2"])

_ACK = {ER7: {"schema": {"type": "string"}}}


@router.post(
    "",
    summary="Publish the events of one HL7 v2 message (ER7)",
    response_class=Response,
    responses={
        200: {
            "description": "ACK with MSA-1 = AA: every event is stored in Kafka.",
            "content": _ACK,
        },
        400: {"description": "ACK AR: the message cannot be parsed.", "content": _ACK},
        401: PROBLEM_RESPONSES[401],
        413: PROBLEM_RESPONSES[413],
        422: {"description": "ACK AE/AR with ERR segments naming each problem.", "content": _ACK},
        503: {"description": "ACK AR: Kafka did not acknowledge; resend later.", "content": _ACK},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                ER7: {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
)
async def publish_hl7v2(request: Request, gateway: GatewayDep, principal: PrincipalDep) -> Response:
    """ADT^A01/A02/A03/A04/A08, ORM^O01, OML^O21, ORU^R01, REF/RRI^I12; docs/hl7v2-mapping.md."""
    raw = await read_limited(request, gateway.config.max_hl7_bytes)
    answer = await handle(gateway, raw, principal, request.client.host if request.client else None)
    headers = (
        {"Retry-After": str(gateway.config.retry_after_s)} if answer.http_status == 503 else {}
    )
    return Response(
        answer.ack,
        status_code=answer.http_status,
        media_type=f"{ER7}; charset=utf-8",
        headers=headers,
    )
