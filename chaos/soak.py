"""The soak: the whole backbone under steady load for an hour; what drifts, how lag recovers.

Simulated events are published at a fixed rate through the gateway and the SDK (the campaign's
load, without faults) while every processor runs. Measured throughout: the gateway's answer
times, each projection's freshness (publish to stored), consumer lag, and the resident memory of
every server. Halfway, the processors are stopped (SIGSTOP) for a while so that lag builds up;
the time it takes to come back is the lag-recovery figure. See docs/reliability.md.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import secrets
import signal
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from chaos.campaign import Progress
from chaos.chart import Panel, svg
from chaos.fleet import Fleet
from chaos.histogram import Histogram
from chaos.ledger import Ledger
from chaos.load import Load, Stored, county_events, sdk_institutions
from chaos.memory import tree_rss_mib
from chaos.stage import Stage, publisher_tokens, staged
from chaos.summary import strict_json
from chaos.verify import read_log, wait_caught_up
from consortium.processes import log_ends
from events.membership import load_membership
from events.topics import event_topic
from processors.wiring import PROJECTIONS
from projections.empi.config import HASH_KEY_VARIABLE

Say = Callable[[str], None]
TopicPartition = tuple[str, int]
POLL_S = 0.2  # how often stored positions are read: freshness is rounded up to this


@dataclass(frozen=True)
class SoakPlan:
    """How long, how fast, and the stall that measures lag recovery."""

    seconds: float = 3_600.0
    rate: float = 500.0  # events per second, gateway and SDK together
    stall_s: float = 60.0  # processors SIGSTOPped this long at half time (0: no stall)
    brokers: int = 3
    seed: int = 1
    sample_s: float = 10.0  # lag and memory are sampled this often
    window_s: float = 60.0  # percentiles per window of this length
    warm_up_s: float = 300.0  # left out of steady figures; memory drift is measured after it
    recover_timeout_s: float = 900.0  # for lag after the stall, and for the final catch-up

    @property
    def events(self) -> int:
        """Events published: the rate over the duration."""
        return int(self.seconds * self.rate)


FULL = SoakPlan()
# The CI form: every figure, on one broker, in about two minutes.
SHORT = SoakPlan(
    seconds=60.0, rate=50.0, stall_s=5.0, brokers=1, sample_s=2.0, window_s=10.0, warm_up_s=10.0,
    recover_timeout_s=240.0,
)  # fmt: skip


class Tracker:
    """The load's observer: gateway answer times, and each event's way into each projection."""

    def __init__(self, readers: dict[str, frozenset[str]], began: float, window_s: float) -> None:
        self.readers = readers
        self.began = began
        self.window_s = window_s
        self._lock = threading.Lock()
        self._pending: dict[str, dict[TopicPartition, list[tuple[int, float]]]] = {
            name: {} for name in readers
        }
        self.gateway: defaultdict[int, Histogram] = defaultdict(Histogram)
        self.gateway_requests = 0
        self.gateway_events = 0
        self.gateway_refused: Counter[int] = Counter()
        self.fresh: dict[str, defaultdict[int, Histogram]] = {
            name: defaultdict(Histogram) for name in readers
        }
        self.positions: dict[str, dict[TopicPartition, int]] = {name: {} for name in readers}

    def window(self, at: float) -> int:
        """The window a monotonic time falls in."""
        return int((at - self.began) // self.window_s)

    def gateway_answer(self, status: int, seconds: float, events: int) -> None:
        """One POST /v1/events answered (202s are timed, the rest counted)."""
        with self._lock:
            if status != 202:
                self.gateway_refused[status] += 1
                return
            self.gateway[self.window(time.monotonic())].add(seconds * 1000)
            self.gateway_requests += 1
            self.gateway_events += events

    def stored(self, where: list[Stored], sent_at: float) -> None:
        """Kafka stored these events; each projection reading the topic should store them next."""
        with self._lock:
            for topic, partition, offset in where:
                for name, topics in self.readers.items():
                    if topic in topics:
                        heap = self._pending[name].setdefault((topic, partition), [])
                        heapq.heappush(heap, (offset, sent_at))

    def observe(self, name: str, positions: dict[TopicPartition, int], at: float) -> None:
        """The projection's stored positions as read at `at`: every event below them is in."""
        with self._lock:
            self.positions[name] = positions
            for tp, heap in self._pending[name].items():
                end = positions.get(tp, 0)
                while heap and heap[0][0] < end:
                    _offset, sent_at = heapq.heappop(heap)
                    self.fresh[name][self.window(at)].add((at - sent_at) * 1000)

    def lag(self, ends: dict[TopicPartition, int]) -> dict[str, int]:
        """Records each projection has yet to store, against these log ends."""
        with self._lock:
            return {
                name: sum(
                    max(0, end - self.positions[name].get(tp, 0))
                    for tp, end in ends.items()
                    if tp[0] in topics
                )
                for name, topics in self.readers.items()
            }


