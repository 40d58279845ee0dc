"""Operations (API.md §5): request metrics, X-Request-ID, JSON access log lines, librdkafka statistics."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable

import httpx
import pytest

from tests.helpers import AccessLines, GatewayProcess

pytestmark = pytest.mark.anyio


def _sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text format, or None if absent."""
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.rsplit(" ", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_requests_are_counted_by_route_template_and_status(client: httpx.AsyncClient, topic: str) -> None:
    before = (await client.get("/metrics")).text
    base = _sample(before, "gateway_http_requests_total", method="GET", route="/topics/{topic}", status="200") or 0
    for _ in range(3):
        assert (await client.get(f"/topics/{topic}")).status_code == 200
    assert (await client.get("/topics/no-such-topic-obs")).status_code == 404
    assert (await client.get("/no/such/route/at/all")).status_code == 404

    text = (await client.get("/metrics")).text
    assert _sample(text, "gateway_http_requests_total", method="GET", route="/topics/{topic}", status="200") == base + 3
    assert _sample(text, "gateway_http_requests_total", method="GET", route="/topics/{topic}", status="404") == 1
    assert _sample(text, "gateway_http_requests_total", method="GET", route="unmatched", status="404") == 1
    count = _sample(
        text, "gateway_http_request_duration_seconds_count", method="GET", route="/topics/{topic}", status="200"
    )
    assert count == base + 3
    # Topic names never become label values of the HTTP series.
    assert topic not in "\n".join(line for line in text.splitlines() if line.startswith("gateway_http_"))


async def test_produce_requests_are_counted_and_logged_by_route_template(
    client: httpx.AsyncClient, topic: str, access_log: AccessLines
) -> None:
    # The produce route is answered without FastAPI's router (gateway/api/raw_route.py): its
    # requests must still carry the route template, the topic and the status everywhere.
    template = "/topics/{topic}/records"
    before = (await client.get("/metrics")).text
    base = {s: _sample(before, "gateway_http_requests_total", method="POST", route=template, status=s) or 0
            for s in ("200", "404", "422")}  # fmt: skip
    ok = await client.post(f"/topics/{topic}/records", json={"value": 1}, headers={"x-request-id": "prod-ok"})
    missing = await client.post("/topics/no-such-topic-obs/records", json={"value": 1})
    bad = await client.post(f"/topics/{topic}/records", json={"records": [{"value": 1}, {"partition": "x"}]})
    assert (ok.status_code, missing.status_code, bad.status_code) == (200, 404, 422)
    assert ok.headers["x-request-id"] == "prod-ok"
    assert missing.json()["error_code"] == 40401 and bad.json()["error_code"] == 42201

    text = (await client.get("/metrics")).text
    for status in ("200", "404", "422"):
        got = _sample(text, "gateway_http_requests_total", method="POST", route=template, status=status)
        assert got == base[status] + 1, status
    (line,) = [x for x in access_log.parsed() if x["request_id"] == "prod-ok"]
    assert (line["route"], line["topic"], line["status"], line["method"]) == (template, topic, 200, "POST")


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"x-request-id": "abc-123.x"})
    assert r.headers["x-request-id"] == "abc-123.x"
    r1, r2 = await client.get("/healthz"), await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{16}", r1.headers["x-request-id"])
    assert r1.headers["x-request-id"] != r2.headers["x-request-id"]
    # Not echoed verbatim when it could break a log line or a header.
    r = await client.get("/healthz", headers={"x-request-id": "a b\tc" + "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{16}", r.headers["x-request-id"])
    # Errors carry it too.
    r = await client.get("/no/such/route", headers={"x-request-id": "err-1"})
    assert r.status_code == 404 and r.headers["x-request-id"] == "err-1"


async def test_one_json_log_line_per_request_without_secrets(
    client: httpx.AsyncClient, topic: str, access_log: AccessLines
) -> None:
    r = await client.get(
        f"/topics/{topic}/offsets",
        params={"access_token": "s3cr3t-token", "timestamp": "0"},
        headers={"x-request-id": "log-test-1", "authorization": "Bearer other-s3cr3t"},
    )
    assert r.status_code == 200
    lines = [json.loads(line) for line in access_log.lines]
    (line,) = [x for x in lines if x["request_id"] == "log-test-1"]
    assert line["route"] == "/topics/{topic}/offsets"
    assert line["path"] == f"/topics/{topic}/offsets"
    assert line["topic"] == topic
    assert line["status"] == 200 and line["method"] == "GET"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] > 0
    assert "principal" in line and line["ts"].endswith("Z")
    # The credential is gone from the logged query (redacted here, or already removed by auth).
    assert "timestamp=0" in line["query"] and "s3cr3t" not in line["query"]
    raw = "\n".join(access_log.lines)
    assert "s3cr3t" not in raw

    await client.get("/healthz")
    await client.get("/no/route")
    assert len(access_log.lines) == len(lines) + 2


