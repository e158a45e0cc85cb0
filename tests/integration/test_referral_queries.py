"""The referral desk's queries over the live board."""

from __future__ import annotations

import random

import psycopg
import pytest

from events.catalog import Catalog
from events.codec import Codec
from events.topics import Family, event_topic
from infra.migrate import apply_migrations
from projections.frame import generations
from projections.frame.batch import BatchProcessor
from projections.frame.records import DeadLetter, Record
from projections.referrals.projection import REFERRALS
from projections.referrals.queries import get_referral, list_referrals
from projections.referrals.synthetic import referral_flows


class NoDeadLetters:
    """A sink that refuses to be used: these events are all valid."""

    def send(self, letters: list[DeadLetter]) -> None:
        assert not letters, letters


@pytest.fixture
def board_url(scratch_database_url: str) -> str:
    """A database whose live referral board holds 200 synthetic flows."""
    apply_migrations(scratch_database_url)
    with psycopg.connect(scratch_database_url) as conn:
        generations.ensure_live(conn, REFERRALS)
    codec = Codec(Catalog.load())
    events = [e for f in referral_flows(31, 200) for e in f]
    random.Random(31).shuffle(events)
    topic = event_topic(Family.REFERRAL, "q")
    records = [Record(topic, 0, i, None, codec.encode_event(e)) for i, e in enumerate(events)]
    processor = BatchProcessor(REFERRALS, scratch_database_url, codec, NoDeadLetters())
    processor.process(records)
    processor.close()
    return scratch_database_url


def test_a_desk_sees_only_referrals_from_or_to_its_institution(board_url: str) -> None:
    with psycopg.connect(board_url) as conn:
        rows = list_referrals(conn, "439901-T03")
        assert rows
        assert all("439901-T03" in (r["from_institution"], r["to_institution"]) for r in rows)
        incoming = list_referrals(conn, "439901-T03", direction="incoming")
        outgoing = list_referrals(conn, "439901-T03", direction="outgoing")
        assert len(incoming) + len(outgoing) == len(rows)
        assert all(r["to_institution"] == "439901-T03" for r in incoming)
        up = list_referrals(conn, "439901-T03", direction="UP")
        assert up and all(r["direction"] == "UP" for r in up)
        late = list_referrals(conn, "439901-C01", overdue=True)
        assert late and all(r["overdue"] for r in late)
        done = list_referrals(conn, "439901-C01", state="completed")
        assert done and all(r["state"] == "COMPLETED" for r in done)


def test_get_referral_returns_its_timeline_in_order(board_url: str) -> None:
    with psycopg.connect(board_url) as conn:
        completed = list_referrals(conn, "439901-T03", state="COMPLETED")[0]
        found = get_referral(conn, completed["referral_id"])
    assert found is not None
    kinds = [t["kind"] for t in found["timeline"]]
    assert kinds == [
        "ReferralRequested",
        "ReferralAccepted",
        "ReferralPatientArrived",
        "ReferralCompleted",
    ]
    assert all(t["status"] == "APPLIED" for t in found["timeline"])
