"""`consortium publish FILE.jsonl`: a bad line means nothing is sent; a good file arrives whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from typer.testing import CliRunner

from consortium.cli import app
from consortium.settings import get_settings
from consortium.topics import ensure_topics
from events.topics import EVENT_TOPICS
from examples import EXAMPLES, example_data


@pytest.fixture
def tenant(
    kafka_bootstrap: str, fresh_consortium_id: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """Point the CLI at the test broker and a fresh consortium with its topics."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("CONSORTIUM_ID", fresh_consortium_id)
    get_settings.cache_clear()
    ensure_topics(kafka_bootstrap, fresh_consortium_id)
    yield fresh_consortium_id
    get_settings.cache_clear()


def events_in_topics(bootstrap: str, consortium_id: str) -> int:
    """How many messages the consortium's event topics hold."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "count"})
    try:
        total = 0
        topics = consumer.list_topics(timeout=10).topics
        for spec in EVENT_TOPICS.values():
            name = spec.name(consortium_id)
            for partition in topics[name].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), 10)
                total += high - low
        return total
    finally:
        consumer.close()


def write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_a_file_with_one_bad_line_publishes_nothing(
    tenant: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    rows: list[object] = [example_data(t) for t in sorted(EXAMPLES)]
    broken = example_data("ReferralRequested")
    broken["urgency"] = "WHENEVER"
    rows.insert(7, broken)
    result = CliRunner().invoke(app, ["publish", str(write(tmp_path / "bad.jsonl", rows))])
    assert result.exit_code == 1
    assert "line 8, field urgency" in result.output
    assert "nothing was published" in result.output
    assert events_in_topics(kafka_bootstrap, tenant) == 0


def test_a_valid_file_is_published_whole(tenant: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    rows = [example_data(t) for t in sorted(EXAMPLES)]
    path = write(tmp_path / "ok.jsonl", rows)
    result = CliRunner().invoke(app, ["publish", str(path), "--batch", "5"])
    assert result.exit_code == 0, result.output
    assert f"published {len(rows)} events" in result.output
    assert events_in_topics(kafka_bootstrap, tenant) == len(rows)
