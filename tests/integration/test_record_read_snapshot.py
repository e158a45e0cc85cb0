"""One read of the shared record sees one committed state, against real PostgreSQL and Kafka.

Each case commits a change from another connection *during* a read — after the read has
resolved the person and decided access, before it reads the entries (the seam: the read's own
`all_entries` / `recognizable_results` / `repeats_of`, wrapped to commit first). The answer and
its audit row must then be those of a read made wholly before the change, or wholly after it:
never entries read under the new state released on a decision made under the old one, nor
another person's entries under the asked person's audit row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from bench.fhir import _env, consent, linked, load_record, referral, visits
from consortium.topics import ensure_topics
from events.consent import ConsentRevoked
from events.envelope import Event
from events.person import MatchMethod, PersonsMerged
from events.referral import ReferralRejected
from events.topics import READ_AUDIT_TOPIC
from gateway.config import GatewayConfig
from gateway.fhir import reads
from gateway.principals import Role
from gateway.testing import gateway_client, issue_token
from own_databases import own_database
from projections.record import queries

TOWNSHIP, COUNTY, VILLAGE = "439901-T03", "439901-C01", "439901-V017"
NOW = datetime.now(UTC)
RECENT = NOW - timedelta(days=2)


@dataclass(frozen=True)
class Story:
    """A person's record, the person to read, and the change committed during the read."""

    read: uuid.UUID
    before: list[Event]
    change: list[Event]


def revoked_consent() -> Story:
    """A consortium-wide consent, revoked; the county records a visit after the revocation
    (its blood count repeats the township's, still valid)."""
    person, tag = uuid.uuid4(), uuid.uuid4().hex[:6]
    t, c = f"T{tag}", f"C{tag}"
    granted = consent(TOWNSHIP, t)
    revocation = ConsentRevoked(
        envelope=_env("ConsentRevoked", TOWNSHIP, t, NOW - timedelta(hours=3)),
        consent_id=granted.consent_id,
        reason="患者撤回",
    )
    before = [linked(person, TOWNSHIP, t), linked(person, COUNTY, c), granted]
    before += visits(TOWNSHIP, t, 1, RECENT) + visits(COUNTY, c, 1, RECENT - timedelta(days=1))
    return Story(person, before, [revocation, *visits(COUNTY, c, 1, NOW - timedelta(hours=2))])


def rejected_referral() -> Story:
    """Township → county, unanswered (the county reads the township); the county rejects it and
    the township records a visit after the rejection."""
    person, tag = uuid.uuid4(), uuid.uuid4().hex[:6]
    t, c = f"T{tag}", f"C{tag}"
    request = referral(TOWNSHIP, t, COUNTY, "UP", at=NOW - timedelta(days=1))
    rejection = ReferralRejected(
        envelope=_env("ReferralRejected", COUNTY, c, NOW - timedelta(hours=3)),
        referral_id=request.referral_id,
        reason="无床位",
    )
    before = [linked(person, TOWNSHIP, t), linked(person, COUNTY, c), request]
    before += visits(TOWNSHIP, t, 1, RECENT) + visits(COUNTY, c, 1, RECENT)
    return Story(person, before, [rejection, *visits(TOWNSHIP, t, 1, NOW - timedelta(hours=2))])


def merged_person() -> Story:
    """Person Q (one county visit) is merged into S (two county visits, a township → county
    referral): Q's id then reads S's record."""
    q, s, tag = uuid.uuid4(), uuid.uuid4(), uuid.uuid4().hex[:6]
    before = [linked(q, TOWNSHIP, f"TQ{tag}"), linked(q, COUNTY, f"CQ{tag}")]
    before += [linked(s, TOWNSHIP, f"TS{tag}"), linked(s, COUNTY, f"CS{tag}")]
    before += visits(COUNTY, f"CQ{tag}", 1, RECENT) + visits(COUNTY, f"CS{tag}", 2, RECENT)
    before.append(referral(TOWNSHIP, f"TS{tag}", COUNTY, "UP", at=NOW - timedelta(days=1)))
    merge = PersonsMerged(
        envelope=_env("PersonsMerged", COUNTY, str(s), NOW - timedelta(hours=1)),
        person_id=s,
        retired_person_id=q,
        method=MatchMethod.REVIEW,
    )
    return Story(q, before, [merge])


