"""Three nodes keep acks=all writes through a leader crash and refuse them below two in sync."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.kafka import KafkaCluster
from infra.probe import create_topic, produce_all, read_partition, safe_producer

pytestmark = pytest.mark.cluster

DURABLE = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """Three KRaft nodes in a tmp folder, stopped at the end of the module whatever happens."""
    nodes = KafkaCluster(3, tmp_path_factory.mktemp("cluster"), detach=False)
    try:
        nodes.start()
        yield nodes
    finally:
        nodes.stop(timeout=10)


@pytest.fixture
def all_nodes_up(cluster: KafkaCluster) -> Iterator[KafkaCluster]:
    """The cluster with every node running before and after the test."""
    yield cluster
    for node_id, pid in cluster.pids.items():
        if pid is None:
            cluster.restart(node_id)


def records(prefix: str, count: int) -> list[tuple[bytes, bytes]]:
    """count records of one patient, so that one partition holds them in order."""
    return [(b"H01|p1", f"{prefix}-{i}".encode()) for i in range(count)]


def test_state_file_lets_another_process_see_the_cluster(cluster: KafkaCluster) -> None:
    seen = KafkaCluster.existing(Path(cluster.data_dir))

    assert seen is not None
    assert seen.bootstrap == cluster.bootstrap
    assert seen.pids == cluster.pids
    assert all(cluster.pids.values())
    assert cluster.broker_ids() == {1, 2, 3}


def test_leader_crash_elects_a_new_leader_and_loses_no_acked_write(
    all_nodes_up: KafkaCluster, fresh_consortium_id: str
) -> None:
    cluster = all_nodes_up
    topic = f"{fresh_consortium_id}.referral.v1"
    create_topic(cluster.bootstrap, topic, partitions=1, replication=3, config=DURABLE)
    producer = safe_producer(cluster.bootstrap, **{"message.timeout.ms": 60000})
    before, after = records("before", 200), records("after", 200)
    assert produce_all(producer, topic, before) == [None] * len(before)
    old_leader = cluster.wait_for_leader(topic)

    cluster.kill(old_leader, signal.SIGKILL)
    new_leader = cluster.wait_for_leader(topic, exclude={old_leader})
    reports = produce_all(producer, topic, after)

    assert new_leader in {1, 2, 3} - {old_leader}
    assert reports == [None] * len(after)
    # Idempotence: no duplicates despite retries across the leader change.
    assert read_partition(cluster.bootstrap, topic, 0, timeout=30) == before + after


def test_a_write_is_not_acknowledged_with_two_of_three_nodes_down(
    all_nodes_up: KafkaCluster, fresh_consortium_id: str
) -> None:
    cluster = all_nodes_up
    topic = f"{fresh_consortium_id}.result.v1"
    create_topic(cluster.bootstrap, topic, partitions=1, replication=3, config=DURABLE)
    leader = cluster.wait_for_leader(topic)
    followers = sorted({1, 2, 3} - {leader})

    for node_id in followers:
        cluster.kill(node_id, signal.SIGKILL)
    producer = safe_producer(cluster.bootstrap, **{"message.timeout.ms": 8000})
    reports = produce_all(producer, topic, records("lonely", 1), timeout=20)

    assert len(reports) == 1 and reports[0] is not None, "acked with one in-sync replica"
    for node_id in followers:
        cluster.restart(node_id)
    retry = produce_all(safe_producer(cluster.bootstrap), topic, records("back", 1))
    assert retry == [None]
