"""`POST /v1/events`: publish one event or a batch, answered after Kafka acknowledged all."""

from __future__ import annotations

from uuid import UUID

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.body import read_limited
from gateway.config import INLINE_BYTES, MAX_BATCH
from gateway.deps import GatewayDep, PrincipalDep
from gateway.ingest import Outcome
from gateway.openapi import EVENT_BODY, PROBLEM_RESPONSES
from gateway.parsing import parse_events
from gateway.problems import ProblemError

router = APIRouter(prefix="/v1/events", tags=["events"])


class DeliveryPublic(BaseModel):
    """Where Kafka stored one event."""

    event_id: UUID
    topic: str
    partition: int
    offset: int


class EventsAccepted(BaseModel):
    """Every event of the request was acknowledged by Kafka (in request order)."""

    accepted: int
    deliveries: list[DeliveryPublic]


def accepted(outcome: Outcome) -> JSONResponse:
    """The 202 answer; a retry of the same events gets the same body."""
    body = EventsAccepted(
        accepted=len(outcome.deliveries),
        deliveries=[DeliveryPublic(**vars(d)) for d in outcome.deliveries],
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202,
        headers={"Idempotent-Replayed": str(outcome.replayed)},
    )


@router.post(
    "",
    status_code=202,
    response_model=EventsAccepted,
    summary="Publish one event or a batch of up to 1,000",
    responses={
        **PROBLEM_RESPONSES,
        409: {"description": "An event id was already used with different content."},
        503: {"description": "Kafka did not acknowledge every event; `stored` lists those it did."},
    },
    openapi_extra={"requestBody": EVENT_BODY},
)
async def publish_events(
    request: Request, gateway: GatewayDep, principal: PrincipalDep
) -> JSONResponse:
    """Validate, authorise and publish; 202 only once Kafka acknowledged every event."""
    kind = request.headers.get("content-type", "application/json")
    if "json" not in kind.lower():
        raise ProblemError(415, "Unsupported media type", "send application/json")
    raw = await read_limited(request, gateway.config.max_body_bytes)
    if len(raw) <= INLINE_BYTES:
        events, batch = parse_events(raw, MAX_BATCH)
    else:
        # Validating a large body is CPU work: a thread keeps the loop answering other requests.
        events, batch = await anyio.to_thread.run_sync(parse_events, raw, MAX_BATCH)
    client = request.client.host if request.client else None
    outcome = await gateway.ingest.submit(principal, events, batch=batch, client=client)
    return accepted(outcome)