def _poll_positions(url: str, tracker: Tracker, stop: threading.Event) -> None:
    """Read every projection's stored positions every POLL_S until stopped."""
    from bench.projections import positions

    while not stop.is_set():
        try:
            with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
                while not stop.wait(POLL_S):
                    for name in tracker.readers:
                        tracker.observe(name, positions(cur, name), time.monotonic())
        except psycopg.OperationalError:
            stop.wait(1.0)


@dataclass
class Sample:
    """Lag and memory at one moment (minutes since the load began)."""

    minute: float
    lag: dict[str, int]
    rss_mib: dict[str, float]
    acknowledged: int


@dataclass
class Drift:
    """One server's resident memory after the warm-up and at the end."""

    name: str
    start_mib: float
    end_mib: float
    slope_mib_per_h: float

    @property
    def drift_mib(self) -> float:
        """End minus start."""
        return self.end_mib - self.start_mib


@dataclass
class Stall:
    """The processors stopped for a while, then how long the lag took to come back down."""

    stopped_at_min: float = 0.0
    lag_at_resume: int = 0
    peak_lag: int = 0
    threshold: dict[str, int] = field(default_factory=dict)
    recovered_after_s: float = math.nan  # from SIGCONT until every projection was within it


@dataclass
class SoakSummary:
    """Everything the soak measured."""

    plan: SoakPlan
    machine: str = ""
    phases: dict[str, float] = field(default_factory=dict)
    offered: int = 0
    acknowledged: int = 0
    load_s: float = 0.0
    gateway_requests: int = 0
    gateway_events: int = 0
    gateway_refused: dict[int, int] = field(default_factory=dict)
    gateway_ms: dict[str, float] = field(default_factory=dict)  # p50, p99, worst window p99
    freshness_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    steady_lag_max: dict[str, int] = field(default_factory=dict)
    stall: Stall | None = None
    memory: list[Drift] = field(default_factory=list)
    lost: int = 0
    log_records: int = 0
    log_distinct: int = 0
    unplanned_exits: int = 0
    refusals: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    gateway_p99_by_window: list[tuple[float, float]] = field(default_factory=list)
    freshness_p99_by_window: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Nothing lost or refused, no failure or processor exit, the lag back after the stall."""
        recovered = self.stall is None or not math.isnan(self.stall.recovered_after_s)
        trouble = self.lost or self.refusals or self.failures or self.unplanned_exits
        return not trouble and recovered

    def lines(self) -> list[str]:
        """The summary for a terminal."""
        plan, g = self.plan, self.gateway_ms
        out = [
            f"soak: {plan.seconds:,.0f} s planned at {plan.rate:,.0f} events/s on"
            f" {plan.brokers} broker(s); {self.machine}",
            f"published {self.acknowledged:,} of {self.offered:,} offered in {self.load_s:,.0f} s"
            f" = {self.acknowledged / max(self.load_s, 1e-9):,.0f} events/s",
            f"gateway: {self.gateway_requests:,} requests ({self.gateway_events:,} events,"
            f" {self.gateway_events / max(self.gateway_requests, 1):.1f} per request);"
            f" steady p50 {g.get('p50', math.nan):.1f} ms, p99 {g.get('p99', math.nan):.1f} ms,"
            f" worst window p99 {g.get('worst_window_p99', math.nan):.1f} ms;"
            f" refused {dict(self.gateway_refused) or 'none'}",
        ]
        for name, f in sorted(self.freshness_ms.items()):
            out.append(
                f"  freshness {name:<10} steady p50 {f['p50']:7.0f} ms  p99 {f['p99']:7.0f} ms"
                f"  worst window p99 {f['worst_window_p99']:7.0f} ms;"
                f" steady lag at most {self.steady_lag_max.get(name, 0):,}"
            )
        if self.stall is not None:
            s = self.stall
            out.append(
                f"lag recovery: processors stopped {plan.stall_s:.0f} s at minute"
                f" {s.stopped_at_min:.1f}; {s.lag_at_resume:,} records behind at resume"
                f" (peak {s.peak_lag:,}); back within the steady lag after"
                f" {s.recovered_after_s:.1f} s"
            )
        out.append("memory (resident, after the warm-up -> end; slope over the run):")
        for d in self.memory:
            out.append(
                f"  {d.name:<20} {d.start_mib:8.1f} -> {d.end_mib:8.1f} MiB"
                f" ({d.drift_mib:+7.1f} MiB, {d.slope_mib_per_h:+7.1f} MiB/h)"
            )
        out.append(
            f"log: {self.log_records:,} records, {self.log_distinct:,} distinct events;"
            f" acknowledged but lost: {self.lost:,}; processor exits: {self.unplanned_exits}"
        )
        out += [f"refused: {r}" for r in self.refusals]
        out += [f"FAILED: {f}" for f in self.failures]
        out.append("phases: " + ", ".join(f"{k} {v:.0f} s" for k, v in self.phases.items()))
        out.append("soak " + ("passed" if self.ok else "FAILED"))
        return out

    def as_json(self) -> dict[str, Any]:
        """The figures as JSON (the timeline of samples included)."""
        from dataclasses import asdict

        out = asdict(self)
        out["ok"] = self.ok
        for d, j in zip(self.memory, out["memory"], strict=True):
            j["drift_mib"] = d.drift_mib
        return strict_json(out)  # type: ignore[no-any-return]

    def chart(self) -> str:
        """Gateway p99, freshness p99 per window, lag and memory over the run, as SVG."""
        panels = [
            Panel("gateway answer p99", "ms", {"POST /v1/events": self.gateway_p99_by_window}),
            Panel("freshness p99, publish to stored", "ms", self.freshness_p99_by_window),
            Panel("consumer lag", "records", _series(self.samples, lambda s: s.lag)),
            Panel("resident memory", "MiB", _series(self.samples, lambda s: s.rss_mib)),
        ]
        spans = []
        if self.stall is not None:
            end = (
                self.stall.stopped_at_min
                + (self.plan.stall_s + _nan_to(self.stall.recovered_after_s, 0.0)) / 60
            )
            spans.append((self.stall.stopped_at_min, end, "processors stopped, then catching up"))
        return svg(panels, spans)


def _nan_to(value: float, default: float) -> float:
    return default if math.isnan(value) else value


def _series(
    samples: list[Sample], pick: Callable[[Sample], dict[str, Any]]
) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for s in samples:
        for name, value in pick(s).items():
            series[name].append((s.minute, float(value)))
    return dict(series)


def _readers(consortium_id: str) -> dict[str, frozenset[str]]:
    return {
        name: frozenset(event_topic(f, consortium_id) for f in p.families)
        for name, p in PROJECTIONS.items()
    }


def run_soak(plan: SoakPlan, say: Say, folder: Path | None = None) -> SoakSummary:
    """Run the soak on servers of its own (in folder, else a temporary one)."""
    from bench.harness import machine

    summary = SoakSummary(plan, machine=machine())
    progress = Progress(say, summary)
    consortium_id = f"soak{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
        where = folder or Path(scratch)
        try:
            with ExitStack() as servers:
                with progress.phase("start servers"):
                    stage = servers.enter_context(staged(where, consortium_id, plan.brokers))
                _soak(plan, stage, summary, progress)
                say("stopping the servers")
        except Exception as exc:  # the summary reports it; the exit code fails
            summary.failures.append(f"{type(exc).__name__}: {exc}")
    return summary


@dataclass
class Watch:
    """Samples lag and memory (keeping the processors alive meanwhile) and prints them."""

    stage: Stage
    fleet: Fleet
    tracker: Tracker
    ledger: Ledger
    topics: list[str]
    summary: SoakSummary

    def roots(self) -> dict[str, int]:
        """The servers whose memory is watched, by name."""
        named = {"gateway": self.stage.gateway_pid, "postgres": self.stage.postgres.pid or 0}
        named |= {f"kafka {i}": pid for i, pid in self.stage.cluster.pids.items() if pid}
        named |= {f"process {w.projection}": w.process.pid for w in self.fleet.workers}
        return named

    def sample(self) -> Sample:
        """Lag and memory now, kept in the summary."""
        self.fleet.supervise()
        lag = self.tracker.lag(log_ends(self.stage.cluster.bootstrap, self.topics))
        minute = (time.monotonic() - self.tracker.began) / 60
        s = Sample(minute, lag, tree_rss_mib(self.roots()), len(self.ledger.acknowledged))
        self.summary.samples.append(s)
        return s

    @staticmethod
    def status(s: Sample) -> str:
        """A progress line."""
        behind = ", ".join(f"{k} {v:,}" for k, v in s.lag.items())
        return (
            f"[{s.minute:6.1f} min] acknowledged {s.acknowledged:,}"
            f" ({s.acknowledged / max(s.minute * 60, 1e-9):,.0f}/s); behind: {behind};"
            f" gateway RSS {s.rss_mib.get('gateway', 0):.0f} MiB"
        )


def _soak(plan: SoakPlan, stage: Stage, summary: SoakSummary, progress: Progress) -> None:
    bootstrap = stage.cluster.bootstrap
    fleet = Fleet(bootstrap, stage.database_url, stage.consortium_id, stage.folder / "logs")
    # The patient index refuses to start without its identity hash key: one for this run.
    fleet.env[HASH_KEY_VARIABLE] = os.environ.get(HASH_KEY_VARIABLE) or secrets.token_hex(16)
    fleet.start([*PROJECTIONS, "empi"])
    sdk = sdk_institutions()
    tokens = publisher_tokens(
        stage.database_url, [i.code for i in load_membership() if i.code not in sdk]
    )
    ledger = Ledger()
    stream = county_events(plan.seed, plan.events)
    stream = itertools.chain([next(stream)], stream)  # the warm-up of the simulation first
    readers = _readers(stage.consortium_id)
    topics = sorted(set().union(*readers.values()))
    began = time.monotonic()
    tracker = Tracker(readers, began, plan.window_s)
    load = Load(stage.gateway_url, tokens, bootstrap, stage.consortium_id, ledger, sdk)
    load.observer = tracker
    stop = threading.Event()
    poller = threading.Thread(
        target=_poll_positions, args=(stage.database_url, tracker, stop), daemon=True
    )
    poller.start()

    watch = Watch(stage, fleet, tracker, ledger, topics, summary)
    try:
        latest = lambda: watch.status(summary.samples[-1]) if summary.samples else ""  # noqa: E731
        with progress.phase("load", latest):
            threads = load.run(itertools.islice(stream, plan.events), plan.rate)
            _watch_load(plan, threads, watch, progress.say)
            summary.load_s = time.monotonic() - began
        with progress.phase("catch up"):
            wait_caught_up(
                bootstrap, stage.database_url, stage.consortium_id, plan.recover_timeout_s,
                lambda _line: None,
            )  # fmt: skip
            progress.say(watch.status(watch.sample()))
    finally:
        stop.set()
        poller.join(timeout=10)
        fleet.stop()
        summary.unplanned_exits = fleet.unplanned_exits
        summary.failures += [f"load: {exc!r}" for exc in load.failures]
        summary.offered, summary.acknowledged = ledger.offered, len(ledger.acknowledged)
        summary.refusals = list(ledger.refusals)
    with progress.phase("read back the log"):
        log = read_log(bootstrap, stage.consortium_id)
    summary.log_records, summary.log_distinct = log.records, len(log.copies)
    summary.lost = sum(1 for event_id in ledger.acknowledged if event_id not in log.first)
    _figures(plan, tracker, summary)


def _watch_load(plan: SoakPlan, threads: list[threading.Thread], watch: Watch, say: Say) -> None:
    """Sample until the load's threads end; stall the processors halfway."""
    began = watch.tracker.began
    next_sample = began
    stall_at = began + plan.seconds / 2 if plan.stall_s > 0 else math.inf
    while any(t.is_alive() for t in threads):
        now = time.monotonic()
        if now >= stall_at:
            watch.summary.stall = _stall(plan, watch, say)
            stall_at = math.inf
            next_sample = time.monotonic()
        elif now >= next_sample:
            watch.sample()  # shown by the phase's progress line
            next_sample += plan.sample_s
        time.sleep(0.2)


