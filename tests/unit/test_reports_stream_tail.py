"""The reports stream's Kafka thread when the stream's event loop is gone before it."""

from __future__ import annotations

import asyncio
import threading
import warnings

from gateway.routers.reports import _Tail


def test_a_change_handed_after_the_loop_closed_is_dropped_quietly() -> None:
    """The thread may hold a message when the stream ends and its loop closes: handing it must
    end the thread's loop (False), not raise out of the thread (a traceback on every such end)
    and leave a coroutine never awaited."""
    loop = asyncio.new_event_loop()
    tail = object.__new__(_Tail)
    tail._loop = loop
    tail.queue = asyncio.Queue(maxsize=1)
    tail.stop = threading.Event()
    loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tail._hand(("0", "daily", {})) is False
