"""The gateway on a broker that wants SASL_PLAINTEXT with SCRAM-SHA-512, the password read from a file.

The broker's SCRAM user is created when its storage is formatted (``KafkaCluster(sasl_users=...)``);
inter-broker and controller traffic stay PLAINTEXT. Produce, SSE and stateless reads all go through
the SASL listener; a wrong password leaves the gateway unready, and the password is never logged.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from httpx_sse import connect_sse

from localkafka import KafkaCluster
from tests.helpers import GatewayProcess, read_all, record_events

USER = "gateway"
PASSWORD = f"scram-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def sasl_cluster() -> Iterator[KafkaCluster]:
    with KafkaCluster(nodes=1, sasl_users={USER: PASSWORD}) as cluster:
        yield cluster


def _sasl_env(cluster: KafkaCluster, password_file: Path) -> dict[str, str]:
    return {
        "GATEWAY_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "GATEWAY_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "GATEWAY_KAFKA__SASL_USERNAME": USER,
        "GATEWAY_KAFKA__SASL_PASSWORD_FILE": str(password_file),
        "GATEWAY_LOG_LEVEL": "debug",
        "GATEWAY_METADATA_REFRESH_S": "1",
    }


def _wait_ready(url: str, want: int, timeout_s: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        r = httpx.get(url + "/readyz", timeout=5)
        if r.status_code == want or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_gateway_produces_and_consumes_through_scram_sha_512(sasl_cluster: KafkaCluster, tmp_path: Path) -> None:
    password_file = tmp_path / "kafka-password"
    password_file.write_text(PASSWORD + "\n")  # as `echo` or a Kubernetes secret writes it
    sasl_conf = {
        "bootstrap.servers": sasl_cluster.sasl_bootstrap_servers,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": USER,
        "sasl.password": PASSWORD,
    }
    topic = f"sasl-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(sasl_conf)  # kept in a name: a collected client cancels its own futures
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(timeout=30)
    log = tmp_path / "gateway.log"
    env = _sasl_env(sasl_cluster, password_file)
    with GatewayProcess(sasl_cluster.sasl_bootstrap_servers, env=env, log_file=log) as gw:
        assert _wait_ready(gw.url, 200).status_code == 200
        with httpx.Client(base_url=gw.url, timeout=30) as http:
            r = http.post(
                f"/topics/{topic}/records", json={"records": [{"key": f"k{i}", "value": i} for i in range(10)]}
            )
            assert r.status_code == 200, r.text
            assert len(r.json()["results"]) == 10
            # Consumed through the gateway (its consumers authenticate too) ...
            with connect_sse(http, "GET", f"/topics/{topic}/events", params={"from": "earliest"}) as source:
                got = []
                for event in record_events(source):
                    got.append(json.loads(event.data))
                    if len(got) == 10:
                        break
            assert sorted(e["value"] for e in got) == list(range(10))
            p = got[0]["partition"]
            r = http.get(f"/topics/{topic}/partitions/{p}/records", params={"offset": 0, "timeout_ms": 2000})
            assert r.status_code == 200, r.text
            assert r.json()["records"], r.text
    # ... and really in Kafka (read back over the plain listener, independently of the gateway).
    assert sorted(m.value() for m in read_all(sasl_cluster.bootstrap_servers, topic, 10, partitions=2)) == sorted(
        str(i).encode() for i in range(10)
    )
    assert PASSWORD not in log.read_text()


def test_wrong_password_leaves_the_gateway_unready_without_logging_it(
    sasl_cluster: KafkaCluster, tmp_path: Path
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    password_file = tmp_path / "kafka-password"
    password_file.write_text(wrong)
    log = tmp_path / "gateway.log"
    env = _sasl_env(sasl_cluster, password_file)
    with GatewayProcess(sasl_cluster.sasl_bootstrap_servers, env=env, log_file=log) as gw:
        r = _wait_ready(gw.url, 503, timeout_s=10)
        assert r.status_code == 503 and r.json()["error_code"] == 50301
        time.sleep(1)
    text = log.read_text()
    assert "Authentication failed" in text or "SASL authentication error" in text, text[-2000:]
    assert wrong not in text and PASSWORD not in text


def test_unreadable_password_file_stops_start_up_naming_the_variable(
    sasl_cluster: KafkaCluster, tmp_path: Path
) -> None:
    import subprocess
    import sys

    env = {**_sasl_env(sasl_cluster, tmp_path / "missing"), "GATEWAY_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    proc = subprocess.run([sys.executable, "-m", "gateway"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "GATEWAY_KAFKA" in proc.stderr and "sasl.password: cannot read" in proc.stderr
