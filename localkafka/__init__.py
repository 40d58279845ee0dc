"""Real Apache Kafka brokers (KRaft) for development, tests, CI and benchmarks.

Kafka's own jars come from Maven Central through Maven (``pom.xml`` beside this file pins the
release and a log4j2 binding) and are cached outside the repository. Brokers run as plain ``java``
processes on free loopback ports in temporary directories: storage is formatted, the process
started, and ``start()`` returns once metadata answers. Every process is stopped on ``close()``, at
interpreter exit, and, through ``PR_SET_PDEATHSIG``, when the parent dies, so none is left behind.

``KafkaCluster(nodes=3)`` starts a three-node cluster (each node broker and controller) for
failover tests; single nodes are the default. ``KafkaCluster(sasl_users={"gateway": "pw"})`` adds a
SASL_PLAINTEXT listener (SCRAM-SHA-512, users created when storage is formatted) beside the
PLAINTEXT one; inter-broker and controller traffic stay PLAINTEXT.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

KAFKA_VERSION = "4.4.0"
HERE = Path(__file__).resolve().parent
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kafka-http-gateway"
LOG4J_CONFIG = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
"""


def jars_dir(version: str = KAFKA_VERSION) -> Path:
    return CACHE_ROOT / f"kafka-{version}" / "libs"


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Fetch Kafka's jars and their runtime dependencies with Maven once; return the directory."""
    libs = jars_dir(version)
    done = libs.parent / ".complete"
    if done.exists():
        return libs
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) is needed to fetch the Kafka jars; install it (apt-get install maven)")
    staging = libs.parent / f"libs.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [
        "mvn", "-q", "-B", "-f", str(HERE / "pom.xml"),
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    print(f"localkafka: fetching Apache Kafka {version} jars from Maven Central ...", file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    (libs.parent / "log4j2.yaml").write_text(LOG4J_CONFIG)
    done.write_text(version)
    return libs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# One thread that lives as long as the interpreter starts every broker (see KafkaCluster._launch).
_LAUNCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="localkafka-launcher")


def _die_with_parent() -> None:
    # Linux: the broker gets SIGKILL when the Python process that started it dies, however it dies.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setsid()


