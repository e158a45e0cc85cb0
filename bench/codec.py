"""Codec throughput on a simulated county's events, beside plain fastavro in the same run."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastavro import schemaless_reader, schemaless_writer

from bench.harness import Figure, rate
from events.catalog import Catalog
from events.codec import HEADER, Codec
from events.envelope import Event

ROUNDS = 3
BASELINE = "fastavro"
T = TypeVar("T")


@dataclass(frozen=True)
class Workload:
    """The same events as models, as fastavro records, and as framed bytes."""

    events: list[Event]
    event_types: list[str]
    records: list[dict[str, Any]]
    parsed: list[Any]
    framed: list[bytes]


def county_events(count: int, seed: int) -> list[Event]:
    """The first count events of a simulated county week: the real mix of a county's days."""
    from simulator.county import SimulationConfig
    from simulator.simulation import simulate

    # A simulated week yields about 1.2 events per resident; size the county to fit.
    config = SimulationConfig(seed=seed, days=7, population=max(1_000, int(count / 1.1)))
    events = list(itertools.islice(simulate(config).events(), count))
    if len(events) < count:
        raise RuntimeError(f"the simulated county gave {len(events)} events, not {count}")
    return events


def workload(codec: Codec, count: int, seed: int = 7) -> Workload:
    """count events of a simulated county, prepared in every form the figures need."""
    from events.registry import to_record

    events = county_events(count, seed)
    kinds = [e.event_type for e in events]
    records = [to_record(e) for e in events]
    ids = [codec.catalog.latest_id_for_event_type(k) for k in kinds]
    return Workload(
        events=events,
        event_types=kinds,
        records=records,
        parsed=[codec.catalog.parsed(i) for i in ids],
        framed=[codec.encode(k, r) for k, r in zip(kinds, records, strict=True)],
    )


def _best(count: int, run: Callable[[], None], tick: Callable[[], None]) -> float:
    """The best rate of a few rounds: the least disturbed by the rest of the machine."""
    best = 0.0
    for _ in range(ROUNDS):
        best = max(best, rate(count, run))
        tick()
    return best


def _each(step: Callable[[T], object], items: Sequence[T]) -> Callable[[], None]:
    """A loop applying step to every item."""

    def run() -> None:
        for item in items:
            step(item)

    return run


def _runs(codec: Codec, lenient: Codec, w: Workload) -> Iterator[tuple[str, Callable[[], None]]]:
    """Every measured loop by name: ours and the plain-fastavro baselines."""
    pairs = list(zip(w.event_types, w.records, strict=True))
    bodies = [(p, f[HEADER.size :]) for p, f in zip(w.parsed, w.framed, strict=True)]

    def fastavro_encode() -> None:
        for parsed, record in zip(w.parsed, w.records, strict=True):
            out = io.BytesIO()
            schemaless_writer(out, parsed, record)
            out.getvalue()

    def fastavro_decode() -> None:
        for parsed, body in bodies:
            schemaless_reader(io.BytesIO(body), parsed, None)

    yield "fastavro_encode", fastavro_encode
    yield "fastavro_decode", fastavro_decode
    yield "encode_records", _each(lambda p: codec.encode(*p), pairs)
    yield "decode_records", _each(codec.decode, w.framed)
    yield "decode_lenient", _each(lenient.decode, w.framed)
    yield "encode_events", _each(codec.encode_event, w.events)
    yield "decode_events", _each(codec.decode_event, w.framed)


def measure(count: int, tick: Callable[[], None] = lambda: None) -> list[Figure]:
    """Warm up, then measure each loop ROUNDS times; tick() after every round."""
    codec = Codec(Catalog.load())
    lenient = Codec(codec.catalog, strict=False)
    w = workload(codec, count)
    warm = workload(codec, min(count, 500), seed=8)
    rates: dict[str, float] = {}
    for _name, run in _runs(codec, lenient, warm):
        run()  # warm-up: caches, allocator, pydantic's validators
    for name, run in _runs(codec, lenient, w):
        rates[name] = _best(count, run, tick)
    enc, dec = rates["fastavro_encode"], rates["fastavro_decode"]

    def fig(name: str, key: str, baseline: float) -> Figure:
        unit = "events/s" if key.endswith("events") else "records/s"
        return Figure(f"codec.{name}", rates[key], unit, baseline, BASELINE)

    return [
        fig("encode_records_per_s", "encode_records", enc),
        fig("decode_records_per_s", "decode_records", dec),
        fig("decode_lenient_records_per_s", "decode_lenient", dec),
        fig("encode_events_per_s", "encode_events", enc),
        fig("decode_events_per_s", "decode_events", dec),
    ]


def rounds_total() -> int:
    """How many ticks measure() makes, for a progress bar."""
    return ROUNDS * 7
