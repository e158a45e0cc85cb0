"""`consortium bench fhir`: time `$everything` for a person with 1,000 timeline entries.

Also the builder of a synthetic person's record across members (the FHIR tests use it too).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import psycopg
import typer
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.harness import Figure, dropping_throwaways, report, throwaway_topics
from events.catalog import Catalog
from events.codec import Codec
from events.consent import ConsentGranted
from events.encounter import OutpatientVisitCompleted, OutpatientVisitStarted
from events.envelope import Envelope, Event
from events.order import OrderPlaced
from events.person import MatchMethod, PersonLinked
from events.referral import ReferralAccepted, ReferralRequested
from events.result import LabResultReported
from events.topics import event_topic
from projections.frame import generations
from projections.frame.batch import BatchProcessor
from projections.frame.declaration import Projection
from projections.frame.records import DeadLetter, Record
from projections.record.projection import RECORD

START = datetime(2024, 5, 1, tzinfo=UTC)
HYPERTENSION = {"system": "ICD-10", "code": "I10.x00", "display": "高血压"}
CBC = {"system": "LOINC", "code": "58410-2", "display": "血常规"}
HAEMOGLOBIN = {"system": "LOINC", "code": "718-7", "display": "血红蛋白"}
ENTRIES_PER_VISIT = 5  # visit started, completed, its diagnosis, an order, its result


class _RefuseDeadLetters:
    """These events are all valid: a dead letter is a bug."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        if letters:
            raise RuntimeError(f"{len(letters)} synthetic events dead-lettered: {letters[0]}")


def _env(kind: str, source: str, local_id: str, at: datetime) -> Envelope:
    return Envelope(
        event_id=uuid.uuid4(),
        event_type=kind,
        occurred_at=at,
        recorded_at=at + timedelta(seconds=1),
        source=source,
        patient_local_id=local_id,
    )


def linked(person: uuid.UUID, institution: str, local_id: str) -> PersonLinked:
    """The patient index's decision: this member's local patient is the person."""
    return PersonLinked(
        envelope=_env("PersonLinked", institution, str(person), START - timedelta(days=30)),
        person_id=person,
        institution=institution,
        local_id=local_id,
        method=MatchMethod.RESIDENT_ID,
        score=30.0,
        agreement=(),
    )


def visits(institution: str, local_id: str, count: int, start: datetime = START) -> list[Event]:
    """count visits, each with a diagnosis, a blood count order and its result (5 entries each)."""
    made: list[Event] = []
    for n in range(count):
        at, tag = start + timedelta(hours=6 * n), f"{local_id}-{start:%y%m%d}-{n}"
        made += [
            OutpatientVisitStarted(
                envelope=_env("OutpatientVisitStarted", institution, local_id, at),
                encounter_id=f"MZ{tag}",
                visit_type="GENERAL",
                department_code="01",
                department_name="全科",
                chief_complaint="头晕",
            ),
            OutpatientVisitCompleted(
                envelope=_env(
                    "OutpatientVisitCompleted", institution, local_id, at + timedelta(hours=1)
                ),
                encounter_id=f"MZ{tag}",
                diagnoses=[{"code": HYPERTENSION, "role": "PRINCIPAL"}],
                outcome="HOME",
            ),
            OrderPlaced(
                envelope=_env("OrderPlaced", institution, local_id, at + timedelta(minutes=10)),
                order_id=f"O{tag}",
                category="LAB",
                code=CBC,
                priority="ROUTINE",
                encounter_id=f"MZ{tag}",
                ordering_clinician_id="D1",
            ),
            LabResultReported(
                envelope=_env(
                    "LabResultReported", institution, local_id, at + timedelta(minutes=50)
                ),
                result_id=f"R{tag}",
                order_id=f"O{tag}",
                status="FINAL",
                code=HAEMOGLOBIN,
                value_string=str(110 + n % 40),
                value_numeric=float(110 + n % 40),
                unit="g/L",
                reference_range={"low": 115.0, "high": 150.0},
                abnormal_flag="LOW" if 110 + n % 40 < 115 else "NORMAL",
                observed_at=at + timedelta(minutes=20),
            ),
        ]
    return made


def consent(institution: str, local_id: str, at: datetime = START) -> ConsentGranted:
    """The person shares the record with the whole consortium, for treatment."""
    return ConsentGranted(
        envelope=_env("ConsentGranted", institution, local_id, at),
        consent_id=uuid.uuid4(),
        scope="CONSORTIUM_WIDE",
        institutions=(),
        purposes=("TREATMENT", "RESULT_RECOGNITION"),
        valid_from=at,
        expires_at=None,
    )


def referral(
    sender: str,
    local_id: str,
    receiver: str,
    direction: str,
    at: datetime = START + timedelta(days=1),
) -> ReferralRequested:
    """The sender refers the patient to the receiver: the receiver may read the sender's record
    until the request is answered or expires (7 days unanswered, docs/record.md)."""
    return ReferralRequested(
        envelope=_env("ReferralRequested", sender, local_id, at),
        referral_id=uuid.uuid4(),
        direction=direction,
        from_institution=sender,
        to_institution=receiver,
        reason=HYPERTENSION,
        urgency="ROUTINE",
        requested_service="心内科",
        clinical_summary="血压控制不佳",
        requesting_clinician_id="D1",
    )


def accepted(request: ReferralRequested, local_id: str) -> ReferralAccepted:
    """The receiver accepts the request an hour after it (both members then read each other's
    record until the referral ends)."""
    at = request.envelope.occurred_at + timedelta(hours=1)
    return ReferralAccepted(
        envelope=_env("ReferralAccepted", request.to_institution, local_id, at),
        referral_id=request.referral_id,
        accepted_by="D2",
    )


