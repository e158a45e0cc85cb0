"""`consortium reporting relay --once` and `show` against the test servers."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from consortium.settings import get_settings
from events.catalog import Catalog
from events.codec import Codec
from events.topics import event_topic
from infra.migrate import apply_migrations
from projections.frame import generations
from projections.frame.batch import BatchProcessor
from projections.frame.records import DeadLetter, Record
from projections.reporting.cli import reporting_app
from projections.reporting.projection import reporting_projection
from projections.reporting.synthetic import flows

CODEC = Codec(Catalog.load())


class NoDeadLetters:
    """These events are all valid."""

    def send(self, letters: list[DeadLetter]) -> None:
        assert not letters, letters


@pytest.fixture
def tenant(
    kafka_bootstrap: str,
    scratch_database_url: str,
    fresh_consortium_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """Settings pointing at the test servers, and a projected set of synthetic flows."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("CONSORTIUM_ID", fresh_consortium_id)
    monkeypatch.setenv("DATABASE_URL", scratch_database_url)
    get_settings.cache_clear()
    apply_migrations(scratch_database_url)
    projection = reporting_projection(fresh_consortium_id)
    with psycopg.connect(scratch_database_url) as conn:
        generations.ensure_live(conn, projection)
    events = [e for f in flows(29, 120) for e in f]
    records = [
        Record(event_topic(e.family, fresh_consortium_id), 0, i, None, CODEC.encode_event(e))
        for i, e in enumerate(events)
    ]
    processor = BatchProcessor(projection, scratch_database_url, CODEC, NoDeadLetters())
    processor.process(records)
    processor.close()
    yield fresh_consortium_id
    get_settings.cache_clear()


def test_relay_once_publishes_the_outbox_and_show_prints_suppressed_cells(tenant: str) -> None:
    app = typer.Typer()
    app.add_typer(reporting_app, name="reporting")
    runner = CliRunner()
    first = runner.invoke(app, ["reporting", "relay", "--once"])
    assert first.exit_code == 0, first.output
    published = int(first.output.split()[0])
    assert published > 50
    again = runner.invoke(app, ["reporting", "relay", "--once"])
    assert again.output.startswith("0 records published")
    shown = runner.invoke(app, ["reporting", "show", "--grain", "HOUR"])
    assert shown.exit_code == 0, shown.output
    assert "<5" in shown.output and "outpatient_visits" in shown.output
