"""GET /v1/transfers against real Kafka and PostgreSQL: a desk's transfers only, filtered and
paged, every person on a page audited; other roles 403."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consortium.topics import ensure_topics
from events.catalog import Catalog
from events.codec import Codec
from events.topics import READ_AUDIT_TOPIC, event_topic
from gateway.app import create_app
from gateway.audit import close_audit_log
from gateway.config import GatewayConfig
from gateway.principals import Role
from gateway.testing import issue_token
from own_databases import own_database
from paging import all_pages
from projections.frame import generations
from projections.frame.batch import BatchProcessor
from projections.frame.records import DeadLetter, Record
from projections.transfers.projection import TRANSFERS
from projections.transfers.synthetic import transfer_flows

CODEC = Codec(Catalog.load())


class NoDeadLetters:
    """A sink that refuses to be used: these events are all valid."""

    def send(self, letters: Sequence[DeadLetter]) -> None:
        assert not letters, letters


@pytest.fixture(scope="module")
def board_url(database_url: str) -> Iterator[str]:
    """A database whose live transfers hold 120 synthetic flows' (referred and unreferred)."""
    with own_database(database_url, "transfers_api", migrate=True) as url:
        with psycopg.connect(url) as conn:
            generations.ensure_live(conn, TRANSFERS)
        events = [e for flow in transfer_flows(5, 120) for e in flow]
        random.Random(5).shuffle(events)
        offsets: dict[str, int] = {}
        records = []
        for event in events:
            topic = event_topic(event.family, "q")
            offsets[topic] = offsets.get(topic, -1) + 1
            records.append(Record(topic, 0, offsets[topic], None, CODEC.encode_event(event)))
        processor = BatchProcessor(TRANSFERS, url, CODEC, NoDeadLetters())
        processor.process(records)
        processor.close()
        yield url


@pytest.fixture
def client(kafka_bootstrap: str, board_url: str, fresh_consortium_id: str) -> Iterator[TestClient]:
    ensure_topics(kafka_bootstrap, fresh_consortium_id, specs=[READ_AUDIT_TOPIC])
    app = create_app(GatewayConfig(fresh_consortium_id, kafka_bootstrap, board_url))
    with TestClient(app) as client:
        yield client
    close_audit_log(app)


def institutions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT from_institution FROM transfers.transfers UNION"
            " SELECT to_institution FROM transfers.transfers ORDER BY 1"
        ).fetchall()
    return [r[0] for r in rows]


def expected(url: str, institution: str, unreferred: bool | None, direction: str | None) -> list:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT transfer_id::text, from_institution, to_institution, referred"
            " FROM transfers.transfers ORDER BY admitted_at DESC, transfer_id DESC"
        ).fetchall()
    return [
        t
        for t, src, dst, referred in rows
        if (direction != "incoming" or dst == institution)
        and (direction != "outgoing" or src == institution)
        and institution in (src, dst)
        and (unreferred is None or referred is not unreferred)
    ]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pick=st.integers(0, 100),
    unreferred=st.none() | st.booleans(),
    direction=st.none() | st.sampled_from(("incoming", "outgoing")),
    limit=st.integers(1, 9),
)
def test_a_desk_gets_exactly_its_transfers_filtered_and_paged(
    client: TestClient,
    board_url: str,
    pick: int,
    unreferred: bool | None,
    direction: str | None,
    limit: int,
) -> None:
    members = institutions(board_url)
    institution = members[pick % len(members)]
    desk = {"Authorization": f"Bearer {issue_token(board_url, institution, Role.REFERRAL_DESK)}"}
    items = all_pages(
        client, "/v1/transfers", desk, unreferred=unreferred, direction=direction, limit=limit
    )
    assert [i["transfer_id"] for i in items] == expected(
        board_url, institution, unreferred, direction
    )
    assert all(institution in (i["from_institution"], i["to_institution"]) for i in items)


def test_both_patients_of_every_transfer_on_a_page_are_audited_and_other_roles_get_403(
    client: TestClient, board_url: str
) -> None:
    institution = institutions(board_url)[0]
    desk = {"Authorization": f"Bearer {issue_token(board_url, institution, Role.REFERRAL_DESK)}"}
    response = client.get("/v1/transfers", params={"limit": 500}, headers=desk)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items, "the board has transfers of this member"
    with psycopg.connect(board_url) as conn:
        audited = {
            (inst, local)
            for inst, local in conn.execute(
                "SELECT subject_institution, subject_local_id FROM read_audit"
                " WHERE institution = %s AND outcome = 'ALLOWED'",
                (institution,),
            )
        }
    shown = {
        (i[f"{s}_institution"], i[f"{s}_patient_local_id"]) for i in items for s in ("from", "to")
    }
    assert shown <= audited, shown - audited
    for role in (Role.PUBLISHER, Role.BUREAU_ANALYST):
        other = {"Authorization": f"Bearer {issue_token(board_url, institution, role)}"}
        refused = client.get("/v1/transfers", headers=other)
        assert refused.status_code == 403, refused.text


def test_a_clinician_reads_no_transfers_list_of_another_members_stays(
    client: TestClient, board_url: str
) -> None:
    """A transfer shows the other member's stay (local id, encounter, discharge, disposition);
    a clinician sees another member's data only with consent, a referral or break-glass
    (DESIGN.md), which a desk's list does not decide: 403, as for the other roles."""
    members = institutions(board_url)
    for institution in members:
        token = issue_token(board_url, institution, Role.CLINICIAN)
        refused = client.get("/v1/transfers", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 403, refused.text
        assert "transfer_id" not in refused.text
    desk = {"Authorization": f"Bearer {issue_token(board_url, members[0], Role.REFERRAL_DESK)}"}
    assert client.get("/v1/transfers", headers=desk).status_code == 200
