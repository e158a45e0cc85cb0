"""Apache Kafka in KRaft mode, one or three combined nodes on 127.0.0.1, run from Maven's jars."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from consortium.settings import get_settings
from infra.jars import DEFAULT_KAFKA_VERSION, kafka_libs
from infra.kafka_config import NodePorts, log4j2_xml, server_properties
from infra.process import (
    LOOPBACK,
    command_line,
    die_with_parent,
    free_port,
    pid_alive,
    port_open,
    tail,
    terminate,
)
from infra.security import ADMIN, KafkaSecurity

STATE_FILE = "cluster.json"
_quiet = logging.getLogger("infra.kafka.admin")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


class KafkaStartError(RuntimeError):
    """A broker did not come up; the message carries the tail of its log."""


@dataclass
class NodeState:
    """Ports and process id of one node, as persisted in the cluster's state file."""

    node_id: int
    broker_port: int
    controller_port: int
    pid: int | None = None

    @property
    def ports(self) -> NodePorts:
        """The node's listeners."""
        return NodePorts(self.node_id, self.broker_port, self.controller_port)


def admin_client(bootstrap: str, config: Mapping[str, str] | None = None) -> AdminClient:
    """An AdminClient whose connection-refused chatter stays out of the terminal."""
    return AdminClient({"bootstrap.servers": bootstrap, **(config or {})}, logger=_quiet)


