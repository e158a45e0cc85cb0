"""The stall watch of a faust worker: notice a partition standing still, say why, move it.

The bookkeeping is `processors.stalls`; this module is its faust side: a timer that reads the
assigned partitions' log ends and stored positions, and the remedies, climbed one rung per
report of the same stall (docs/reliability.md, "A worker stops short of the log end"):

0. seek the partition to its PostgreSQL position and resume it, in faust's bookkeeping and in
   aiokafka's (the seek runs on aiokafka's own thread, as every other call into it does);
1. ask the group to rebalance, which resets faust's per-partition state and seeks every
   partition again through the worker's `on_rebalance_complete` hook;
2. leave the process with EXIT_STALLED; a supervisor (`consortium process all`, the chaos fleet)
   starts it again, and it resumes from PostgreSQL.

Every report logs, at WARNING, what faust and aiokafka hold for the partition, so that a stall
seen in CI can be read afterwards.

A chaos hook makes the fault on purpose for the tests: CONSORTIUM_CHAOS_STALL="MODE:TOPIC:P".
`pause` takes the partition out of faust's active set once (rung 0 cures it); `drop` throws
away its records before the agent sees them until the group next rebalances (rung 1 cures it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from processors.stalls import REJOIN, RESEEK, StallWatch

log = logging.getLogger(__name__)

EXIT_STALLED = 75
"""The exit status of a worker that left because a partition stayed stalled (EX_TEMPFAIL)."""

CHAOS_ENV = "CONSORTIUM_CHAOS_STALL"

Key = tuple[str, int]
Positions = Callable[[list[Key]], Mapping[Key, int]]


@dataclass
class Chaos:
    """A stall made on purpose (see the module's note); none unless the variable is set."""

    mode: str
    partition: Key
    applied: bool = False
    generation: int | None = None

    @classmethod
    def from_env(cls, value: str | None) -> Chaos | None:
        if not value:
            return None
        mode, _, rest = value.partition(":")
        topic, _, partition = rest.rpartition(":")
        if mode not in ("pause", "drop") or not topic or not partition.isdigit():
            raise ValueError(f"{CHAOS_ENV} must be pause|drop:TOPIC:PARTITION, not {value!r}")
        return cls(mode, (topic, int(partition)))

    def drops(self, key: Key, generation: int) -> bool:
        """In `drop` mode, whether this record of `key` is thrown away before the agent."""
        if self.mode != "drop" or key != self.partition:
            return False
        if self.generation is None:
            self.generation = generation
            log.warning("chaos: dropping records of %s[%d] until a rebalance", *key)
        return generation == self.generation


def _key(tp: Any) -> Key:
    return (tp.topic, tp.partition)


async def _on_kafka_thread(consumer: Any, work: Callable[[Any], Any]) -> Any:
    """Run `work(aiokafka_consumer)` on aiokafka's own thread and loop, where it is safe."""

    async def call() -> Any:
        return work(consumer._thread._ensure_consumer())

    return await consumer._thread.call_thread(call)


def _kafka_side(kafka: Any, tps: list[Any]) -> dict[Key, str]:
    paused = set(kafka.paused())
    fetched = getattr(kafka._fetcher, "_records", {})
    out = {}
    for tp in tps:
        try:
            state = kafka._subscription.subscription.assignment.state_value(tp)
            position = f"position {state._position} status {state._status}"
        except Exception as exc:  # a diagnostic never breaks the remedy
            position = f"position unknown ({exc!r})"
        out[_key(tp)] = (
            f"{position}, paused {tp in paused}, buffered {tp in fetched},"
            f" highwater {kafka.highwater(tp)}"
        )
    return out


async def describe(consumer: Any, tps: list[Any]) -> dict[Key, str]:
    """What faust and aiokafka hold for each partition, one line each."""
    try:
        kafka = await _on_kafka_thread(consumer, lambda k: _kafka_side(k, tps))
    except Exception as exc:
        kafka = {_key(tp): f"aiokafka unreadable ({exc!r})" for tp in tps}
    active = consumer._active_partitions or set()
    return {
        _key(tp): (
            f"faust: read offset {consumer._read_offset.get(tp)}, active {tp in active},"
            f" paused {tp in consumer._paused_partitions},"
            f" buffered {tp in consumer._buffered_partitions},"
            f" flow {consumer.flow_active}; aiokafka: {kafka[_key(tp)]}"
        )
        for tp in tps
    }


async def reseek(consumer: Any, positions: Mapping[Any, int]) -> None:
    """Resume the partitions and seek them to `positions`, in faust's state and aiokafka's."""
    tps = set(positions)
    consumer.resume_partitions(tps)
    consumer._buffered_partitions.difference_update(tps)

    def resume(kafka: Any) -> None:
        paused = tps & set(kafka.paused())
        if paused:
            kafka.resume(*paused)

    await _on_kafka_thread(consumer, resume)
    await consumer.seek_wait(positions)  # faust's seek on aiokafka's thread, read offsets too


async def rejoin(consumer: Any) -> None:
    """Ask the group coordinator for a rebalance of this worker's group."""
    await _on_kafka_thread(consumer, lambda kafka: kafka._coordinator.request_rejoin())


def stall_timer(
    app: Any,
    topics: frozenset[str],
    watch: StallWatch[Key],
    positions: Positions,
    chaos: Chaos | None = None,
    exit_process: Callable[[int], object] = os._exit,
) -> Callable[[], Awaitable[None]]:
    """The coroutine a faust timer runs: observe, then climb the remedies of each stall."""

    generation = app.consumer_generation_id

    async def check() -> None:
        try:
            await observe_and_move()
        except Exception:  # the watch must never be what stops a worker by accident
            log.exception("stall watch: a round failed; it runs again")

    async def observe_and_move() -> None:
        nonlocal generation
        consumer = app.consumer
        if app.rebalancing or not consumer.flow_active:
            return
        if app.consumer_generation_id != generation:
            generation = app.consumer_generation_id
            watch.rebalanced(time.monotonic())
            log.info("stall watch: the group rebalanced (generation %d)", generation)
        mine = sorted((tp for tp in consumer.assignment() if tp.topic in topics), key=_key)
        if not mine:
            return
        if chaos is not None and chaos.mode == "pause" and not chaos.applied:
            frozen = [tp for tp in mine if _key(tp) == chaos.partition]
            if frozen:
                consumer.pause_partitions(frozen)
                chaos.applied = True
                log.warning("chaos: paused %s[%d] in faust", *chaos.partition)
        try:
            # The high watermarks of the last fetch responses; a network round only for the
            # partitions with none yet (asked on aiokafka's thread, it waits for its fetch).
            ends = {tp: consumer.highwater(tp) for tp in mine}
            unknown = [tp for tp, end in ends.items() if end is None]
            if unknown:
                ends.update(await consumer.highwaters(*unknown))
            stored = await asyncio.to_thread(positions, [_key(tp) for tp in mine])
        except Exception as exc:
            log.warning("stall watch: log ends or positions unreadable (%r); next round", exc)
            return
        by_key = {_key(tp): tp for tp in mine}
        ends_by_key = {_key(tp): int(end) for tp, end in ends.items() if end is not None}
        stalled = watch.observe(time.monotonic(), stored, ends_by_key)
        if not stalled:
            return
        tps = [by_key[k] for k, _ in stalled]
        states = await describe(consumer, tps)
        for key, rung in stalled:
            log.warning(
                "stall watch: %s[%d] stored %d of %d with no progress for %.0f s (rung %d); %s",
                *key, stored.get(key, 0), ends_by_key[key], watch.after_s * (rung + 1), rung,
                states[key],
            )  # fmt: skip
        top = max(rung for _, rung in stalled)
        if top == RESEEK:
            moved = {tp: stored.get(key, 0) for (key, _), tp in zip(stalled, tps, strict=True)}
            log.warning("stall watch: resuming and seeking %s", _names(moved))
            await reseek(consumer, moved)
        elif top == REJOIN:
            log.warning("stall watch: asking the group to rebalance")
            await rejoin(consumer)
        else:
            log.error("stall watch: still stalled after a rebalance; leaving (%d)", EXIT_STALLED)
            exit_process(EXIT_STALLED)

    return check


def _names(positions: Mapping[Any, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}] to {offset}" for tp, offset in positions.items())