CASES: list[tuple[Callable[[], Story], str, str, Role]] = [
    (revoked_consent, "/fhir/Patient/{p}/$everything?_count=500", VILLAGE, Role.CLINICIAN),
    (revoked_consent, "/fhir/Encounter?patient={p}", VILLAGE, Role.CLINICIAN),
    (revoked_consent, "/v1/persons/{p}/recognizable-results", VILLAGE, Role.CLINICIAN),
    (revoked_consent, "/v1/persons/{p}/possible-repeats", VILLAGE, Role.CLINICIAN),
    (rejected_referral, "/fhir/Patient/{p}/$everything?_count=500", COUNTY, Role.CLINICIAN),
    (merged_person, "/fhir/Patient/{p}/$everything?_count=500", COUNTY, Role.CLINICIAN),
    (merged_person, "/fhir/Task?patient={p}", COUNTY, Role.REFERRAL_DESK),
    # The Patient shows only the first resolution of the person: held before the fix too.
    (merged_person, "/fhir/Patient/{p}", COUNTY, Role.CLINICIAN),
]


@pytest.fixture(scope="module")
def record_url(database_url: str) -> Iterator[str]:
    with own_database(database_url, "snapshot", migrate=True) as url:
        yield url


@pytest.fixture
def client(kafka_bootstrap: str, record_url: str, fresh_consortium_id: str) -> Iterator[TestClient]:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=[READ_AUDIT_TOPIC])
    with gateway_client(GatewayConfig(fresh_consortium_id, kafka_bootstrap, record_url)) as client:
        yield client


def _load(url: str, events: list[Event]) -> None:
    load_record(url, events, consortium_id="s" + uuid.uuid4().hex[:10])  # fresh offsets


def _audit_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM read_audit").fetchone()
    assert row is not None
    return int(row[0])


def _audited(url: str, after: int) -> tuple[Any, ...]:
    """The one audit row written since `after`, without what differs between any two reads."""
    with psycopg.connect(url, row_factory=psycopg.rows.dict_row) as conn:
        rows = conn.execute(
            "SELECT person_id, outcome, reason, detail FROM read_audit"
            " ORDER BY audited_at OFFSET %s",
            (after,),
        ).fetchall()
    assert len(rows) == 1, rows
    detail = dict(rows[0]["detail"] or {})
    detail.pop("id", None)
    detail.pop("recorded", None)
    return (str(rows[0]["person_id"]), rows[0]["outcome"], rows[0]["reason"], detail)


@pytest.mark.parametrize(
    ("story", "path", "institution", "role"),
    CASES,
    ids=[
        f"{s.__name__}-{p.split('?')[0].replace('/{p}', '').rsplit('/', 1)[-1]}-{r.value}"
        for s, p, _, r in CASES
    ],
)
def test_a_change_committed_during_a_read_is_wholly_in_or_wholly_out(
    story: Callable[[], Story],
    path: str,
    institution: str,
    role: Role,
    client: TestClient,
    record_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    told = story()
    _load(record_url, told.before)
    headers = {"Authorization": f"Bearer {issue_token(record_url, institution, role)}"}
    url = path.format(p=told.read)

    def answer() -> tuple[tuple[int, Any], tuple[Any, ...]]:
        before = _audit_count(record_url)
        response = client.get(url, headers=headers)
        return (response.status_code, response.json()), _audited(record_url, before)

    old = answer()
    committed: list[bool] = []

    def committing(step: Callable[..., Any]) -> Callable[..., Any]:
        def hooked(*args: Any, **kwargs: Any) -> Any:
            if not committed:  # once: between the access decision and the entries' query
                _load(record_url, told.change)
                committed.append(True)
            return step(*args, **kwargs)

        return hooked

    with monkeypatch.context() as patch:
        patch.setattr(reads, "all_entries", committing(reads.all_entries))
        for name in ("recognizable_results", "repeats_of"):
            patch.setattr(queries, name, committing(getattr(queries, name)))
        during = answer()
    assert committed, "the read never reached its entries"
    new = answer()
    assert old != new, "the change must change the answer, or the case proves nothing"
    assert during in (old, new), f"a mixed read: {during}\nbefore: {old}\nafter: {new}"
