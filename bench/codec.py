"""Codec throughput on a county's event mix, beside plain fastavro measured in the same run."""

from __future__ import annotations

import importlib.util
import io
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastavro import schemaless_reader, schemaless_writer

from bench.harness import Figure, rate
from consortium.settings import PROJECT_ROOT
from events.catalog import Catalog
from events.codec import HEADER, Codec
from events.envelope import Event

# Relative frequency of event types in a county's day: labs and outpatient visits dominate.
DAY_MIX: dict[str, float] = {
    "LabResultReported": 30,
    "OutpatientVisitStarted": 14,
    "OutpatientVisitCompleted": 14,
    "OrderPlaced": 12,
    "ImagingReportIssued": 4,
    "PatientRegistered": 4,
    "PatientAdmitted": 3,
    "PatientDischarged": 3,
    "BedCensusReported": 2,
    "PatientDemographicsUpdated": 2,
    "ConsentGranted": 2,
    "OrderCancelled": 1.5,
    "ResultAmended": 1,
    "PatientTransferredWard": 1,
    "ReferralRequested": 1,
    "ReferralAccepted": 0.9,
    "ReferralPatientArrived": 0.8,
    "ReferralCompleted": 0.7,
    "ReferralRejected": 0.1,
    "ReferralCancelled": 0.1,
    "ConsentRevoked": 0.2,
    "PatientIdentifiersMerged": 0.2,
}
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


def _examples() -> dict[str, Callable[[], Event]]:
    """The example factories of tests/examples.py (a plain file, not a package)."""
    path = PROJECT_ROOT / "tests" / "examples.py"
    spec = importlib.util.spec_from_file_location("consortium_examples", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    examples: dict[str, Callable[[], Event]] = module.EXAMPLES
    return examples


def _varied(event: Event, rng: random.Random) -> Event:
    """The example with its own event id: every event of a real stream has one."""
    # Only the id varies: other envelope fields take part in cross-field rules of the models.
    envelope = event.envelope.model_copy(
        update={"event_id": uuid.UUID(int=rng.getrandbits(128), version=4)}
    )
    return event.model_copy(update={"envelope": envelope})


def workload(codec: Codec, count: int, seed: int = 7) -> Workload:
    """count events drawn from the day's mix, prepared in every form the figures need."""
    from events.registry import to_record

    rng = random.Random(seed)
    factories = _examples()
    kinds = rng.choices(list(DAY_MIX), weights=list(DAY_MIX.values()), k=count)
    events = [_varied(factories[kind](), rng) for kind in kinds]
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
