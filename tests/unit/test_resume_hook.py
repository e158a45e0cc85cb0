"""The rebalance hook that moves the group to PostgreSQL's positions before faust seeks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from processors.app import resume_hook


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


@dataclass
class Consumer:
    answer: bool
    crashed: bool = False
    committed: list[dict[TP, int]] = field(default_factory=list)

    def assignment(self) -> set[TP]:
        return {TP("c.referral.v1", 0), TP("c.referral.v1", 1), TP("someone-else", 0)}

    async def _commit(self, offsets: dict[TP, int]) -> bool:
        self.committed.append(offsets)
        return self.answer


@dataclass
class App:
    consumer: Consumer


STORED = {("c.referral.v1", 0): 0, ("c.referral.v1", 1): 41}


def run(consumer: Consumer) -> None:
    asked: list[list[tuple[str, int]]] = []

    def positions(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        asked.append(sorted(tps))
        return {tp: STORED[tp] for tp in tps}

    hook: Any = resume_hook(App(consumer), frozenset({"c.referral.v1"}), positions, "referrals")
    asyncio.run(hook(None, signal=None))
    assert asked == [sorted(STORED)]  # only the projection's own partitions


def test_commits_the_stored_positions_of_the_projections_partitions_zero_included() -> None:
    consumer = Consumer(answer=True)
    run(consumer)
    assert consumer.committed == [{TP("c.referral.v1", 0): 0, TP("c.referral.v1", 1): 41}]


def test_a_rebalance_that_overtook_the_commit_is_left_to_the_next_recovery() -> None:
    run(Consumer(answer=False, crashed=False))  # faust: "already rebalanced"; no exception


def test_a_commit_that_crashed_the_consumer_ends_the_worker() -> None:
    with pytest.raises(RuntimeError, match="could not move the group"):
        run(Consumer(answer=False, crashed=True))
