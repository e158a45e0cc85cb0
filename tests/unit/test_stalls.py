"""The stall watch's bookkeeping: which partitions stand still behind their log end, and when."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.stalls import REJOIN, RESEEK, RESTART, StallWatch
from processors.watchdog import Chaos

A, B = ("t", 0), ("t", 1)


def test_a_partition_behind_and_quiet_is_reported_climbing_the_rungs_ever_more_slowly() -> None:
    watch: StallWatch[tuple[str, int]] = StallWatch(after_s=10)
    assert watch.observe(0, {A: 3}, {A: 5}) == []
    assert watch.observe(9.9, {A: 3}, {A: 5}) == []
    assert watch.observe(10, {A: 3}, {A: 5}) == [(A, RESEEK)]
    assert watch.observe(29, {A: 3}, {A: 5}) == []  # each rung waits one window longer
    assert watch.observe(30, {A: 3}, {A: 5}) == [(A, REJOIN)]
    assert watch.observe(59, {A: 3}, {A: 5}) == []
    assert watch.observe(60, {A: 3}, {A: 5}) == [(A, RESTART)]


def test_caught_up_or_moving_partitions_are_never_reported() -> None:
    watch: StallWatch[tuple[str, int]] = StallWatch(after_s=10)
    for t in range(0, 100, 5):
        # A sits at its end; B moves one record per observation.
        assert watch.observe(t, {A: 7, B: t}, {A: 7, B: 1_000}) == []


def test_progress_or_records_handed_to_the_agent_start_again_at_rung_zero() -> None:
    watch: StallWatch[tuple[str, int]] = StallWatch(after_s=10)
    watch.observe(0, {A: 3}, {A: 5})
    assert watch.observe(10, {A: 3}, {A: 5}) == [(A, RESEEK)]
    assert watch.observe(12, {A: 4}, {A: 5}) == []  # it moved
    assert watch.observe(22, {A: 4}, {A: 5}) == [(A, RESEEK)]
    watch.handed([A])
    assert watch.observe(30, {A: 4}, {A: 5}) == []  # records reached the agent
    assert watch.observe(40, {A: 4}, {A: 5}) == [(A, RESEEK)]


def test_no_verdict_while_a_batch_runs_and_the_quiet_clock_keeps_going() -> None:
    watch: StallWatch[tuple[str, int]] = StallWatch(after_s=10)
    watch.observe(0, {A: 3}, {A: 5})
    watch.busy(True)
    assert watch.observe(30, {A: 3}, {A: 5}) == []
    watch.busy(False)
    assert watch.observe(31, {A: 3}, {A: 5}) == [(A, RESEEK)]


def test_a_partition_no_longer_assigned_is_forgotten() -> None:
    watch: StallWatch[tuple[str, int]] = StallWatch(after_s=10)
    watch.observe(0, {A: 3}, {A: 5})
    watch.observe(5, {}, {B: 0})
    assert watch.observe(12, {A: 3}, {A: 5}) == []  # watched afresh from 12
    assert watch.observe(22, {A: 3}, {A: 5}) == [(A, RESEEK)]


step = st.tuples(
    st.floats(0.1, 8.0),  # time passing
    st.dictionaries(st.sampled_from([A, B]), st.integers(0, 3), max_size=2),  # stored moves
    st.sets(st.sampled_from([A, B])),  # handed
    st.booleans(),  # busy
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, min_size=1, max_size=60))
def test_reports_follow_the_rule_for_any_history(history: list) -> None:
    after_s = 10.0
    watch: StallWatch[tuple[str, int]] = StallWatch(after_s)
    ends = {A: 3, B: 3}
    stored = {A: 0, B: 0}
    now = 0.0
    since: dict[tuple[str, int], float] = {}
    rung: dict[tuple[str, int], int] = {}
    for dt, moves, handed, busy in history:
        now += dt
        progressed = {tp for tp, to in moves.items() if to != stored[tp]} | set(handed)
        stored.update(moves)
        watch.handed(handed)
        watch.busy(busy)
        reported = dict(watch.observe(now, stored, ends))
        for tp in (A, B):
            if stored[tp] >= ends[tp]:
                since.pop(tp, None), rung.pop(tp, None)
                assert tp not in reported
            elif tp not in since or tp in progressed:
                since[tp], rung[tp] = now, 0
                assert tp not in reported
            elif busy or now - since[tp] < after_s * (rung[tp] + 1):
                assert tp not in reported
            else:
                assert reported[tp] == rung[tp]
                since[tp], rung[tp] = now, rung[tp] + 1


def test_the_chaos_hook_is_read_strictly_and_drops_only_its_partition_until_a_rebalance() -> None:
    assert Chaos.from_env(None) is None and Chaos.from_env("") is None
    for bad in ("freeze:t:0", "drop:t", "drop::0", "pause:t:x"):
        with pytest.raises(ValueError, match="CONSORTIUM_CHAOS_STALL"):
            Chaos.from_env(bad)
    chaos = Chaos.from_env("drop:c.referral.v1:5")
    assert chaos is not None and chaos.partition == ("c.referral.v1", 5)
    assert not chaos.drops(("c.referral.v1", 4), 3)
    assert chaos.drops(("c.referral.v1", 5), 3)
    assert chaos.drops(("c.referral.v1", 5), 3)
    assert not chaos.drops(("c.referral.v1", 5), 4)  # the group rebalanced


def test_a_rebalance_restarts_the_quiet_clock_and_keeps_the_rung() -> None:
    watch: StallWatch[tuple[str, int]] = StallWatch(after_s=10)
    watch.observe(0, {A: 3}, {A: 5})
    assert watch.observe(10, {A: 3}, {A: 5}) == [(A, RESEEK)]
    assert watch.observe(30, {A: 3}, {A: 5}) == [(A, REJOIN)]
    watch.rebalanced(45)
    assert watch.observe(74, {A: 3}, {A: 5}) == []
    assert watch.observe(75, {A: 3}, {A: 5}) == [(A, RESTART)]


class FakeKafka:
    """aiokafka's consumer as the watch's remedies touch it."""

    def __init__(self) -> None:
        self.sought: dict[object, int] = {}
        self.resumed: list[object] = []
        self.rejoins = 0
        self._paused: set[object] = set()
        self._fetcher = type("Fetcher", (), {"_records": {}})()
        self._coordinator = type("Coordinator", (), {"request_rejoin": self._rejoin})()

    def _rejoin(self) -> None:
        self.rejoins += 1

    def paused(self) -> set[object]:
        return self._paused

    def resume(self, *tps: object) -> None:
        self.resumed += tps
        self._paused -= set(tps)

    def seek(self, tp: object, offset: int) -> None:
        self.sought[tp] = offset

    def highwater(self, tp: object) -> int:
        return 5


class FakeThread:
    def __init__(self, kafka: FakeKafka) -> None:
        self.kafka = kafka

    def _ensure_consumer(self) -> FakeKafka:
        return self.kafka

    async def call_thread(self, fun, *args, **kwargs):  # type: ignore[no-untyped-def]
        return await fun(*args, **kwargs)


class FakeConsumer:
    """faust's consumer, with one partition of topic t stuck at 3 of 5."""

    def __init__(self) -> None:
        from faust.types import TP

        self.tp = TP("t", 0)
        self.kafka = FakeKafka()
        self._thread = FakeThread(self.kafka)
        self.flow_active = True
        self._active_partitions: set[object] = set()
        self._paused_partitions: set[object] = {self.tp}
        self._buffered_partitions: set[object] = set()
        self._read_offset: dict[object, int | None] = {self.tp: 4}

    def assignment(self) -> set[object]:
        return {self.tp}

    def highwater(self, tp: object) -> int:
        return 5

    async def seek_wait(self, positions: dict[object, int]) -> None:
        # faust's contract: aiokafka seeks (on its thread), the read offset follows (0: none).
        for tp, offset in positions.items():
            self.kafka.seek(tp, offset)
            self._read_offset[tp] = offset or None

    def resume_partitions(self, tps: set[object]) -> None:
        self._active_partitions |= tps
        self._paused_partitions -= tps


