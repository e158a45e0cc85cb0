"""The patient index's review queue: open reviews, and an administrator's decision as an event."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
import psycopg
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from events.membership import CODE_PATTERN
from events.person import ReviewDecision
from events.publisher import PublishError
from gateway import review_claims
from gateway.audit import Subject, audit
from gateway.deps import GatewayDep, PrincipalDep
from gateway.ingest import settled
from gateway.openapi import PROBLEM_RESPONSES
from gateway.principals import Principal, Role
from gateway.problems import ProblemError
from projections.empi.reviews import review_decision
from projections.empi.store import open_reviews

router = APIRouter(
    prefix="/v1/identity",
    tags=["identity"],
    responses={
        404: {**PROBLEM_RESPONSES[401], "description": "No such review."},
        409: {
            **PROBLEM_RESPONSES[401],
            "description": "The review is closed (decided or superseded).",
        },
    },
)

log = logging.getLogger(__name__)

PURPOSE = "HOPERAT"  # HL7 v3 PurposeOfUse: healthcare operations


class Review(BaseModel):
    """A local record that may belong to a person, waiting for an administrator."""

    review_id: uuid.UUID
    institution: str
    local_id: str
    person_id: uuid.UUID
    current_person_id: uuid.UUID
    candidate_institution: str
    candidate_local_id: str
    score: float
    agreement: Any
    requested_at: datetime


class Decision(BaseModel):
    """An administrator's answer to one review."""

    decision: ReviewDecision = Field(description="SAME_PERSON or DIFFERENT_PERSONS")
    note: str | None = Field(default=None, max_length=2000)


class DecisionAccepted(BaseModel):
    """The decision event, acknowledged by Kafka; the index applies it when it reads it."""

    event_id: uuid.UUID
    topic: str
    partition: int
    offset: int


def _administrator(principal: Principal) -> None:
    if principal.role is not Role.ADMINISTRATOR:
        raise ProblemError(403, "Forbidden", "only an administrator works the review queue")


def _subjects(review: dict[str, Any]) -> list[Subject]:
    return [
        Subject(review["current_person_id"], review["institution"], review["local_id"]),
        Subject(review["person_id"], review["candidate_institution"], review["candidate_local_id"]),
    ]


def _open_reviews(database_url: str, limit: int, institution: str | None) -> list[dict[str, Any]]:
    # The index's queries are synchronous; the queue is read rarely, by administrators.
    with psycopg.connect(database_url) as conn:
        return open_reviews(conn, limit=limit, institution=institution)


@router.get("/reviews", summary="Open match reviews, oldest first")
async def list_reviews(
    request: Request,
    gateway: GatewayDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    institution: Annotated[
        str | None,
        Query(pattern=CODE_PATTERN.pattern, description="only one member's records"),
    ] = None,
) -> list[Review]:
    """Both records of every review shown are audited as read."""
    _administrator(principal)
    rows = await anyio.to_thread.run_sync(
        _open_reviews, gateway.config.database_url, limit, institution
    )
    await audit(request, principal, [s for r in rows for s in _subjects(r)], purpose=PURPOSE)
    return [Review.model_validate(r) for r in rows]


@router.post(
    "/reviews/{review_id}/decision",
    status_code=202,
    summary="Decide a review: publishes MatchReviewDecided",
)
async def decide_review(
    review_id: uuid.UUID, decision: Decision, gateway: GatewayDep, principal: PrincipalDep
) -> DecisionAccepted:
    """202 once Kafka acknowledged the decision; 409 when the review is no longer open or
    another decision of it was accepted (or is being published) already; 503 with Retry-After
    when Kafka did not take it (final: never delivered later, the review may be answered
    again), 422 when Kafka refused it for good."""
    _administrator(principal)
    if decision.decision is ReviewDecision.UNKNOWN:
        raise ProblemError(422, "Unprocessable content", "decide SAME_PERSON or DIFFERENT_PERSONS")
    async with gateway.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT person_id, institution, local_id, status FROM empi.reviews"
            " WHERE review_id = %s",
            (review_id,),
        )
        row = await cur.fetchone()
    if row is None:
        raise ProblemError(404, "Not found", "no such review")
    person_id, institution, local_id, status = row
    if status != "open":
        raise ProblemError(409, "Conflict", f"the review is no longer open: {status}")
    event = review_decision(
        review_id=review_id,
        person_id=person_id,
        institution=institution,
        local_id=local_id,
        decision=decision.decision,
        decided_by=str(principal.credential_id),
        administrator_institution=principal.institution,
        decided_at=datetime.now(UTC),
        note=decision.note,
    )
    # The review's row stays open until the index has read an answer: one claim per review id,
    # taken over only once stale (its holder crashed: its publish gave up long before).
    if not await review_claims.claim(gateway.pool, event, gateway.ingest.stale_s):
        raise ProblemError(
            409, "Conflict", "another decision of this review was accepted or is being published"
        )
    try:
        # The events path's publish and deadline: a failure is final, nothing of it is
        # delivered after the 503 (before, librdkafka's own timeout: it still held the answer).
        [delivery] = await gateway.ingest.deliver([event])
    except PublishError as exc:
        # Final: the review may be answered again (docs/empi.md; one that timed out in flight
        # may have been written all the same, and then the first answer read stands).
        await review_claims.release(gateway.pool, event.envelope.event_id)
        if exc.rejected:  # refused for good (too large for the topic): no retry can cure it
            raise ProblemError(
                422,
                "Unprocessable content",
                "Kafka refused the decision for good; it was not recorded",
                kind="event-rejected-by-kafka",
                **settled(exc.stored, exc.failed),
            ) from exc
        raise gateway.ingest.unavailable(
            "kafka-unavailable",
            "Kafka did not acknowledge the decision; it was not recorded, answer again later",
            exc.stored,
            exc.failed,
        ) from exc
    try:
        await review_claims.published(gateway.pool, event.envelope.event_id, delivery.offset)
    except Exception:  # published all the same: the claim stands until stale, then may be taken
        log.exception("review %s: decision published, its claim not marked", review_id)
    return DecisionAccepted(
        event_id=delivery.event_id,
        topic=delivery.topic,
        partition=delivery.partition,
        offset=delivery.offset,
    )
