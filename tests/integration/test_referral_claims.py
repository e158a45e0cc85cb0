"""Who requested a referral id first, against real PostgreSQL (gateway/referral_claims.py).

Whatever the order and the duplicates of the ids asked for, the answer is the ids another
institution holds, and the rest are the caller's; two callers claiming overlapping ids in
opposite orders at once never deadlock (the statement inserts in id order)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from gateway.referral_claims import requested_by_others

MINE, OTHERS = "439901-V017", ("439901-T03", "439901-C01")


def holders(url: str, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT referral_id, institution FROM gateway_referral_requesters"
            " WHERE referral_id = ANY(%s)",
            (list(ids),),
        ).fetchall()
    return dict(rows)


async def claiming(url: str, *calls: tuple[str, Sequence[uuid.UUID]]) -> list[set[uuid.UUID]]:
    """Each call's answer, the calls run at once on a pool like the gateway's."""
    async with AsyncConnectionPool(
        url, min_size=len(calls), max_size=len(calls), kwargs={"autocommit": True}
    ) as pool:
        return await asyncio.gather(
            *(requested_by_others(pool, institution, ids) for institution, ids in calls)
        )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    held=st.lists(st.sampled_from([None, *OTHERS, MINE]), min_size=6, max_size=6),
    asked=st.lists(st.integers(0, 5), max_size=12),
)
def test_the_answer_is_the_ids_others_hold_whatever_the_order_and_duplicates(
    database_url: str, held: list[str | None], asked: list[int]
) -> None:
    ids = [uuid.uuid4() for _ in held]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for referral_id, institution in zip(ids, held, strict=True):
            if institution is not None:
                conn.execute(
                    "INSERT INTO gateway_referral_requesters (referral_id, institution)"
                    " VALUES (%s, %s)",
                    (referral_id, institution),
                )
    wanted = [ids[i] for i in asked]
    [taken] = asyncio.run(claiming(database_url, (MINE, wanted)))
    assert taken == {ids[i] for i in asked if held[i] in OTHERS}
    after = holders(database_url, ids)
    for i, institution in enumerate(held):  # the caller now holds what was free; nothing moved
        expected = MINE if institution is None and i in asked else institution
        assert after.get(ids[i]) == expected


def test_opposite_orders_at_once_never_deadlock_and_each_id_has_one_holder(
    database_url: str,
) -> None:
    for _ in range(5):
        ids = [uuid.uuid4() for _ in range(300)]
        first, second = OTHERS
        a, b = asyncio.run(claiming(database_url, (first, ids), (second, ids[::-1])))
        owners = holders(database_url, ids)
        assert set(owners) == set(ids)
        assert a == {i for i, who in owners.items() if who == second}
        assert b == {i for i, who in owners.items() if who == first}
