"""Group commit: concurrent requests' lookups and inserts run as one statement each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Grouped(Generic[T, R]):
    """Runs `statement` over every item that arrived while the previous statement ran.

    Nothing waits on a timer: a lone request runs at once; under load, the requests that queue
    behind a running statement go together in the next one, as a database group-commits. An
    item never joins a statement already sent, so a read sees every write committed before
    its request arrived (a revoked credential fails on the next request).
    """

    def __init__(self, statement: Callable[[list[T]], Awaitable[Sequence[R]]]) -> None:
        self._statement = statement
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
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
