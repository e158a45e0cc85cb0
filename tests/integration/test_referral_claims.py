"""Who requested a referral id first, against real PostgreSQL (gateway/referral_claims.py).

Whatever the order and the duplicates of the ids asked for, the answer is the ids another
institution holds and those the caller requested already with other content, and the rest are
the caller's; two callers claiming overlapping ids in opposite orders at once never deadlock
(the statement inserts in id order)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool

from gateway.referral_claims import claim_requests

MINE, OTHERS = "439901-V017", ("439901-T03", "439901-C01")
SAME, CHANGED = bytes(32), bytes([1] * 32)  # two requests' digests


async def requested_by_others(
    pool: AsyncConnectionPool, institution: str, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """The ids another institution holds, each asked with the same request."""
    refused = await claim_requests(pool, institution, {i: {SAME} for i in ids})
    assert not refused.changed
    return set(refused.of_others)


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
                    "INSERT INTO gateway_referral_requesters"
                    " (referral_id, institution, request_sha256) VALUES (%s, %s, %s)",
                    (referral_id, institution, SAME),
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


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    held=st.lists(
        st.sampled_from([None, (MINE, SAME), (MINE, CHANGED), (MINE, None), (OTHERS[0], SAME)]),
        min_size=5,
        max_size=5,
    ),
    asked=st.lists(st.tuples(st.integers(0, 4), st.sampled_from([SAME, CHANGED])), max_size=10),
)
def test_a_request_other_than_the_first_of_its_id_is_refused_whatever_the_order(
    database_url: str,
    held: list[tuple[str, bytes | None] | None],
    asked: list[tuple[int, bytes]],
) -> None:
    """The caller's earlier request of an id with another digest, or two digests for one id in
    one call, refuse it; a claim without a digest (None: made before digests were kept, or
    forgotten) passes its holder's request and keeps its digest."""
    ids = [uuid.uuid4() for _ in held]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for referral_id, holder in zip(ids, held, strict=True):
            if holder is not None:
                conn.execute(
                    "INSERT INTO gateway_referral_requesters"
                    " (referral_id, institution, request_sha256) VALUES (%s, %s, %s)",
                    (referral_id, *holder),
                )
    requests: dict[uuid.UUID, set[bytes]] = {}
    for i, digest in asked:
        requests.setdefault(ids[i], set()).add(digest)

    async def claim() -> object:
        async with AsyncConnectionPool(database_url, kwargs={"autocommit": True}) as pool:
            return await claim_requests(pool, MINE, requests)

    refused = asyncio.run(claim())
    others = {ids[i] for i, h in enumerate(held) if h is not None and h[0] != MINE}
    asked_ids = {ids[i] for i, _ in asked}
    changed = set()
    for i, holder in enumerate(held):
        digests = requests.get(ids[i], set())
        if not digests or ids[i] in others:
            continue
        first = None if holder is None else holder[1]
        if len(digests) > 1 or (holder is not None and first is not None and digests != {first}):
            changed.add(ids[i])
    assert refused.of_others == others & asked_ids  # type: ignore[attr-defined]
    assert refused.changed == changed  # type: ignore[attr-defined]
    with psycopg.connect(database_url) as conn:  # what was free is the caller's, first asked
        rows = dict(
            conn.execute(
                "SELECT referral_id, request_sha256 FROM gateway_referral_requesters"
                " WHERE referral_id = ANY(%s)",
                (ids,),
            ).fetchall()
        )
    for i, holder in enumerate(held):
        digests = requests.get(ids[i], set())
        if holder is None:
            expected = next(iter(digests)) if len(digests) == 1 else None
            assert rows.get(ids[i]) == expected
        elif holder[1] is None and holder[0] == MINE and len(digests) == 1:
            # A holder's row without a digest (older, or forgotten after a failed publish)
            # takes its holder's next request's.
            assert rows[ids[i]] == next(iter(digests))
        else:
            assert rows[ids[i]] == holder[1]
