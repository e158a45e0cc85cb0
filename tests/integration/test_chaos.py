"""The shortened fault campaign: three brokers, every kind of fault, nothing lost or doubled."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.campaign import run_campaign
from chaos.plan import SHORT
from chaos.summary import Summary

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> Summary:
    """One shortened campaign on servers of its own (its progress lines go to the test log)."""
    outcome = run_campaign(SHORT, print, Path(tmp_path_factory.mktemp("chaos")))
    print("\n".join(outcome.lines()))
    return outcome


def test_the_campaign_ran_every_fault_of_its_plan(summary: Summary) -> None:
    assert summary.failures == []
    kinds = [f.kind for f in summary.faults]
    assert kinds.count("leader SIGKILL") == SHORT.leader_kills
    assert kinds.count("broker SIGSTOP") == 1
    assert kinds.count("processor SIGKILL") == SHORT.processor_kills
    assert kinds.count("group grow") == kinds.count("group shrink") == 1
    assert kinds.count("postgres restart") == SHORT.postgres_restarts


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


def test_with_two_brokers_down_the_gateway_answers_503_and_accepts_once_they_return(
    summary: Summary,
) -> None:
    two = summary.two_down
    assert two.statuses_down and set(two.statuses_down) == {503}
    assert two.stored_down == 0
    assert two.status_back == 202
    assert two.ok


def test_the_summary_passes_as_a_whole(summary: Summary) -> None:
    assert summary.problems() == []
    assert summary.ok
