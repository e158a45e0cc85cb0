"""The fault schedule: broker crashes and a pause, processor kills, a resize, a database restart."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.fleet import Fleet
from chaos.plan import Plan
from chaos.stage import Stage
from consortium.processes import log_ends
from events.topics import EVENT_TOPICS

RESIZED = "referrals"  # the group that grows and shrinks


@dataclass(frozen=True)
class Fault:
    """One fault as it happened: what, to whom, when (s after the load began) and for how long."""

    kind: str
    target: str
    at_s: float
    took_s: float


def busiest(bootstrap: str, consortium_id: str) -> tuple[str, int]:
    """The event-topic partition holding the most records so far."""
    topics = [spec.name(consortium_id) for spec in EVENT_TOPICS.values()]
    ends = log_ends(bootstrap, topics)
    return max(ends, key=lambda tp: ends[tp])


Action = tuple[str, Callable[[], str]]  # (kind, run -> target)


@dataclass
class Faults:
    """Runs the plan's faults in two threads (brokers; processors and PostgreSQL)."""

    plan: Plan
    stage: Stage
    fleet: Fleet
    done: list[Fault] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)
    _began: float = 0.0

    def start(self, began: float) -> list[threading.Thread]:
        """Start both schedules, timed from `began` (monotonic); join them to wait."""
        self._began = began
        threads = [
            threading.Thread(target=self._run, args=(self.broker_actions(),), name="brokers"),
            threading.Thread(target=self._run, args=(self.process_actions(),), name="processes"),
        ]
        for thread in threads:
            thread.start()
        return threads

    def broker_actions(self) -> list[Action]:
        """The leader kills, with the pause in the middle."""
        actions: list[Action] = [("leader SIGKILL", self.kill_leader)] * self.plan.leader_kills
        if self.plan.pause_s > 0:
            actions.insert(len(actions) // 2, ("broker SIGSTOP", self.pause_broker))
        return actions

    def process_actions(self) -> list[Action]:
        """Processor kills round the projections, the resize around them, one database restart."""
        names = itertools.islice(
            itertools.cycle(["referrals", "transfers", "reporting"]), self.plan.processor_kills
        )
        actions: list[Action] = [("processor SIGKILL", self.killer(n)) for n in names]
        if self.plan.group_peak > 1:
            # Grown after the first kill, shrunk before the last: kills hit a grown group too.
            actions.insert(min(1, len(actions)), ("group grow", self.grow))
            last = len(actions) - (1 if self.plan.processor_kills > 1 else 0)
            actions.insert(last, ("group shrink", self.shrink))
        for k in range(self.plan.postgres_restarts):
            at = (k + 1) * len(actions) // (self.plan.postgres_restarts + 1)
            actions.insert(at, ("postgres restart", self.restart_postgres))
        return actions

    def _run(self, actions: list[Action]) -> None:
        """Action k of n starts (k+1)/(n+1) into the load, or when the one before ended."""
        try:
            for k, (kind, act) in enumerate(actions):
                due = self._began + self.plan.load_s * (k + 1) / (len(actions) + 1)
                time.sleep(max(0.0, due - time.monotonic()))
                started = time.monotonic()
                target = act()
                self.done.append(
                    Fault(kind, target, started - self._began, time.monotonic() - started)
                )
        except BaseException as exc:  # reported by the campaign
            self.failures.append(exc)

    def busiest_partition(self) -> tuple[str, int]:
        """The event-topic partition holding the most records so far."""
        return busiest(self.stage.cluster.bootstrap, self.stage.consortium_id)

    def kill_leader(self) -> str:
        """SIGKILL the leader of the busiest partition; start it again once another leads."""
        cluster = self.stage.cluster
        topic, partition = self.busiest_partition()
        leader = cluster.wait_for_leader(topic, partition)
        cluster.kill(leader, signal.SIGKILL)
        cluster.wait_for_leader(topic, partition, exclude={leader})
        time.sleep(self.plan.down_s)
        self.stage.launch(lambda: cluster.restart(leader))
        return f"node {leader} leading {topic}[{partition}]"

    def pause_broker(self) -> str:
        """SIGSTOP the busiest partition's leader for the pause, then SIGCONT it."""
        topic, partition = self.busiest_partition()
        cluster = self.stage.cluster
        leader = cluster.wait_for_leader(topic, partition)
        cluster.kill(leader, signal.SIGSTOP)
        try:
            time.sleep(self.plan.pause_s)
        finally:
            cluster.kill(leader, signal.SIGCONT)
        cluster.wait_ready(len(cluster.nodes), must_include=(leader,))
        return f"node {leader} leading {topic}[{partition}] for {self.plan.pause_s:g} s"

    def killer(self, projection: str) -> Callable[[], str]:
        """An action that SIGKILLs one projection's worker and starts it again."""

        def kill() -> str:
            self.fleet.kill(projection)
            return projection

        return kill

    def grow(self) -> str:
        """Grow the resized group to its peak."""
        self.fleet.grow(RESIZED, self.plan.group_peak)
        return f"{RESIZED} 1 -> {self.plan.group_peak}"

    def shrink(self) -> str:
        """Shrink the resized group back to one worker."""
        self.fleet.shrink(RESIZED)
        return f"{RESIZED} {self.plan.group_peak} -> 1"

    def restart_postgres(self) -> str:
        """Stop PostgreSQL (fast shutdown) and start it again on the same port."""
        postgres = self.stage.postgres
        postgres.stop()
        self.stage.launch(postgres.start)
        return f"port {postgres.port}"