def test_the_timer_climbs_from_seek_to_rebalance_to_exit_and_skips_rebalances() -> None:
    import asyncio
    from types import SimpleNamespace

    from processors.watchdog import EXIT_STALLED, stall_timer

    consumer = FakeConsumer()
    app = SimpleNamespace(consumer=consumer, rebalancing=False, consumer_generation_id=1)
    exits: list[int] = []
    watch: StallWatch[tuple[str, int]] = StallWatch(after_s=0.0)
    check = stall_timer(
        app, frozenset({"t"}), watch, lambda keys: {k: 3 for k in keys}, None, exits.append
    )

    asyncio.run(check())  # first seen: watched from now
    asyncio.run(check())  # rung 0: resumed in faust and aiokafka, sought to the stored 3
    assert consumer.tp in consumer._active_partitions and not consumer._paused_partitions
    assert consumer.kafka.sought == {consumer.tp: 3} and consumer._read_offset[consumer.tp] == 3
    assert consumer.kafka.rejoins == 0
    app.rebalancing = True
    asyncio.run(check())  # no verdict while the group rebalances
    assert consumer.kafka.rejoins == 0
    app.rebalancing = False
    asyncio.run(check())  # rung 1
    assert consumer.kafka.rejoins == 1 and exits == []
    asyncio.run(check())  # rung 2
    assert exits == [EXIT_STALLED]


def test_a_failing_round_is_logged_and_the_next_one_runs() -> None:
    import asyncio
    from types import SimpleNamespace

    from processors.watchdog import stall_timer

    consumer = FakeConsumer()

    def refuse(tp: object, offset: int) -> None:
        raise RuntimeError("partition revoked meanwhile")

    consumer.kafka.seek = refuse  # type: ignore[method-assign]
    app = SimpleNamespace(consumer=consumer, rebalancing=False, consumer_generation_id=1)
    watch: StallWatch[tuple[str, int]] = StallWatch(after_s=0.0)
    exits: list[int] = []
    check = stall_timer(
        app, frozenset({"t"}), watch, lambda keys: {k: 3 for k in keys}, None, exits.append
    )
    asyncio.run(check())
    asyncio.run(check())  # the seek raises inside the round: logged, not raised
    asyncio.run(check())  # and the next round climbs on
    assert consumer.kafka.rejoins == 1 and exits == []
