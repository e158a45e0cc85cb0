"""Group commit: concurrent callers share one statement, and nobody joins one already sent."""

from __future__ import annotations

import asyncio

import pytest

from gateway.grouped import Grouped


class Statements:
    """A statement that records each group it ran and waits until released."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = asyncio.Event()

    async def __call__(self, items: list[int]) -> list[int]:
        self.groups.append(items)
        await self.release.wait()
        if -1 in items:
            raise RuntimeError("the database refused the statement")
        return [item * 10 for item in items]


def test_callers_queued_behind_a_running_statement_go_together_in_the_next() -> None:
    asyncio.run(_callers_queued_behind_a_running_statement_go_together_in_the_next())


async def _callers_queued_behind_a_running_statement_go_together_in_the_next() -> None:
    statements = Statements()
    grouped: Grouped[int, int] = Grouped(statements, in_flight=1)
    first = asyncio.ensure_future(grouped(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert statements.groups == [[1]]  # a lone caller does not wait for company
    later = [asyncio.ensure_future(grouped(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert statements.groups == [[1]]  # not joined to the statement already sent
    statements.release.set()
    assert await first == 10
    assert await asyncio.gather(*later) == [20, 30, 40]
    assert statements.groups == [[1], [2, 3, 4]]


def test_a_failed_statement_fails_its_own_group_only() -> None:
    asyncio.run(_a_failed_statement_fails_its_own_group_only())


async def _a_failed_statement_fails_its_own_group_only() -> None:
    statements = Statements()
    grouped: Grouped[int, int] = Grouped(statements, in_flight=1)
    doomed = [asyncio.ensure_future(grouped(n)) for n in (-1, 5)]
    await asyncio.sleep(0)
    after = asyncio.ensure_future(grouped(6))
    await asyncio.sleep(0)
    statements.release.set()
    for future in doomed:
        with pytest.raises(RuntimeError, match="refused"):
            await future
    assert await after == 60
    assert statements.groups == [[-1, 5], [6]]


def test_a_cancelled_caller_does_not_stop_the_others() -> None:
    asyncio.run(_a_cancelled_caller_does_not_stop_the_others())


async def _a_cancelled_caller_does_not_stop_the_others() -> None:
    statements = Statements()
    grouped: Grouped[int, int] = Grouped(statements, in_flight=1)
    gone = asyncio.ensure_future(grouped(7))
    kept = asyncio.ensure_future(grouped(8))
    await asyncio.sleep(0)
    gone.cancel()
    statements.release.set()
    assert await kept == 80
    with pytest.raises(asyncio.CancelledError):
        await gone


def test_a_second_statement_starts_at_once_and_only_a_busy_pair_makes_callers_gather() -> None:
    asyncio.run(_a_second_statement_starts_at_once_and_only_a_busy_pair_makes_callers_gather())


async def _a_second_statement_starts_at_once_and_only_a_busy_pair_makes_callers_gather() -> None:
    statements = Statements()
    grouped: Grouped[int, int] = Grouped(statements, in_flight=2)
    first = asyncio.ensure_future(grouped(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.ensure_future(grouped(2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert statements.groups == [[1], [2]]  # one in flight: the next caller does not wait for it
    later = [asyncio.ensure_future(grouped(n)) for n in (3, 4)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert statements.groups == [[1], [2]]  # two in flight: callers gather behind them
    statements.release.set()
    assert [await first, await second] == [10, 20]
    assert await asyncio.gather(*later) == [30, 40]
    assert statements.groups == [[1], [2], [3, 4]]


def test_a_caller_arriving_as_the_statements_finish_is_not_left_waiting() -> None:
    asyncio.run(_a_caller_arriving_as_the_statements_finish_is_not_left_waiting())


async def _a_caller_arriving_as_the_statements_finish_is_not_left_waiting() -> None:
    statements = Statements()
    grouped: Grouped[int, int] = Grouped(statements, in_flight=2)

    async def twice(n: int) -> list[int]:
        # The second call comes in the iteration in which both statements have just finished.
        return [await grouped(n), await grouped(n + 10)]

    first = asyncio.ensure_future(twice(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.ensure_future(grouped(2))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    statements.release.set()
    assert await asyncio.wait_for(first, timeout=5) == [10, 110]
    assert await second == 20
