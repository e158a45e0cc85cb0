"""The fetcher's delivery of a message (processors/delivery.py): direct when the callback does not
wait, faust's `wait_first` with the suspend event when it does, so a rebalance still abandons it."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import mode
import pytest

from processors.delivery import DirectDeliveryConsumer, ProjectionApp, delivery

Body = Callable[[Any], Awaitable[Any]]
seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="caller")


def _run(body: Callable[[mode.Service, asyncio.Event], Awaitable[None]]) -> None:
    async def main() -> None:
        await body(mode.Service(), asyncio.Event())

    asyncio.run(main())


def _deliver(
    service: mode.Service, suspend: asyncio.Event, callback: Body
) -> Awaitable[Any] | None:
    return delivery(callback, "m", suspend, service.wait_first, asyncio.get_running_loop())


def test_a_callback_that_does_not_wait_is_done_before_delivery_returns_without_a_task() -> None:
    async def body(service: mode.Service, suspend: asyncio.Event) -> None:
        delivered: list[Any] = []
        lock = asyncio.Lock()  # the conductor takes an uncontended lock and puts into a queue

        async def callback(message: Any) -> None:
            async with lock:
                delivered.append(message)

        tasks = len(asyncio.all_tasks())
        assert _deliver(service, suspend, callback) is None
        assert delivered == ["m"]
        assert len(asyncio.all_tasks()) == tasks

    _run(body)


def test_a_callback_that_waits_is_finished_by_the_awaitable_with_its_result() -> None:
    async def body(service: mode.Service, suspend: asyncio.Event) -> None:
        room = asyncio.Event()
        steps: list[str] = []

        async def callback(message: Any) -> str:
            steps.append("first")
            await room.wait()  # a full stream buffer
            steps.append("rest")
            return "done"

        pending = _deliver(service, suspend, callback)
        assert pending is not None
        assert steps == ["first"]  # the first step ran directly
        asyncio.get_running_loop().call_later(0.01, room.set)
        result = await pending
        assert steps == ["first", "rest"]
        assert result.results == ["done"]

    _run(body)


def test_stopping_the_flow_abandons_a_waiting_callback_as_faust_does() -> None:
    async def body(service: mode.Service, suspend: asyncio.Event) -> None:
        ended: list[str] = []

        async def callback(message: Any) -> None:
            try:
                await asyncio.Event().wait()  # flow control suspended: waits forever
            except asyncio.CancelledError:
                ended.append("cancelled")
                raise

        pending = _deliver(service, suspend, callback)
        assert pending is not None
        asyncio.get_running_loop().call_later(0.01, suspend.set)  # on_partitions_revoked
        await asyncio.wait_for(pending, timeout=5)  # no deadlock
        await asyncio.sleep(0)
        assert ended == ["cancelled"]

    _run(body)


def test_when_the_flow_is_stopped_the_callback_runs_as_faust_runs_it() -> None:
    async def body(service: mode.Service, suspend: asyncio.Event) -> None:
        delivered: list[Any] = []

        async def callback(message: Any) -> None:
            delivered.append(message)

        suspend.set()
        pending = _deliver(service, suspend, callback)
        assert pending is not None
        assert delivered == []  # not run directly: a task under wait_first
        await pending
        assert delivered == ["m"]

    _run(body)


def test_an_error_in_the_callback_propagates_before_or_after_it_waited() -> None:
    async def body(service: mode.Service, suspend: asyncio.Event) -> None:
        async def at_once(message: Any) -> None:
            raise ValueError("at once")

        with pytest.raises(ValueError, match="at once"):
            _deliver(service, suspend, at_once)

        async def later(message: Any) -> None:
            await asyncio.sleep(0)
            raise ValueError("later")

        pending = _deliver(service, suspend, later)
        assert pending is not None
        with pytest.raises(ValueError, match="later"):
            await pending

    _run(body)


def test_the_callback_has_a_context_of_its_own_across_its_wait() -> None:
    async def body(service: mode.Service, suspend: asyncio.Event) -> None:
        inside: list[str] = []

        async def callback(message: Any) -> None:
            seen.set("callback")
            await asyncio.sleep(0)
            inside.append(seen.get())

        pending = _deliver(service, suspend, callback)
        assert seen.get() == "caller"  # as with a task of its own
        assert pending is not None
        await pending
        assert inside == ["callback"]

    _run(body)


def test_the_projection_app_uses_the_direct_delivery_consumer() -> None:
    app = ProjectionApp("delivery-test", broker="kafka://127.0.0.1:1", store="memory://")
    assert app.transport.Consumer is DirectDeliveryConsumer
