"""A referral id belongs to the institution that first requested it through the gateway.

A referral's parties are its earliest request's (projections/referrals/lifecycle.py): the only
order a projection that must give one board for any arrival order can use. So a member that
learnt another's referral id could publish an earlier-dated request with it and become the
referrer. The gateway keeps who requested each id first and refuses another institution's
request of it (409); a retry or a corrected request from the same institution passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from psycopg_pool import AsyncConnectionPool

from projections.frame.claims import array_literal

_CLAIM = (
    "INSERT INTO gateway_referral_requesters (referral_id, institution)"
    " SELECT id, %s FROM unnest(%s::uuid[]) AS x(id) ORDER BY id"
    " ON CONFLICT DO NOTHING RETURNING referral_id"
)
# A statement of its own: it sees a concurrent claim the insert waited for and found taken.
_HOLDERS = (
    "SELECT referral_id FROM gateway_referral_requesters"
    " WHERE referral_id = ANY(%s::uuid[]) AND institution <> %s"
)


async def requested_by_others(
    pool: AsyncConnectionPool, institution: str, referral_ids: Sequence[UUID]
) -> set[UUID]:
    """Claim the referral ids for the institution; those another institution claimed first."""
    wanted = set(referral_ids)
    if not wanted:
        return set()
    async with pool.connection() as conn:
        # In any order: the statement inserts in id order (no two claims wait on each other).
        cur = await conn.execute(_CLAIM, (institution, array_literal(wanted)))
        taken = wanted - {row[0] for row in await cur.fetchall()}
        if not taken:
            return set()
        cur = await conn.execute(_HOLDERS, (array_literal(taken), institution))
        return {row[0] for row in await cur.fetchall()}