class KafkaCluster:
    """One or three KRaft nodes (broker+controller) whose data and state live in data_dir."""

    def __init__(
        self,
        nodes: int = 1,
        data_dir: Path | None = None,
        *,
        version: str = DEFAULT_KAFKA_VERSION,
        cache_dir: Path | None = None,
        heap_mb: int = 768,
        detach: bool = True,
        extra_config: Mapping[str, str] | None = None,
        start_timeout: float = 120.0,
        security: KafkaSecurity | None = None,
    ) -> None:
        if nodes not in (1, 3):
            raise ValueError("a cluster has 1 or 3 nodes")
        settings = get_settings()
        self.data_dir = (data_dir or settings.state_dir / "kafka").resolve()
        self.cache_dir = cache_dir or settings.cache_dir
        self.version = version
        self.heap_mb = heap_mb
        # Detached nodes outlive the CLI; attached ones (tests) die with their parent.
        self.detach = detach
        self.extra_config = dict(extra_config or {})
        self.start_timeout = start_timeout
        # TLS, SCRAM and ACLs (docs/security.md); a folder laid out secure stays secure.
        self.security = security
        self.cluster_id = ""
        self.nodes: dict[int, NodeState] = {}
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._load(nodes)

    @classmethod
    def existing(cls, data_dir: Path | None = None, **options: Any) -> KafkaCluster | None:
        """The cluster persisted in data_dir, None when there is none."""
        folder = (data_dir or get_settings().state_dir / "kafka").resolve()
        try:
            state = json.loads((folder / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        return cls(len(state["nodes"]), folder, **options)

    @property
    def state_file(self) -> Path:
        """Where ports and pids are kept for other processes (`consortium infra status`)."""
        return self.data_dir / STATE_FILE

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers, comma separated."""
        return ",".join(f"{LOOPBACK}:{n.broker_port}" for n in self.nodes.values())

    @property
    def client_config(self) -> dict[str, str]:
        """What this process's admin requests need: nothing, or the admin's TLS and SCRAM."""
        return self.security.client_config(ADMIN) if self.security else {}

    @property
    def pids(self) -> dict[int, int | None]:
        """The process id of each node, None when not running."""
        return {i: (n.pid if self._owns(n) else None) for i, n in self.nodes.items()}

    def _owns(self, node: NodeState) -> bool:
        """Whether node.pid is alive and still this node's broker (pids get reused)."""
        proc = self._procs.get(node.node_id)
        if proc is not None and proc.pid == node.pid:
            # Our own child: its cmdline is briefly empty while it execs.
            return proc.poll() is None
        cmd = command_line(node.pid)
        return pid_alive(node.pid) and (cmd is None or str(self.node_dir(node.node_id)) in cmd)

    def node_dir(self, node_id: int) -> Path:
        """The folder of one node: configuration, data and logs."""
        return self.data_dir / f"node-{node_id}"

    def log_file(self, node_id: int) -> Path:
        """The broker log of one node."""
        return self.node_dir(node_id) / "logs" / "server.log"

    def is_running(self) -> bool:
        """Whether every node's process is alive."""
        return all(self.pids.values())

    def start(self) -> str:
        """Start every node that is not running and wait until all answer; the bootstrap."""
        libs = kafka_libs(self.cache_dir, self.version)
        for node in self.nodes.values():
            if not self._owns(node):
                self._launch(node, libs)
        self._save()
        self.wait_ready(len(self.nodes))
        return self.bootstrap

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every node at once, SIGKILL what is left after timeout."""
        running = [n for n in self.nodes.values() if self._owns(n)]
        for node in running:
            assert node.pid is not None
            os.kill(node.pid, signal.SIGCONT)
            os.kill(node.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            if node in running:
                terminate(node.pid, max(0.1, deadline - time.monotonic()))
            self._reap(node.node_id)
            node.pid = None
        self._save()

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        """Send a signal to one node (SIGKILL, SIGSTOP, SIGCONT) for fault tests."""
        node = self.nodes[node_id]
        if not self._owns(node) or node.pid is None:
            raise ProcessLookupError(f"node {node_id} is not running")
        os.kill(node.pid, sig)
        if sig == signal.SIGKILL:
            self._reap(node_id)
            node.pid = None
            self._save()

    def restart(self, node_id: int) -> None:
        """Start one node again (after kill) and wait until it is back in the metadata."""
        node = self.nodes[node_id]
        if self._owns(node):
            terminate(node.pid)
            self._reap(node_id)
        self._launch(node, kafka_libs(self.cache_dir, self.version))
        self._save()
        self.wait_ready(len(self.nodes), must_include=(node_id,))

    def leader_of(self, topic: str, partition: int = 0) -> int:
        """The node id leading a partition, -1 when it has no leader."""
        metadata = admin_client(self.bootstrap, self.client_config).list_topics(topic, timeout=10)
        leader: int = metadata.topics[topic].partitions[partition].leader
        return leader

    def wait_for_leader(
        self, topic: str, partition: int = 0, exclude: Collection[int] = (), timeout: float = 60
    ) -> int:
        """Wait until the partition has a leader outside exclude; its node id."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                leader = self.leader_of(topic, partition)
            except Exception:  # the killed node may be the one asked; ask again
                leader = -1
            if leader >= 0 and leader not in exclude:
                return leader
            time.sleep(0.5)
        raise TimeoutError(f"{topic}[{partition}] has no leader outside {sorted(exclude)}")

    def broker_ids(self, timeout: float = 5.0) -> set[int]:
        """The node ids the cluster's metadata lists as brokers right now."""
        metadata = admin_client(self.bootstrap, self.client_config).list_topics(timeout=timeout)
        return set(metadata.brokers)

    def answers(self, timeout: float = 5.0) -> bool:
        """Whether a metadata request is answered by all the nodes."""
        try:
            return len(self.broker_ids(timeout)) == len(self.nodes)
        except Exception:
            return False

    def wait_ready(self, brokers: int, must_include: Collection[int] = ()) -> None:
        """Wait until metadata lists `brokers` brokers; raise with the log tail on failure."""
        deadline = time.monotonic() + self.start_timeout
        admin: AdminClient | None = None
        while time.monotonic() < deadline:
            for node in self.nodes.values():
                if node.pid is not None and not pid_alive(node.pid):
                    self._fail(node.node_id, "exited during start-up")
            try:
                admin = admin or admin_client(self.bootstrap, self.client_config)
                ids = set(admin.list_topics(timeout=2).brokers)
                if len(ids) >= brokers and set(must_include) <= ids:
                    return
            except Exception:  # not answering yet
                pass
            time.sleep(0.5)
        first = next(iter(must_include), next(iter(self.nodes)))
        self._fail(first, f"did not answer within {self.start_timeout:.0f} s")

    def _fail(self, node_id: int, what: str) -> None:
        """Raise with the tail of the node's broker log and of its console output."""
        node_dir = self.node_dir(node_id)
        raise KafkaStartError(
            f"Kafka node {node_id} {what}.\n--- {self.log_file(node_id)}\n"
            f"{tail(self.log_file(node_id))}\n--- console\n{tail(node_dir / 'console.log')}"
        )

    def _load(self, nodes: int) -> None:
        """Reuse the persisted cluster (same ports, same data) or lay out a new one."""
        if self.state_file.is_file():
            state = json.loads(self.state_file.read_text())
            if len(state["nodes"]) != nodes:
                raise ValueError(
                    f"{self.data_dir} holds a {len(state['nodes'])}-node cluster, not {nodes}; "
                    "stop it and remove the folder to change the topology"
                )
            self._load_security(bool(state.get("secure")))
            self.cluster_id = state["cluster_id"]
            self.nodes = {n["node_id"]: NodeState(**n) for n in state["nodes"]}
            return
        # A base64 id may begin with "-"; the storage tool is given it as --cluster-id=ID.
        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.nodes = {i: NodeState(i, free_port(), free_port()) for i in range(1, nodes + 1)}
        ports = [n.ports for n in self.nodes.values()]
        if self.security is not None:
            self.security.prepare(self.nodes)
        for node in self.nodes.values():
            node_dir = self.node_dir(node.node_id)
            (node_dir / "logs").mkdir(parents=True, exist_ok=True)
            extra = {**self._secure_config(node), **self.extra_config}
            config = server_properties(node.ports, ports, node_dir / "data", extra)
            (node_dir / "server.properties").write_text(config)
            if self.security is not None:  # the configuration holds the broker's password
                (node_dir / "server.properties").chmod(0o600)
            (node_dir / "log4j2.xml").write_text(log4j2_xml(self.log_file(node.node_id)))
        self._save()

    def _load_security(self, secure: bool) -> None:
        """Take the persisted mode: a secure folder stays secure, a plaintext one cannot turn."""
        if secure and self.security is None:
            self.security = KafkaSecurity(self.data_dir / "security")
        elif not secure and self.security is not None:
            raise ValueError(
                f"{self.data_dir} holds a plaintext cluster; stop it and remove the folder "
                "to start a secure one"
            )

    def _secure_config(self, node: NodeState) -> dict[str, str]:
        """The node's TLS, SASL and authorizer settings; none in plaintext mode."""
        if self.security is None:
            return {}
        return self.security.server_config(node.node_id, node.broker_port, node.controller_port)

    def _save(self) -> None:
        """Write ports and pids atomically so that a reader never sees half a file."""
        state = {
            "version": self.version,
            "cluster_id": self.cluster_id,
            "bootstrap": self.bootstrap,
            "secure": self.security is not None,
            "nodes": [asdict(n) for n in self.nodes.values()],
        }
        self.data_dir.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2))
        partial.replace(self.state_file)

    def _java(self, libs: Path, node_id: int, main: str, *args: str) -> list[str]:
        """The java command line running one of Kafka's main classes for a node."""
        node_dir = self.node_dir(node_id)
        return [
            "java", f"-Xms{min(256, self.heap_mb)}m", f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node_dir / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={node_dir / 'logs'}",
            "-cp", f"{libs}/*", main, *args,
        ]  # fmt: skip

    def _launch(self, node: NodeState, libs: Path) -> None:
        """Format the node's storage on first start, then run kafka.Kafka."""
        node_dir = self.node_dir(node.node_id)
        config = str(node_dir / "server.properties")
        if not (node_dir / "data" / "meta.properties").is_file():
            fmt = self._java(libs, node.node_id, "kafka.tools.StorageTool", "format",
                             f"--cluster-id={self.cluster_id}", "-c", config,
                             *(self.security.format_args() if self.security else ()))  # fmt: skip
            done = subprocess.run(fmt, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise KafkaStartError(f"formatting node {node.node_id} failed:\n{done.stderr}")
        for port in (node.broker_port, node.controller_port):
            if port_open(port, timeout=0.2):
                raise KafkaStartError(f"port {port} of node {node.node_id} is taken")
        prefix = [] if self.detach else list(die_with_parent())
        with (node_dir / "console.log").open("ab") as console:
            proc = subprocess.Popen(
                [*prefix, *self._java(libs, node.node_id, "kafka.Kafka", config)],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                cwd=node_dir, start_new_session=True,
            )  # fmt: skip
        self._procs[node.node_id] = proc
        node.pid = proc.pid

    def _reap(self, node_id: int) -> None:
        """Wait for our own child after it ended, so no zombie keeps its pid."""
        proc = self._procs.pop(node_id, None)
        if proc is not None:
            proc.wait(timeout=30)
