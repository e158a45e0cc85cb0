"""The campaign's load: simulated events paced at a rate, through the gateway and the SDK."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol
from uuid import UUID

import httpx

from chaos.ledger import GATEWAY, SDK, Ledger
from events.envelope import Event
from events.membership import InstitutionLevel, load_membership
from events.publisher import Publisher, PublishError
from simulator.county import SimulationConfig
from simulator.simulation import simulate

MAX_BATCH = 1_000
# Requests in flight to the gateway at once (each carries one institution's events).
GATEWAY_CONCURRENCY = 16
# A batch Kafka has not acknowledged after this long is given up (and the campaign fails).
GIVE_UP_S = 600.0
_END = None


def sdk_institutions() -> frozenset[str]:
    """Members that publish with the Kafka SDK: the county-level hospitals; the rest use HTTP."""
    hospitals = (InstitutionLevel.COUNTY_HOSPITAL, InstitutionLevel.SPECIALIST_HOSPITAL)
    return frozenset(i.code for i in load_membership() if i.level in hospitals)


def county_events(seed: int, count: int) -> Iterator[Event]:
    """The first count events of a simulated county long enough to hold them."""
    # About 3,300 events a simulated day; a margin of days costs nothing. A one-day warm-up
    # (not ten) lets even a short campaign carry referrals, visits and admissions.
    config = SimulationConfig(seed=seed, days=3 + count / 2_500, warmup=timedelta(days=1))
    county = simulate(config)
    for produced, event in enumerate(county.events(), start=1):
        yield event
        if produced >= count:
            return


def _drain(source: queue.Queue[Event | None], first: Event) -> tuple[list[Event], bool]:
    """The first event and whatever else is queued (up to a batch); whether the end was seen."""
    batch = [first]
    while len(batch) < MAX_BATCH:
        try:
            item = source.get_nowait()
        except queue.Empty:
            break
        if item is _END:
            return batch, True
        batch.append(item)
    return batch, False


Stored = tuple[str, int, int]  # topic, partition, offset


class Observer(Protocol):
    """Told what each publish took and where Kafka stored its events (the soak's figures)."""

    def gateway_answer(self, status: int, seconds: float, events: int) -> None: ...

    def stored(self, where: list[Stored], sent_at: float) -> None: ...


@dataclass
class Load:
    """Feeds events at the plan's rate to two publishing threads and records their answers."""

    gateway_url: str
    tokens: Mapping[str, str]
    bootstrap: str
    consortium_id: str
    ledger: Ledger
    sdk_sources: frozenset[str] = field(default_factory=sdk_institutions)
    _to_gateway: queue.Queue[Event | None] = field(default_factory=lambda: queue.Queue(50_000))
    _to_sdk: queue.Queue[Event | None] = field(default_factory=lambda: queue.Queue(50_000))
    failures: list[BaseException] = field(default_factory=list)
    observer: Observer | None = None

    def run(self, events: Iterator[Event], rate: float) -> list[threading.Thread]:
        """Start feeding and publishing in threads; join them to wait for the end."""
        # Daemons: a SIGTERM'd run stops its servers and exits without waiting for publishers
        # that are still retrying against them.
        threads = [
            threading.Thread(
                target=self._guard(self._feed, events, rate), name="feed", daemon=True
            ),
            threading.Thread(target=self._guard(self._publish_sdk), name="sdk", daemon=True),
            threading.Thread(
                target=self._guard(self._publish_gateway), name="gateway", daemon=True
            ),
        ]
        for thread in threads:
            thread.start()
        return threads

    def _guard(self, target: Callable[..., None], *args: object) -> Callable[[], None]:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:  # reported by the campaign, not lost in a thread
                self.failures.append(exc)
                self._to_gateway.put(_END)
                self._to_sdk.put(_END)

        return run

    def _feed(self, events: Iterator[Event], rate: float) -> None:
        """Hand each event over at its due time: event i is due i / rate seconds after start."""
        start = time.monotonic()
        for i, event in enumerate(events):
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            path = self._to_sdk if event.envelope.source in self.sdk_sources else self._to_gateway
            while True:
                try:
                    path.put(event, timeout=1.0)
                    break
                except queue.Full:
                    if self.failures:  # its publisher is gone: nothing will drain the queue
                        return
            self.ledger.offered += 1
        self._to_gateway.put(_END)
        self._to_sdk.put(_END)

    def _publish_sdk(self) -> None:
        """Publish what is due in acknowledged batches; retry what Kafka did not acknowledge."""
        # A client that rides out a leader election or a paused broker without giving up.
        config = {"delivery.timeout.ms": 120_000, "request.timeout.ms": 15_000}
        with Publisher(self.bootstrap, self.consortium_id, config=config) as publisher:
            ended = False
            while not ended:
                first = self._to_sdk.get()
                if first is _END:
                    return
                batch, ended = _drain(self._to_sdk, first)
                self.ledger.sequenced([e.envelope.event_id for e in batch])
                self._publish_until_acked(publisher, batch)

    def _publish_until_acked(self, publisher: Publisher, batch: list[Event]) -> None:
        pending = batch
        deadline = time.monotonic() + GIVE_UP_S
        while pending:
            if time.monotonic() > deadline:
                self.ledger.refused(f"sdk: {len(pending)} events unacknowledged for {GIVE_UP_S} s")
                return
            sent_at = time.monotonic()
            try:
                deliveries = publisher.publish(pending, timeout=130.0)
            except PublishError as exc:
                self.ledger.acked(SDK, [d.event_id for d in exc.stored])
                self.ledger.answered("sdk retry")
                pending = [e for e in pending if e.envelope.event_id in exc.failed]
                time.sleep(1.0)
                continue
            self.ledger.acked(SDK, [d.event_id for d in deliveries])
            self.ledger.answered("sdk acknowledged batch")
            if self.observer is not None:
                where = [(d.topic, d.partition, d.offset) for d in deliveries]
                self.observer.stored(where, sent_at)
            return

    def _publish_gateway(self) -> None:
        asyncio.run(self._gateway_loop())

    async def _gateway_loop(self) -> None:
        """Post what is due, one request per institution, all institutions at once."""
        limits = httpx.Limits(max_connections=GATEWAY_CONCURRENCY)
        async with httpx.AsyncClient(
            base_url=self.gateway_url, timeout=60.0, limits=limits
        ) as http:
            ended = False
            while not ended:
                first = await asyncio.to_thread(self._to_gateway.get)
                if first is _END:
                    return
                batch, ended = _drain(self._to_gateway, first)
                by_source: dict[str, list[Event]] = {}
                for event in batch:
                    by_source.setdefault(event.envelope.source, []).append(event)
                # One batch's posts finish before the next batch: each institution keeps order.
                await asyncio.gather(*(self._post(http, s, b) for s, b in by_source.items()))

    async def _post(self, http: httpx.AsyncClient, source: str, events: list[Event]) -> None:
        """POST until 202; 503 and lost connections are retried with the same event ids."""
        body = "[" + ",".join(e.model_dump_json() for e in events) + "]"
        headers = {
            "Authorization": f"Bearer {self.tokens[source]}",
            "Content-Type": "application/json",
        }
        deadline = time.monotonic() + GIVE_UP_S
        while time.monotonic() < deadline:
            sent_at = time.monotonic()
            try:
                response = await http.post("/v1/events", content=body.encode(), headers=headers)
            except httpx.TransportError as exc:
                self.ledger.answered(f"gateway {type(exc).__name__}")
                await asyncio.sleep(1.0)
                continue
            self.ledger.answered(f"gateway {response.status_code}")
            if self.observer is not None:
                took = time.monotonic() - sent_at
                self.observer.gateway_answer(response.status_code, took, len(events))
            if response.status_code == 202:
                self.ledger.acked(GATEWAY, [e.envelope.event_id for e in events])
                if self.observer is not None:
                    where = [(d["topic"], d["partition"], d["offset"]) for d in
                             response.json()["deliveries"]]  # fmt: skip
                    self.observer.stored(where, sent_at)
                return
            if response.status_code != 503:
                self.ledger.refused(f"{source}: {response.status_code} {response.text[:300]}")
                return
            stored = response.json().get("stored") or []
            self.ledger.acked(GATEWAY, [UUID(s["event_id"]) for s in stored])
            await asyncio.sleep(1.0)
        self.ledger.refused(f"{source}: {len(events)} events unacknowledged for {GIVE_UP_S} s")
