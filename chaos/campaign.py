"""Runs a fault campaign: load and faults on a three-node cluster, then the verdicts."""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

from chaos.faults import Faults
from chaos.fleet import Fleet
from chaos.ledger import Ledger
from chaos.load import Load, county_events, sdk_institutions
from chaos.plan import Plan
from chaos.probe import two_brokers_down
from chaos.stage import Stage, publisher_tokens, staged
from chaos.summary import Summary
from chaos.verify import order_violations, read_log, verify_projection, wait_caught_up
from events.membership import load_membership
from processors.wiring import PROJECTIONS

Say = Callable[[str], None]
PROGRESS_EVERY_S = 5.0
PROBE_EVENTS = 6


class Timed(Protocol):
    """What a progress keeps phase durations in."""

    phases: dict[str, float]


class Progress:
    """Prints a status line every few seconds while a phase runs; times each phase."""

    def __init__(self, say: Say, summary: Timed) -> None:
        self.say = say
        self.summary = summary
        self.status: Callable[[], str] = lambda: ""
        self._began = time.monotonic()

    @contextmanager
    def phase(self, name: str, status: Callable[[], str] | None = None) -> Iterator[None]:
        """Time the phase and print its status line every few seconds."""
        self.status = status or (lambda: "")
        stop = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(name, stop), daemon=True)
        started = time.monotonic()
        self.say(f"[{started - self._began:7.1f} s] {name} ...")
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()
            took = time.monotonic() - started
            self.summary.phases[name] = round(took, 2)
            self.say(f"[{time.monotonic() - self._began:7.1f} s] {name}: {took:.1f} s")

    def _tick(self, name: str, stop: threading.Event) -> None:
        while not stop.wait(PROGRESS_EVERY_S):
            self.say(f"[{time.monotonic() - self._began:7.1f} s] {name}: {self.status()}")


def run_campaign(plan: Plan, say: Say, folder: Path | None = None) -> Summary:
    """Run the plan on servers of its own (in folder, else a temporary one); the summary."""
    from bench.harness import machine

    summary = Summary(plan, machine=machine())
    progress = Progress(say, summary)
    consortium_id = f"chaos{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="chaos-") as scratch:
        where = folder or Path(scratch)
        try:
            with ExitStack() as servers:
                with progress.phase("start servers"):
                    stage = servers.enter_context(staged(where, consortium_id))
                _campaign(plan, stage, summary, progress)
                progress.say("stopping the servers")
        except Exception as exc:  # the summary reports it; the exit code fails
            summary.failures.append(f"{type(exc).__name__}: {exc}")
    return summary


def _campaign(plan: Plan, stage: Stage, summary: Summary, progress: Progress) -> None:
    bootstrap = stage.cluster.bootstrap
    fleet = Fleet(bootstrap, stage.database_url, stage.consortium_id, stage.folder / "logs")
    fleet.start(list(PROJECTIONS))  # they boot while the credentials are issued
    sdk = sdk_institutions()
    gateway_members = [i.code for i in load_membership() if i.code not in sdk]
    tokens = publisher_tokens(stage.database_url, gateway_members)
    ledger = Ledger()
    load = Load(stage.gateway_url, tokens, bootstrap, stage.consortium_id, ledger, sdk)
    faults = Faults(plan, stage, fleet)
    stream = county_events(plan.seed, plan.events + 20_000)
    # The simulation's warm-up runs before its first event: not on the load's clock.
    stream = itertools.chain([next(stream)], stream)
    began = time.monotonic()

    def status() -> str:
        fleet.supervise()
        acked = ledger.by_path()
        elapsed = max(time.monotonic() - began, 1e-9)
        retries = ledger.answers["gateway 503"] + ledger.answers["sdk retry"]
        return (
            f"offered {ledger.offered:,}, acknowledged {sum(acked.values()):,}"
            f" (gateway {acked['gateway']:,}, sdk {acked['sdk']:,}),"
            f" {sum(acked.values()) / elapsed:,.0f}/s; retries {retries:,};"
            f" faults {len(faults.done)}; referrals workers {fleet.size('referrals')}"
        )

    try:
        with progress.phase("load under faults", status):
            fault_threads = faults.start(began)
            for thread in load.run(itertools.islice(stream, plan.events), plan.rate):
                thread.join()
        with progress.phase("faults after the load", status):
            for thread in fault_threads:
                thread.join()
        with progress.phase("two brokers down"):
            gateway_events = (e for e in stream if e.envelope.source not in sdk)
            probe = list(itertools.islice(gateway_events, PROBE_EVENTS))
            summary.two_down = two_brokers_down(stage, tokens, probe, ledger, progress.say)
        with progress.phase("catch up"):
            wait_caught_up(
                bootstrap,
                stage.database_url,
                stage.consortium_id,
                plan.catch_up_timeout_s,
                lambda line: _set(progress, line, fleet),
            )
    finally:
        fleet.stop()
        summary.processor_kills, summary.unplanned_exits = fleet.kills, fleet.unplanned_exits
        summary.faults, summary.offered = list(faults.done), ledger.offered
        summary.failures += [f"load: {exc!r}" for exc in load.failures]
        summary.failures += [f"fault: {exc!r}" for exc in faults.failures]
        summary.acknowledged = dict(ledger.by_path())
        summary.answers, summary.refusals = dict(ledger.answers), list(ledger.refusals)
    with progress.phase("read back the log"):
        log = read_log(bootstrap, stage.consortium_id)
    summary.log_records, summary.log_distinct = log.records, len(log.copies)
    summary.undecodable = log.undecodable
    lost = [str(event_id) for event_id in ledger.acknowledged if event_id not in log.first]
    summary.lost, summary.lost_sample = len(lost), lost[:10]
    summary.sdk_keys = len({log.keys[e] for e in ledger.sdk_sequence if e in log.keys})
    summary.order_violations = order_violations(log, ledger.sdk_sequence)
    for name in PROJECTIONS:
        with progress.phase(f"rebuild {name}"):
            verdict = verify_projection(
                name,
                bootstrap,
                stage.database_url,
                stage.consortium_id,
                log,
                lambda done, known: _set(progress, f"{done:,} of {known:,} records replayed"),
            )
        summary.projections.append(verdict)


def _set(progress: Progress, line: str, fleet: Fleet | None = None) -> None:
    """Show a state in the next progress line; keep the workers alive meanwhile."""
    if fleet is not None:
        fleet.supervise()
    progress.status = lambda: line
