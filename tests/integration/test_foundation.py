"""The vertical slice through a real broker: produce, read back with confluent-kafka, SSE, health."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest
from httpx_sse import connect_sse

from localkafka import KafkaCluster
from tests.conftest import create_topic
from tests.helpers import GatewayProcess, read_all, record_events

pytestmark = pytest.mark.anyio


async def test_produce_one_record_lands_in_kafka_as_sent(client: httpx.AsyncClient, bootstrap: str, topic: str) -> None:
    body = {"key": "user-7", "value": {"clicked": "buy", "n": [1, 2]}, "headers": {"source": "web", "trace": "abc"}}
    r = await client.post(f"/topics/{topic}/records", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["topic"] == topic and answer["partition"] == 0 and answer["offset"] == 0
    assert answer["timestamp"] > 1_600_000_000_000

    (msg,) = read_all(bootstrap, topic, 1)
    assert msg.key() == b"user-7"
    assert msg.value() == b'{"clicked":"buy","n":[1,2]}'
    assert msg.headers() == [("source", b"web"), ("trace", b"abc")]
    assert (msg.partition(), msg.offset()) == (0, 0)
    assert msg.timestamp()[1] == answer["timestamp"]


async def test_errors_keep_the_error_shape(client: httpx.AsyncClient, topic: str) -> None:
    cases = [
        (client.get("/no/such/route"), 404, 40400),
        (
            client.post(f"/topics/{topic}/records", content=b"{oops", headers={"content-type": "application/json"}),
            400,
            40001,
        ),
        (client.post(f"/topics/{topic}/records", content=b"{}", headers={"content-type": "text/plain"}), 415, 41501),
        (client.post("/topics/missing-topic-x/records", json={"value": 1}), 404, 40401),
        (client.post(f"/topics/{topic}/records", json={"key": 5, "value": 1}), 422, 42201),
        (client.post(f"/topics/{topic}/records?async=maybe", json={"value": 1}), 400, 40001),
        (client.delete("/healthz"), 405, 40500),
    ]
    for request, status, code in cases:
        r = await request
        assert r.status_code == status, r.text
        body = r.json()
        assert set(body) == {"error_code", "message"}, body
        assert body["error_code"] == code and body["message"]


def test_sse_streams_from_earliest_and_latest_on_live_uvicorn(gateway: GatewayProcess, admin: object) -> None:
    topic = create_topic(admin, 1)  # type: ignore[arg-type]
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        for i in range(3):
            assert http.post(f"/topics/{topic}/records", json={"key": f"k{i}", "value": {"i": i}}).status_code == 200
        events = []
        with connect_sse(http, "GET", f"/topics/{topic}/events", params={"from": "earliest"}) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            for sse in record_events(source):
                events.append(sse)
                if len(events) == 3:
                    break
        assert [e.event for e in events] == ["record"] * 3
        data = [json.loads(e.data) for e in events]
        assert [(d["key"], d["value"], d["offset"]) for d in data] == [(f"k{i}", {"i": i}, i) for i in range(3)]
        assert all(e.id for e in events)

        # from=latest sees only what is produced after it started.
        with connect_sse(http, "GET", f"/topics/{topic}/events", params={"from": "latest"}) as source:
            it = record_events(source)
            time.sleep(0.3)
            assert http.post(f"/topics/{topic}/records", json={"key": "new", "value": "fresh"}).status_code == 200
            first = next(it)
            assert first.event == "record"
            assert json.loads(first.data)["value"] == "fresh"


def test_readyz_follows_the_broker_and_the_process_survives() -> None:
    with KafkaCluster(nodes=1) as cluster:
        env = {"GATEWAY_METADATA_REFRESH_S": "0.5"}
        with GatewayProcess(cluster.bootstrap_servers, env=env) as gw:
            assert httpx.get(gw.url + "/readyz").status_code == 200
            cluster.stop_node(0)
            status = _wait_status(gw.url + "/readyz", 503, 30)
            assert status.json()["error_code"] == 50301 and status.json()["message"]
            assert status.headers.get("retry-after")
            assert httpx.get(gw.url + "/healthz").status_code == 200
            cluster.start_node(0)
            _wait_status(gw.url + "/readyz", 200, 60)
            assert gw.process is not None and gw.process.poll() is None


def _wait_status(url: str, status: int, timeout_s: float) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = httpx.get(url, timeout=10)
        if last.status_code == status:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{url} stayed {last.status_code if last else None}, wanted {status}")


def test_bad_setting_stops_startup_with_one_line_naming_it() -> None:
    env = {"GATEWAY_PORT": "not-a-port", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "gateway"], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "GATEWAY_PORT" in lines[0], proc.stderr
