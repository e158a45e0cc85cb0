"""The shortened fault campaign: three brokers, every kind of fault, nothing lost or doubled."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.campaign import run_campaign
from chaos.plan import SHORT
from chaos.summary import Summary
from chaos.verify import LogContents, order_violations


@given(
    st.lists(st.permutations(range(6)), min_size=1, max_size=4),
    st.sets(st.integers(0, 5), max_size=2),
)
def test_the_order_check_flags_exactly_the_keys_the_log_holds_out_of_order(
    orders: list[list[int]], unlogged: set[int]
) -> None:
    # Key k's six events were published in sequence 0..5; the log holds them in `orders[k]`,
    # except those never written (absent events are the loss check's business, not order's).
    log = LogContents({}, Counter(), {}, 0, 0)
    sequence: dict[uuid.UUID, int] = {}
    expected = 0
    for k, order in enumerate(orders):
        ids = [uuid.uuid4() for _ in order]
        for n, event_id in enumerate(ids):
            sequence[event_id] = k * 10 + n
        logged = [n for n in order if n not in unlogged]
        for offset, n in enumerate(logged):
            log.first[ids[n]] = ("t", 0, k * 100 + offset)
            log.keys[ids[n]] = f"H|{k}".encode()
        expected += logged != sorted(logged)

    assert order_violations(log, sequence) == expected


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> Summary:
    """One shortened campaign on servers of its own (its progress lines go to the test log)."""
    outcome = run_campaign(SHORT, print, Path(tmp_path_factory.mktemp("chaos")))
    print("\n".join(outcome.lines()))
    return outcome


@pytest.mark.cluster
def test_the_campaign_ran_every_fault_of_its_plan(summary: Summary) -> None:
    assert summary.failures == []
    kinds = [f.kind for f in summary.faults]
    assert kinds.count("leader SIGKILL") == SHORT.leader_kills
    assert kinds.count("broker SIGSTOP") == 1
    assert kinds.count("processor SIGKILL") == SHORT.processor_kills
    assert kinds.count("group grow") == kinds.count("group shrink") == 1
    assert kinds.count("postgres restart") == SHORT.postgres_restarts


@pytest.mark.cluster
def test_every_acknowledged_event_is_in_the_log_and_sdk_keys_keep_their_order(
    summary: Summary,
) -> None:
    assert summary.offered == SHORT.events
    assert summary.acknowledged["gateway"] > 0 and summary.acknowledged["sdk"] > 0
    # The two-brokers-down probe's events are acknowledged once the brokers are back.
    assert sum(summary.acknowledged.values()) >= SHORT.events
    assert summary.refusals == []
    assert summary.lost == 0
    assert summary.log_distinct >= sum(summary.acknowledged.values())
    assert summary.sdk_keys > 0 and summary.order_violations == 0


@pytest.mark.cluster
def test_every_projection_equals_a_clean_rebuild_and_counts_each_event_once(
    summary: Summary,
) -> None:
    assert {p.name for p in summary.projections} >= {"referrals", "transfers", "reporting"}
    for verdict in summary.projections:
        assert verdict.digest_live == verdict.digest_rebuilt, verdict.name
        assert verdict.applied == verdict.distinct, verdict.name
        assert verdict.missing == verdict.extra == verdict.not_in_log == 0, verdict.name
    assert summary.doubled == 0 and summary.digests_equal
    assert sum(p.applied for p in summary.projections if p.name == "referrals") > 0


@pytest.mark.cluster
def test_with_two_brokers_down_the_gateway_answers_503_and_accepts_once_they_return(
    summary: Summary,
) -> None:
    two = summary.two_down
    assert two.statuses_down and set(two.statuses_down) == {503}
    assert two.stored_down == 0
    assert two.status_back == 202
    assert two.ok


@pytest.mark.cluster
def test_the_summary_passes_as_a_whole(summary: Summary) -> None:
    assert summary.problems() == []
    assert summary.ok
