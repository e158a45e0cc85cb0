"""A worker notices a partition standing still behind its log end, and moves it.

The fault is made on purpose by the worker's chaos hook (processors.watchdog): `pause` takes
the partition out of faust's fetching, which the first remedy (seek and resume) cures; `drop`
throws its records away before the agent until the group rebalances, which only the second
remedy (a rebalance) cures. Either way every event ends up applied, once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from consortium.processes import stop_group
from consortium.topics import ensure_topics
from events.publisher import Publisher
from events.topics import Family, event_topic
from infra.migrate import apply_migrations
from processors.watchdog import CHAOS_ENV
from projections.referrals.synthetic import referral_flows

WAIT_S = 120.0


def log_ends(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p))[1] for p in partitions}
    consumer.close()
    return ends


def stored(url: str, topic: str) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT partition, next_offset FROM consumer_offsets WHERE topic = %s", (topic,)
        ).fetchall()
    return {int(p): int(n) for p, n in rows}


def wait_for_line(log: Path, text: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in the worker's log:\n{log.read_text()}")
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("mode", "cured_by"),
    [("pause", "resuming and seeking"), ("drop", "asking the group to rebalance")],
)
def test_a_stalled_partition_is_moved_and_every_event_applied_once(
    kafka_bootstrap: str,
    scratch_database_url: str,
    fresh_consortium_id: str,
    tmp_path: Path,
    mode: str,
    cured_by: str,
) -> None:
    cid, url = fresh_consortium_id, scratch_database_url
    apply_migrations(url)
    ensure_topics(kafka_bootstrap, cid)
    topic = event_topic(Family.REFERRAL, cid)
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "CONSORTIUM_ID": cid,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DATABASE_URL": url,
        CHAOS_ENV: f"{mode}:{topic}:0",
    }
    command = [sys.executable, "-m", "processors.cli", "process", "referrals"]
    options = ["--batch-size", "50", "--session-timeout", "6", "--stall-after", "3"]
    options += ["--loglevel", "info"]
    with log.open("ab") as out:
        child = subprocess.Popen(
            [*command, *options], env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        if mode == "pause":  # the worker freezes partition 0 once it has it
            wait_for_line(log, "chaos: paused")
        events = [e for f in referral_flows(31, 60) for e in f]
        with Publisher(kafka_bootstrap, cid) as publisher:
            deliveries = publisher.publish(events)
        assert any(d.partition == 0 for d in deliveries)
        ends = log_ends(kafka_bootstrap, topic)

        deadline = time.monotonic() + WAIT_S
        while stored(url, topic) != {p: e for p, e in ends.items() if e}:
            assert child.poll() is None, log.read_text()
            if time.monotonic() > deadline:
                raise AssertionError(f"{stored(url, topic)} != {ends}:\n{log.read_text()}")
            time.sleep(0.2)
        text = log.read_text()
        assert f"stall watch: {topic}[0] stored 0 of {ends[0]}" in text
        assert "(rung 0)" in text and cured_by in text
        assert ("(rung 1)" in text) == (mode == "drop")
        assert "leaving" not in text
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM consumed_events").fetchone()
        assert row == (len(events),)
    finally:
        stop_group(child)
