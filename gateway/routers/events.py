"""`POST /v1/events`: publish one event or a batch, answered after Kafka acknowledged all."""

from __future__ import annotations

import asyncio
from uuid import UUID

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from gateway.body import read_limited
from gateway.config import INLINE_BYTES, MAX_BATCH
from gateway.deps import GatewayDep, PendingPrincipalDep
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


def accepted(outcome: Outcome) -> Response:
    """The 202 answer; a retry of the same events gets the same body.

    Built as plain JSON by orjson, the shape `EventsAccepted` documents: a pydantic model per
    delivery was a tenth of the gateway's CPU for a batch of 500, and `str(UUID)` with the
    standard encoder most of the rest (orjson writes UUIDs itself)."""
    body = {
        "accepted": len(outcome.deliveries),
        "deliveries": [
            {"event_id": d.event_id, "topic": d.topic, "partition": d.partition, "offset": d.offset}
            for d in outcome.deliveries
        ],
    }
    return Response(
        orjson.dumps(body),
        status_code=202,
        media_type="application/json",
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
    request: Request, gateway: GatewayDep, pending: PendingPrincipalDep
) -> Response:
    """Validate, authorise and publish; 202 only once Kafka acknowledged every event.

    A small body (`Content-Length` up to INLINE_BYTES: single events) is read and validated
    first, then its credential and event ids are read in one statement. For a larger one the
    credential is read while the body is read, and the body validated once the credential is
    known (no CPU for a caller without one). Either way a bad credential is answered 401
    before anything the body got wrong."""
    try:
        kind = request.headers.get("content-type", "application/json")
        if "json" not in kind.lower():
            raise ProblemError(415, "Unsupported media type", "send application/json")
        declared = request.headers.get("content-length", "")
        if not (declared.isdigit() and int(declared) <= INLINE_BYTES):
            pending.start()
        raw = await read_limited(request, gateway.config.max_body_bytes)
        if len(raw) <= INLINE_BYTES:
            events, batch = parse_events(raw, MAX_BATCH)
        else:
            # Validating a large body is CPU work (up to 8 MiB): only for a known credential,
            # so a caller without one costs no validation (the read overlapped the lookup).
            await pending.principal()
            # A thread keeps the loop answering others.
            events, batch = await anyio.to_thread.run_sync(parse_events, raw, MAX_BATCH)
    except ProblemError:
        await pending.principal()
        raise
    except BaseException:
        pending.cancel()
        raise
    ids = list(dict.fromkeys(e.envelope.event_id for e in events))
    if pending.started:
        lookup = asyncio.ensure_future(gateway.ingest.look_up(ids))
        lookup.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            principal = await pending.principal()
        except BaseException:
            lookup.cancel()
            raise
        known = await lookup
    else:
        principal, known = await pending.principal_and_known(ids)
    client = request.client.host if request.client else None
    outcome = await gateway.ingest.submit(
        principal, events, batch=batch, client=client, known_ahead=known
    )
    return accepted(outcome)