def _stall(plan: SoakPlan, watch: Watch, say: Say) -> Stall:
    """Stop every processor for stall_s, resume, and time the lag back to its steady level."""
    fleet, tracker, summary, sample = watch.fleet, watch.tracker, watch.summary, watch.sample
    before = [s for s in summary.samples if s.minute * 60 >= plan.warm_up_s] or summary.samples
    threshold = {
        name: int(max([plan.rate, *(s.lag.get(name, 0) for s in before)]))
        for name in tracker.readers
    }
    stall = Stall(stopped_at_min=(time.monotonic() - tracker.began) / 60, threshold=threshold)
    say(f"stall: stopping every processor for {plan.stall_s:.0f} s; steady lag {threshold}")
    _signal_all(fleet, signal.SIGSTOP)
    resume = time.monotonic() + plan.stall_s
    try:
        while time.monotonic() < resume:
            time.sleep(min(plan.sample_s, max(resume - time.monotonic(), 0.0)))
            sample()
    finally:
        _signal_all(fleet, signal.SIGCONT)
    resumed = time.monotonic()
    stall.lag_at_resume = sum(sample().lag.values())
    say(f"stall: resumed {stall.lag_at_resume:,} records behind")
    while time.monotonic() - resumed < plan.recover_timeout_s:
        s = sample()
        stall.peak_lag = max(stall.peak_lag, sum(s.lag.values()))
        if all(s.lag[name] <= limit for name, limit in threshold.items()):
            stall.recovered_after_s = time.monotonic() - resumed
            say(f"stall: back within the steady lag after {stall.recovered_after_s:.1f} s")
            break
        time.sleep(1.0)
    stall.peak_lag = max(stall.peak_lag, stall.lag_at_resume)
    return stall