@dataclass
class Node:
    node_id: int
    port: int
    controller_port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    sasl_port: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_address(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"


@dataclass
class KafkaCluster:
    """A KRaft cluster of ``nodes`` combined broker+controller processes on loopback."""

    nodes: int = 1
    version: str = KAFKA_VERSION
    heap: str = "512m"
    extra_config: dict[str, str] = field(default_factory=dict)
    # SCRAM-SHA-512 users (name -> password) of an extra SASL_PLAINTEXT listener; none: no such listener.
    sasl_users: dict[str, str] = field(default_factory=dict)
    # Kept in a temp dir unless given; removed on close() when we created it.
    workdir: Path | None = None
    members: list[Node] = field(default_factory=list)
    cluster_id: str = field(default_factory=lambda: base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    _own_workdir: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(n.address for n in self.members)

    @property
    def sasl_bootstrap_servers(self) -> str:
        """Addresses of the SASL_PLAINTEXT (SCRAM-SHA-512) listeners; needs ``sasl_users``."""
        return ",".join(n.sasl_address for n in self.members)

    def _config(self, node: Node) -> str:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.members)
        rf = min(3, self.nodes)
        conf = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(node.data_dir),
            "num.partitions": "1",
            "default.replication.factor": str(rf),
            "min.insync.replicas": str(2 if self.nodes >= 3 else 1),
            "offsets.topic.replication.factor": str(rf),
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(min(2, rf)),
            "share.coordinator.state.topic.replication.factor": str(rf),
            "share.coordinator.state.topic.min.isr": str(min(2, rf)),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            "log.flush.interval.messages": "9223372036854775807",
        }
        if self.sasl_users:
            conf.update(self._sasl_config(node))
        conf.update(self.extra_config)
        return "".join(f"{k}={v}\n" for k, v in conf.items())

    def _sasl_config(self, node: Node) -> dict[str, str]:
        sasl = f"SASL_PLAINTEXT://127.0.0.1:{node.sasl_port}"
        return {
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port},{sasl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port},{sasl}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            # The broker checks SCRAM credentials stored in the cluster metadata; the login module needs no options.
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
        }

    def _scram_args(self) -> list[str]:
        # Users exist from the first start: written into the metadata log when storage is formatted.
        return [
            arg
            for name, password in self.sasl_users.items()
            for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")
        ]

    def _java(self, *args: str, heap: str | None = None) -> list[str]:
        libs = jars_dir(self.version)
        java = shutil.which("java") or "java"
        cmd = [java]
        if heap:
            cmd += [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1"]
        cmd += [
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={libs.parent / 'log4j2.yaml'}",
            "-cp", f"{libs}/*",
            *args,
        ]  # fmt: skip
        return cmd

    def start(self, timeout_s: float = 60.0) -> KafkaCluster:
        ensure_jars(self.version)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="localkafka-"))
            self._own_workdir = True
        self.members = [
            Node(i + 1, free_port(), free_port(), self.workdir / f"node{i + 1}" / "data") for i in range(self.nodes)
        ]
        if self.sasl_users:
            for node in self.members:
                node.sasl_port = free_port()
        for node in self.members:
            conf_path = node.data_dir.parent / "server.properties"
            node.data_dir.mkdir(parents=True, exist_ok=True)
            conf_path.write_text(self._config(node))
            subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={self.cluster_id}",
                    "-c",
                    str(conf_path),
                    *self._scram_args(),
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        _register(self)
        for node in self.members:
            self._launch(node)
        self.wait_ready(timeout_s)
        return self

    def _launch(self, node: Node) -> None:
        node.log_path = node.data_dir.parent / "broker.log"
        log = open(node.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        conf_path = node.data_dir.parent / "server.properties"
        cmd = self._java("kafka.Kafka", str(conf_path), heap=self.heap)
        # Started from the launcher thread, never from the caller's: PR_SET_PDEATHSIG fires when the
        # *thread* that forked the broker ends, so a broker restarted from a short-lived test thread
        # would be SIGKILLed the moment that thread returned.
        node.process = _LAUNCHER.submit(
            subprocess.Popen, cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
        ).result()
        log.close()

    def wait_ready(self, timeout_s: float = 60.0, nodes: list[Node] | None = None) -> None:
        """Return once every (given) running node answers metadata with all nodes registered."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        targets = nodes or [n for n in self.members if n.process is not None]
        want = {n.node_id for n in self.members if n.process is not None}
        for node in targets:
            admin = AdminClient({"bootstrap.servers": node.address, "log_level": "0"})
            while True:
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(f"broker {node.node_id} exited early; see {node.log_path}")
                try:
                    md = admin.list_topics(timeout=1.0)
                    if want <= set(md.brokers):
                        break
                except Exception:  # not up yet
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"broker {node.node_id} not ready in {timeout_s} s; see {node.log_path}")
                time.sleep(0.1)

    def stop_node(self, index: int, kill: bool = False, timeout_s: float = 30.0) -> None:
        """Stop node ``index`` (0-based): SIGTERM for a clean shutdown, or SIGKILL with ``kill``."""
        node = self.members[index]
        proc = node.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        node.process = None

    def start_node(self, index: int, timeout_s: float = 60.0) -> None:
        node = self.members[index]
        if node.process is None:
            self._launch(node)
        self.wait_ready(timeout_s, [node])

    def close(self) -> None:
        """Stop every node and remove the temporary directory. Safe to call twice."""
        for node in self.members:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for i in range(len(self.members)):
            self.stop_node(i, timeout_s=20.0)
        _live.discard(self)
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __hash__(self) -> int:
        return id(self)


_live: set[KafkaCluster] = set()


def _register(cluster: KafkaCluster) -> None:
    _live.add(cluster)


@atexit.register
def _close_all() -> None:
    for cluster in list(_live):
        cluster.close()
