"""A referral id belongs to the institution that first requested it through the gateway, and
names the request it first asked.

A referral's parties are its earliest request's (projections/referrals/lifecycle.py): the only
order a projection that must give one board for any arrival order can use. So a member that
learnt another's referral id could publish an earlier-dated request with it and become the
referrer. The gateway keeps who requested each id first and refuses another institution's
request of it (409). The board applies that one request only, so a later request of the id
with other content (a re-referral to another receiver, another urgency) would be published and
then ignored: it is refused too (409); the same request again (a resend under a new event id)
passes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from events.referral import ReferralRequested
from projections.frame.claims import array_literal

# A holder's row without a digest (claimed before 0017, or forgotten after a failed publish)
# takes the digest of its holder's next request.
_CLAIM = (
    "INSERT INTO gateway_referral_requesters AS r (referral_id, institution, request_sha256)"
    " SELECT id, %s, sha FROM unnest(%s::uuid[], %s::bytea[]) AS x(id, sha) ORDER BY id"
    " ON CONFLICT (referral_id) DO UPDATE SET request_sha256 = EXCLUDED.request_sha256"
    " WHERE r.request_sha256 IS NULL AND r.institution = EXCLUDED.institution"
    " RETURNING referral_id"
)
# A request none of whose events reached Kafka asked nothing: its holder may ask otherwise.
_FORGET = (
    "UPDATE gateway_referral_requesters r SET request_sha256 = NULL"
    " FROM unnest(%s::uuid[], %s::bytea[]) AS x(id, sha)"
    " WHERE r.referral_id = x.id AND r.institution = %s AND r.request_sha256 = x.sha"
)
# A statement of its own: it sees a concurrent claim the insert waited for and found taken.
_HOLDERS = (
    "SELECT referral_id, institution, request_sha256 FROM gateway_referral_requesters"
    " WHERE referral_id = ANY(%s::uuid[])"
)


def request_digest(event: ReferralRequested) -> bytes:
    """SHA-256 of what a request asks: its body, sender and patient, not its envelope's ids or
    times (a resend under a new event id, or stamped again, is the same request)."""
    body = event.model_dump(mode="json", exclude={"envelope"})
    asked = {
        "body": body,
        "source": event.envelope.source,
        "patient_local_id": event.envelope.patient_local_id,
    }
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).digest()


@dataclass(frozen=True, slots=True)
class Refused:
    """The referral ids a request may not publish: held by another institution, or requested
    already with other content (by the caller earlier, or twice in one request)."""

    of_others: frozenset[UUID]
    changed: frozenset[UUID]
    claimed: Mapping[UUID, bytes] = field(default_factory=dict)  # digests this call set


async def claim_requests(
    pool: AsyncConnectionPool, institution: str, requests: Mapping[UUID, set[bytes]]
) -> Refused:
    """Claim the referral ids for the institution with their requests' digests; the refused."""
    changed = {rid for rid, digests in requests.items() if len(digests) != 1}
    wanted = {rid: next(iter(d)) for rid, d in requests.items() if len(d) == 1}
    others: set[UUID] = set()
    async with pool.connection() as conn:
        claimed: set[UUID] = set()
        if wanted:
            # In any order: the statement inserts in id order (no two claims wait on each other).
            ids = sorted(wanted)
            cur = await conn.execute(
                _CLAIM, (institution, array_literal(ids), [wanted[i] for i in ids])
            )
            claimed = {row[0] for row in await cur.fetchall()}
        taken = set(requests) - claimed
        if taken:
            cur = await conn.execute(_HOLDERS, (array_literal(taken),))
            for rid, holder, digest in await cur.fetchall():
                if holder != institution:
                    others.add(rid)
                elif rid in wanted and digest is not None and bytes(digest) != wanted[rid]:
                    changed.add(rid)
    mine = {rid: wanted[rid] for rid in claimed}
    return Refused(frozenset(others), frozenset(changed - others), mine)


async def forget_requests(
    pool: AsyncConnectionPool, institution: str, digests: Mapping[UUID, bytes]
) -> None:
    """Drop the digests a request set when none of its requests was published (a final 503, a
    refusal by Kafka), so that its holder may send another request of the id; the id stays the
    holder's. If this fails, the holder must resend the same request (the 409 says so)."""
    if not digests:
        return
    ids = sorted(digests)
    async with pool.connection() as conn:
        await conn.execute(_FORGET, (array_literal(ids), [digests[i] for i in ids], institution))