def _signal_all(fleet: Fleet, sig: signal.Signals) -> None:
    for worker in list(fleet.workers):
        with suppress(ProcessLookupError):
            os.killpg(worker.process.pid, sig)


def _figures(plan: SoakPlan, tracker: Tracker, summary: SoakSummary) -> None:
    """Percentiles of the steady windows (after the warm-up, outside the stall), memory drift."""
    first_steady = math.ceil(plan.warm_up_s / plan.window_s)
    disturbed: set[int] = set()
    if summary.stall is not None:
        start = summary.stall.stopped_at_min * 60
        took = plan.stall_s + _nan_to(summary.stall.recovered_after_s, plan.recover_timeout_s)
        first, last = int(start // plan.window_s), int((start + took) // plan.window_s)
        disturbed = set(range(first, last + 2))

    def steady(windows: dict[int, Histogram]) -> dict[str, float]:
        calm = {w: h for w, h in windows.items() if w >= first_steady and w not in disturbed}
        pooled = Histogram()
        for h in calm.values():
            pooled.merge(h)
        worst = max((h.percentile(99) for h in calm.values() if h.count), default=math.nan)
        return {
            "p50": pooled.percentile(50),
            "p99": pooled.percentile(99),
            "worst_window_p99": worst,
            "samples": pooled.count,
        }

    def per_window(windows: dict[int, Histogram]) -> list[tuple[float, float]]:
        return [
            ((w + 1) * plan.window_s / 60, h.percentile(99)) for w, h in sorted(windows.items())
        ]

    summary.gateway_requests, summary.gateway_events = (
        tracker.gateway_requests,
        tracker.gateway_events,
    )
    summary.gateway_refused = dict(tracker.gateway_refused)
    summary.gateway_ms = steady(tracker.gateway)
    summary.gateway_p99_by_window = per_window(tracker.gateway)
    summary.freshness_ms = {name: steady(w) for name, w in tracker.fresh.items()}
    summary.freshness_p99_by_window = {name: per_window(w) for name, w in tracker.fresh.items()}
    stall_span = (
        (summary.stall.stopped_at_min, summary.stall.stopped_at_min + (
            plan.stall_s + _nan_to(summary.stall.recovered_after_s, plan.recover_timeout_s)
        ) / 60)
        if summary.stall is not None
        else (math.inf, math.inf)
    )  # fmt: skip
    calm = [
        s
        for s in summary.samples
        if s.minute * 60 >= plan.warm_up_s and not stall_span[0] <= s.minute <= stall_span[1]
    ]
    summary.steady_lag_max = {
        name: max((s.lag.get(name, 0) for s in calm), default=0) for name in tracker.readers
    }
    summary.memory = _drift(plan, summary.samples)


def _drift(plan: SoakPlan, samples: list[Sample]) -> list[Drift]:
    """Per server: median RSS of the first and the last five samples after the warm-up; slope."""
    after = [s for s in samples if s.minute * 60 >= plan.warm_up_s] or samples
    names = sorted({n for s in after for n in s.rss_mib})
    out = []
    for name in names:
        points = [(s.minute / 60, s.rss_mib[name]) for s in after if s.rss_mib.get(name)]
        if len(points) < 2:
            continue
        ys = [y for _, y in points]
        slope = statistics.linear_regression([x for x, _ in points], ys).slope
        out.append(Drift(name, statistics.median(ys[:5]), statistics.median(ys[-5:]), slope))
    return out
