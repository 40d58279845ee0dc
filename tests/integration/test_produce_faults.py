"""Produce while Kafka is away: 503 + Retry-After (never a 500), delivery-error metrics, recovery afterwards.

These tests stop a broker, so they run on a KafkaCluster of their own, never on the session broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from gateway.app import create_app
from localkafka import KafkaCluster
from tests.conftest import create_topic, settings_for
from tests.helpers import read_all

pytestmark = pytest.mark.anyio

DELIVERY_TIMEOUT_MS = 2000


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[KafkaCluster]:
    with KafkaCluster(nodes=1) as cluster:
        yield cluster


@contextlib.asynccontextmanager
async def gateway_on(bootstrap: str, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(bootstrap, **overrides))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=60) as client:
            yield client


def metric(text: str, name: str, label: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{{label}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_broker_down_gives_503_with_retry_after_then_produce_recovers(own_cluster: KafkaCluster) -> None:
    bootstrap = own_cluster.bootstrap_servers
    topic = create_topic(AdminClient({"bootstrap.servers": bootstrap}), 1)
    produce = {"delivery_timeout_ms": DELIVERY_TIMEOUT_MS, "retry_after_s": 3}
    async with gateway_on(bootstrap, produce=produce, metadata_refresh_s=0.5) as client:
        url = f"/topics/{topic}/records"
        r = await client.post(url, json={"key": "k", "value": "before"})
        assert r.status_code == 200, r.text

        own_cluster.stop_node(0)
        try:
            started = time.monotonic()
            r = await client.post(url, json={"key": "k", "value": "lost"})
            assert r.status_code == 503, r.text
            assert r.json()["error_code"] == 50301 and "delivery timeout" in r.json()["message"]
            assert r.headers["retry-after"] == "3"
            # Bounded by the configured delivery timeout, not a client-side hang.
            assert time.monotonic() - started < 30

            r = await client.post(url, json={"records": [{"value": i} for i in range(3)]})
            assert r.status_code == 503, r.text
            assert [x["error_code"] for x in r.json()["results"]] == [50301] * 3
            assert r.headers["retry-after"] == "3"

            r = await client.post(url, json={"value": "async-lost"}, params={"async": "true"})
            assert r.status_code == 202
            deadline = time.monotonic() + 30
            while True:
                text = (await client.get("/metrics")).text
                timed_out = metric(text, "gateway_delivery_errors_total", 'error="msg_timed_out"')
                if timed_out >= 5 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert timed_out == 5  # 1 + 3 + the async one
        finally:
            own_cluster.start_node(0)

        # Once the broker is back the same gateway produces again, without a restart.
        deadline = time.monotonic() + 90
        while True:
            r = await client.post(url, json={"key": "k", "value": "after"})
            assert r.status_code in (200, 503), r.text
            if r.status_code == 200 or time.monotonic() > deadline:
                break
        assert r.status_code == 200, r.text
        r = await client.post(url, json={"records": [{"value": "again"}]})
        assert r.status_code == 200, r.text

    values = [m.value() for m in read_all(bootstrap, topic, 3)]
    assert values[0] == b'"before"' and values[-2:] == [b'"after"', b'"again"']
    assert b'"lost"' not in values and b'"async-lost"' not in values
