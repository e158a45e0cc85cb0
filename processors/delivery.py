"""faust's aiokafka consumer with a cheaper delivery of each message to the conductor.

faust 0.15.3's `Consumer._drain_messages` hands every fetched message to the conductor as
`wait_first(callback(message), suspend_flow.wait())`: four tasks (the callback, the suspend
waiter, the service's stopped and crashed waiters) and an `asyncio.wait` per message, so that a
callback blocked on a full stream buffer or on suspended flow control is abandoned when a
rebalance stops the flow (`on_partitions_revoked` would otherwise wait for it forever).

Almost every callback does not block: flow control is open, the producer's buffer is empty
and the stream's queue has room. `DirectDeliveryConsumer` therefore runs the callback's
coroutine itself up to its first suspension. If it finished there, the message is delivered
exactly as faust's own first step of the callback task would have delivered it, with no task.
If it suspended (or the flow is already stopped), the rest of the same coroutine goes through
faust's `wait_first` with the suspend waiter, as before, so a rebalance abandons it as before.
Everything else of the loop (read offsets, gaps, `commit_every`, yielding every 100 messages,
the stop conditions and errors) is faust's code, unchanged. docs/processing.md has the
measurements and the argument.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Mapping
from types import CoroutineType
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka


class _Rest:
    """The rest of a coroutine that already ran up to its first suspension (`yielded`)."""

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        # What `await coro` would do from here on: pass what the coroutine yields to the task
        # that awaits us (a future it waits for, or None for a bare yield), and send or throw
        # what the task sends back (a result, a cancellation) into the coroutine.
        coro, yielded = self._coro, self._yielded
        try:
            while True:
                try:
                    sent = yield yielded
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:  # CancelledError included: into the coroutine
                    yielded = coro.throw(exc)
                else:
                    yielded = coro.send(sent)
        except StopIteration as stop:
            return stop.value


async def _finish(rest: _Rest) -> Any:
    return await rest


Callback = Callable[[Any], Awaitable[Any]]
WaitFirst = Callable[..., Awaitable[Any]]


def deliver_eagerly(
    coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop
) -> asyncio.Task[Any] | None:
    """Run a fresh coroutine up to its first suspension, in a context of its own.

    None when it finished (or raised: the exception propagates, as faust's `wait_first` would
    propagate it); otherwise a task, in that same context, that runs the rest of it.
    """
    context = contextvars.copy_context()  # as a task of its own would have had
    try:
        yielded = context.run(coro.send, None)
    except StopIteration:
        return None
    return loop.create_task(_finish(_Rest(coro, yielded)), context=context)


def delivery(
    callback: Callback,
    message: Any,
    suspend_flow: asyncio.Event,
    wait_first: WaitFirst,
    loop: asyncio.AbstractEventLoop,
) -> Awaitable[Any] | None:
    """Hand `message` to the conductor's `callback`; None when that is done already.

    Otherwise what the fetcher must await: faust's `wait_first` of the callback (or of the rest
    of it) and the suspend event, so that stopping the flow for a rebalance abandons a callback
    that waits (on flow control, a full stream buffer, the producer's buffer), as in faust.
    """
    coro = callback(message)
    if suspend_flow.is_set() or type(coro) is not CoroutineType:
        return wait_first(coro, suspend_flow.wait())  # faust's own way: the callback as a task
    rest = deliver_eagerly(coro, loop)
    if rest is None:
        return None
    return wait_first(rest, suspend_flow.wait())


class DirectDeliveryConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer whose fetcher calls the conductor directly when it can, and
    whose seek to the committed offsets also seeks the partitions committed at 0."""

    async def seek_to_committed(self) -> Mapping[Any, int]:
        # aiokafka seeks only to a committed offset above 0 (`if offset and offset > 0`), so a
        # partition committed at 0 stays wherever its fetcher had got to. faust seeks to the
        # committed offsets to take back what it fetched but did not deliver (after a rebalance,
        # and when a fetch returns while the flow is stopped); a partition's first records,
        # fetched and then dropped so, were never delivered again (docs/reliability.md).
        committed = await super().seek_to_committed()
        at_zero = {tp: 0 for tp, offset in committed.items() if offset == 0}
        if at_zero:
            await self.seek_wait(at_zero)
        return committed

    # faust's loop as it is (its branches and statements), so that a diff against faust shows
    # the one change.
    async def _drain_messages(self, fetcher: Any) -> None:  # noqa: PLR0912, PLR0915
        # faust 0.15.3's `Consumer._drain_messages`, with only the delivery changed (marked).
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        suspend_flow = self.suspend_flow
        wait_first = self.wait_first
        loop = asyncio.get_running_loop()

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            # changed: faust awaited wait_first(callback(message), ...) here
                            pending = delivery(callback, message, suspend_flow, wait_first, loop)
                            if pending is not None:
                                await pending
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class DirectDeliveryTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport with `DirectDeliveryConsumer`."""

    Consumer = DirectDeliveryConsumer


class ProjectionApp(faust.App):
    """A faust app whose consumer delivers messages with `DirectDeliveryConsumer`."""

    def _new_transport(self) -> Any:
        return DirectDeliveryTransport(self.conf.broker_consumer, self)
