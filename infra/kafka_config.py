"""The files one KRaft node needs: server.properties and a log4j2 configuration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.process import LOOPBACK


@dataclass(frozen=True)
class NodePorts:
    """The two listeners of one combined broker+controller node."""

    node_id: int
    broker_port: int
    controller_port: int


def replication_settings(node_count: int) -> dict[str, str]:
    """Durability settings: replication 3 with two in sync on a cluster, 1 on a single node."""
    replicas = min(node_count, 3)
    min_isr = 2 if replicas >= 3 else 1
    return {
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replicas),
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "unclean.leader.election.enable": "false",
    }


def server_properties(
    node: NodePorts,
    all_nodes: Sequence[NodePorts],
    log_dir: Path,
    extra: Mapping[str, str] | None = None,
) -> str:
    """server.properties of one node in KRaft combined mode with a static controller quorum."""
    voters = ",".join(f"{n.node_id}@{LOOPBACK}:{n.controller_port}" for n in all_nodes)
    settings: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        # A static quorum: fixed voters, formatted without --standalone/--initial-controllers.
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{LOOPBACK}:{node.broker_port},"
        f"CONTROLLER://{LOOPBACK}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{node.broker_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "offsets.topic.num.partitions": "10",
        "group.initial.rebalance.delay.ms": "0",
        # Few threads: a laptop or a 2-core CI box runs up to three of these side by side.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.ms": "-1",
        # Topics are declared once (events/topics.py); a typo must fail, not create a topic.
        "auto.create.topics.enable": "false",
        **replication_settings(len(all_nodes)),
        **(extra or {}),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def log4j2_xml(log_file: Path) -> str:
    """A log4j2 configuration that writes the broker's log to one rolling file."""
    pattern = "[%d] %p %m (%c)%n"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <RollingFile name="file" fileName="{log_file}" filePattern="{log_file}.%i">
      <PatternLayout pattern="{pattern}"/>
      <Policies><SizeBasedTriggeringPolicy size="50 MB"/></Policies>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.controller" level="INFO"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""