async def test_librdkafka_statistics_become_gauges(make_client: Callable[..., object], topic: str) -> None:
    async with make_client(kafka_stats_interval_ms=100) as c:  # type: ignore[attr-defined]
        text = ""
        for _ in range(100):
            await asyncio.sleep(0.1)
            text = (await c.get("/metrics")).text
            if _sample(text, "gateway_kafka_broker_up") == 1:
                break
        assert _sample(text, "gateway_kafka_broker_up") == 1, text
        assert _sample(text, "gateway_kafka_producer_queue_messages") is not None
        assert (_sample(text, "gateway_kafka_broker_rtt_avg_seconds") or 0) >= 0


async def test_statistics_can_be_turned_off(make_client: Callable[..., object]) -> None:
    async with make_client(kafka_stats_interval_ms=0) as c:  # type: ignore[attr-defined]
        await asyncio.sleep(0.3)
        text = (await c.get("/metrics")).text
        assert _sample(text, "gateway_kafka_broker_up") is None


def test_live_gateway_writes_json_access_lines_to_stderr(bootstrap: str, capfd: pytest.CaptureFixture[str]) -> None:
    with GatewayProcess(bootstrap) as gw:
        r = httpx.get(gw.url + "/readyz?access_token=live-s3cr3t", headers={"x-request-id": "live-1"}, timeout=10)
        assert r.headers["x-request-id"] == "live-1"
    err = capfd.readouterr().err
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    (line,) = [x for x in lines if x.get("request_id") == "live-1"]
    assert line["route"] == "/readyz" and line["status"] == r.status_code
    assert "live-s3cr3t" not in err


def test_lag_of_a_group_the_gateway_consumes_for_becomes_a_gauge(bootstrap: str, admin: object) -> None:
    import time
    import uuid

    from confluent_kafka import Producer
    from httpx_sse import connect_sse

    from tests.conftest import create_topic
    from tests.helpers import record_events

    topic = create_topic(admin, 1)  # type: ignore[arg-type]
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        producer.produce(topic, b"%d" % i)
    assert producer.flush(10) == 0
    group = f"lag-{uuid.uuid4().hex[:8]}"
    with (
        GatewayProcess(bootstrap, env={"GATEWAY_GROUP_LAG_INTERVAL_S": "0.3"}) as gw,
        httpx.Client(base_url=gw.url, timeout=10) as http,
        connect_sse(http, "GET", f"/topics/{topic}/events", params={"group": group, "from": "earliest"}) as source,
    ):
        events = []
        for event in record_events(source):
            events.append(event)
            if len(events) == 10:
                break
        # The gateway measures the lag of the group it consumes for by itself; it falls to 0 once the
        # offsets of the events written are committed.
        value = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            value = _sample(http.get("/metrics").text, "gateway_consumer_group_lag", group=group)
            if value == 0:
                break
            time.sleep(0.3)
        assert value == 0, value
