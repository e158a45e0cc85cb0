"""Group commit: concurrent requests' lookups and inserts run as one statement each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
# Statements of one kind in flight at once. With one, a request that arrives while a statement
# runs waits for it and then for its own (two round trips); with two, it starts its own at once
# unless the load already keeps two busy, and only then do requests gather (docs/gateway.md).
IN_FLIGHT = 2


class Grouped(Generic[T, R]):
    """Runs `statement` over the items that arrived while the statements in flight ran.

    Nothing waits on a timer: while fewer than `in_flight` statements run, an item goes out in
    the next loop iteration (with whatever arrived in the same iteration); under load, the items
    that queue behind the running statements go together in the next one, as a database
    group-commits. An item never joins a statement already sent, so a read sees every write
    committed before its request arrived (a revoked credential fails on the next request).
    """

    def __init__(
        self,
        statement: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        in_flight: int | None = None,
    ) -> None:
        self._statement = statement
        self._limit = IN_FLIGHT if in_flight is None else in_flight
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # A task started that has not taken its group yet: later arrivals join it.
        self._starting = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): what the old one ran is gone
            self._loop, self._waiting, self._tasks, self._starting = loop, [], set(), False
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if not self._starting and len(self._tasks) < self._limit:
            self._starting = True
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        return await future

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():  # perhaps before it took its group: let the next caller start one
            self._starting = False

    async def _drain(self) -> None:
        self._starting = False
        try:
            await self._serve_waiting()
        finally:
            # Leave the count in the same step that found nothing waiting: a done callback runs
            # an iteration later, and a caller arriving meanwhile would wait for no statement.
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)

    async def _serve_waiting(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                results = await self._statement([item for item, _ in group])
            except Exception as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:  # cancelled (shutdown): nobody may wait forever
                for _, future in [*group, *self._waiting]:
                    future.cancel()
                raise
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)
