"""How one reservation statement's rows are shared by the requests of its group (pure)."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from gateway.ingest import reservation_shares

IDS = [uuid.UUID(int=i) for i in range(6)]


@given(
    requests=st.lists(st.lists(st.sampled_from(IDS), unique=True, max_size=4), max_size=5),
    taken=st.sets(st.sampled_from(IDS)),
    published=st.sets(st.sampled_from(IDS)),
    committed_meanwhile=st.sets(st.sampled_from(IDS)),
    lapsed=st.sets(st.sampled_from(IDS)),
)
def test_an_id_reserved_once_goes_to_the_first_request_that_wants_it(
    requests: list[list[uuid.UUID]],
    taken: set[uuid.UUID],
    published: set[uuid.UUID],
    committed_meanwhile: set[uuid.UUID],
    lapsed: set[uuid.UUID],
) -> None:
    wanted = [[(eid, b"d" * 32, "S") for eid in ids] for ids in requests]
    wanted_ids = {eid for ids in requests for eid in ids}
    # Rows only for what the statement did not take: the row it saw (published or reserved),
    # or nothing but the id when another statement reserved it meanwhile (not yet visible).
    rows = [
        (eid, None, None, None, None, None)
        if eid in committed_meanwhile
        else (eid, b"d" * 32, "t", 0, 7 if eid in published else None, eid in lapsed)
        for eid in wanted_ids - taken
    ]
    shares = reservation_shares(wanted, rows)
    holders: dict[uuid.UUID, int] = {}
    for index, (ids, (mine, seen)) in enumerate(zip(requests, shares, strict=True)):
        assert mine <= set(ids) and not mine & set(seen)
        for eid in mine:
            assert eid not in holders  # never two holders of one reservation
            holders[eid] = index
        for eid in ids:
            if eid in taken:
                # taken ids go to their first requester; the others find them in progress
                assert (eid in mine) == (holders.get(eid) == index)
                assert eid not in seen
            elif eid in committed_meanwhile:
                assert eid not in mine and eid not in seen  # in progress: asked again
            else:
                assert (seen[eid].delivery is not None) == (eid in published)
                assert seen[eid].lapsed == (eid in lapsed)
    assert set(holders) == taken & wanted_ids