def load_record(database_url: str, events: Sequence[Event], consortium_id: str = "fhir") -> None:
    """Project events into the live shared record of a migrated database."""
    load_projection(RECORD, database_url, events, consortium_id)


def derived_in_outbox(database_url: str, projection: str) -> list[Event]:
    """The derived facts waiting in a projection's live outbox, in order (what its relay
    would publish next)."""
    codec = Codec(Catalog.load())
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            sql.SQL("SELECT payload FROM {}.outbox ORDER BY seq").format(sql.Identifier(projection))
        ).fetchall()
    return [codec.decode_event(bytes(payload)) for (payload,) in rows]


def load_projection(
    projection: Projection[Any, Any],
    database_url: str,
    events: Sequence[Event],
    consortium_id: str = "fhir",
) -> None:
    """Project events, in this order, into a projection's live generation (created if none)."""
    codec = Codec(Catalog.load())
    with psycopg.connect(database_url) as conn:
        generations.ensure_live(conn, projection)
    records = []
    for offset, event in enumerate(events):
        key = event.kafka_key()
        topic = event_topic(event.family, consortium_id)
        records.append(Record(topic, 0, offset, key, codec.encode_event(event)))
    processor = BatchProcessor(projection, database_url, codec, _RefuseDeadLetters())
    try:
        for start in range(0, len(records), 1000):
            processor.process(records[start : start + 1000])
    finally:
        processor.close()


def busy_person(institutions: Sequence[str], entries: int) -> tuple[uuid.UUID, list[Event]]:
    """A person with about `entries` timeline entries spread over the members, consenting."""
    person = uuid.uuid4()
    per_member = max(1, entries // ENTRIES_PER_VISIT // len(institutions))
    made: list[Event] = []
    for n, institution in enumerate(institutions):
        local_id = f"B{person.hex[:8]}{n}"
        made.append(linked(person, institution, local_id))
        made += visits(institution, local_id, per_member)
        if n == 0:
            made.append(consent(institution, local_id))
    return person, made


def timeline_size(events: Sequence[Event]) -> int:
    """How many timeline entries busy_person's events make (a visit's events make 5)."""
    return sum(
        2 if isinstance(e, OutpatientVisitCompleted) else 0 if isinstance(e, PersonLinked) else 1
        for e in events
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by the inclusive method."""
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def time_everything(
    base_url: str, token: str, person: uuid.UUID, requests: int, count: int
) -> list[float]:
    """Seconds of each of `requests` sequential `$everything` first pages."""
    took: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{base_url}/fhir/Patient/{person}/$everything"
    with httpx.Client(timeout=30) as http:
        for _ in range(requests):
            start = time.perf_counter()
            response = http.get(url, params={"_count": count}, headers=headers)
            took.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"$everything answered {response.status_code}: {response.text}")
    return took


def measure(requests: int, entries: int, count: int) -> list[Figure]:
    """Start servers, build the person, serve a gateway and time `$everything`."""
    from events.topics import READ_AUDIT_TOPIC
    from infra.runtime import ensure_up

    endpoints = ensure_up()
    consortium_id = f"benchfhir{uuid.uuid4().hex[:6]}"
    throwaway_topics(endpoints.bootstrap_servers, consortium_id, [READ_AUDIT_TOPIC])
    with scratch_database(endpoints.database_url, consortium_id) as database_url:
        return _timed(
            endpoints.bootstrap_servers, database_url, consortium_id, requests, entries, count
        )


@contextmanager
def scratch_database(server_url: str, name: str) -> Iterator[str]:
    """A migrated database of its own on the server, dropped afterwards (the bench's person
    must not join the live record of the development database)."""
    from infra.migrate import apply_migrations

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_conninfo(server_url, dbname=name)
        apply_migrations(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def _timed(
    bootstrap: str, database_url: str, consortium_id: str, requests: int, entries: int, count: int
) -> list[Figure]:
    from gateway.app import create_app
    from gateway.audit import close_audit_log
    from gateway.config import GatewayConfig
    from gateway.fhir.reads import close_record_pool
    from gateway.principals import Role
    from gateway.routers import fhir
    from gateway.testing import issue_token, serving

    person, events = busy_person(("439901-T03", "439901-C01"), entries)
    load_record(database_url, events, consortium_id)
    config = GatewayConfig(consortium_id, bootstrap, database_url)
    app = create_app(config)
    if not any(getattr(r, "path", "").startswith("/fhir/") for r in app.routes):
        app.include_router(fhir.router)
    token = issue_token(database_url, "439901-V017", Role.CLINICIAN)
    try:
        with serving(app) as base_url:
            time_everything(base_url, token, person, min(50, requests), count)  # warm up
            took = time_everything(base_url, token, person, requests, count)
    finally:
        close_audit_log(app)
        close_record_pool(app)
    ms = [t * 1000 for t in took]
    return [
        Figure("fhir.everything.p50", percentile(ms, 50), "ms"),
        Figure("fhir.everything.p99", percentile(ms, 99), "ms"),
        Figure("fhir.everything.timeline_entries", float(timeline_size(events)), "entries"),
    ]


def fhir_command(
    requests: Annotated[int, typer.Option("--requests", min=10, help="Timed requests.")] = 1000,
    entries: Annotated[
        int, typer.Option("--entries", min=10, help="Timeline entries of the person.")
    ] = 1000,
    count: Annotated[int, typer.Option("--count", min=1, max=500, help="_count per page.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per figure.")] = False,
) -> None:
    """Time `$everything` (first page, audited) for one person with many timeline entries."""
    with dropping_throwaways():
        figures = measure(requests, entries, count)
    report(figures, as_json=as_json)


__all__ = ["busy_person", "fhir_command", "load_record", "measure"]
