"""One answer per match review: the first decision the gateway publishes for a review id.

The review queue's row (`empi.reviews.status`) changes only when the index has read an answer, so
a second POST in between passed the status check and published a second answer. The gateway now
claims the review id before publishing (migration 0012); a second claim is refused (409). A claim
is released when Kafka did not take the decision (a 503, final: the answer is published with the
events path's deadline, so it is never delivered after it; or a 422), and may be taken over once
stale (its holder crashed or was cancelled before it knew Kafka's verdict; by then librdkafka
gave up on the answer long ago). The index ignores any second answer that still reaches it.
"""

from __future__ import annotations

from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from events.person import MatchReviewDecided

_CLAIM = (
    "INSERT INTO gateway_review_decisions (review_id, event_id, decision, decided_by)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (review_id) DO UPDATE"
    " SET event_id = excluded.event_id, decision = excluded.decision,"
    " decided_by = excluded.decided_by, claimed_at = now()"
    " WHERE gateway_review_decisions.kafka_offset IS NULL"
    " AND gateway_review_decisions.claimed_at < now() - make_interval(secs => %s)"
    " RETURNING review_id"
)


async def claim(pool: AsyncConnectionPool, event: MatchReviewDecided, stale_s: float) -> bool:
    """Claim the review for this answer; False if another answer holds it."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            _CLAIM,
            (
                event.review_id,
                event.envelope.event_id,
                str(event.decision),
                event.decided_by,
                stale_s,
            ),
        )
        return await cur.fetchone() is not None


async def published(pool: AsyncConnectionPool, event_id: UUID, offset: int) -> None:
    """The answer holding the claim was acknowledged by Kafka: the claim is final."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE gateway_review_decisions SET kafka_offset = %s WHERE event_id = %s",
            (offset, event_id),
        )


async def release(pool: AsyncConnectionPool, event_id: UUID) -> None:
    """Kafka did not take the answer: the review may be decided again."""
    async with pool.connection() as conn:
        await conn.execute(
            "DELETE FROM gateway_review_decisions WHERE event_id = %s AND kafka_offset IS NULL",
            (event_id,),
        )
