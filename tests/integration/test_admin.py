"""Admin API (API.md §4) against a real broker: topics, consumer groups and lag, the cluster."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.helpers import read_all

pytestmark = pytest.mark.anyio

V2 = "application/vnd.kafka.v2+json"


def _name() -> str:
    return f"adm-{uuid.uuid4().hex[:10]}"


def _error(r: httpx.Response, status: int, code: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error_code", "message"} and body["error_code"] == code, body
    return str(body["message"])


async def test_create_describe_produce_delete_topic(
    client: httpx.AsyncClient, admin: AdminClient, bootstrap: str
) -> None:
    name = _name()
    r = await client.post(
        "/topics",
        json={"name": name, "partitions": 3, "replication_factor": 1, "configs": {"retention.ms": 86400000}},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["name"] == name and len(created["partitions"]) == 3
    assert r.headers["location"] == f"/topics/{name}"

    # Kafka itself has it, with the config.
    md = admin.list_topics(name, timeout=5).topics[name]
    assert md.error is None and len(md.partitions) == 3

    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        producer.produce(name, b"%d" % i, partition=1)
    assert producer.flush(10) == 0

    r = await client.get(f"/topics/{name}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    topic = r.json()
    assert topic["name"] == name and topic["internal"] is False
    assert topic["configs"]["retention.ms"] == "86400000"
    assert topic["configs"]["cleanup.policy"] == "delete"
    assert [p["partition"] for p in topic["partitions"]] == [0, 1, 2]
    for p in topic["partitions"]:
        assert p["leader"] >= 0
        assert p["replicas"] == [{"broker": p["leader"], "leader": True, "in_sync": True}]
        assert p["isr"] == [p["leader"]]
        assert p["earliest_offset"] == 0
        assert p["latest_offset"] == (5 if p["partition"] == 1 else 0)

    r = await client.get("/topics")
    assert r.status_code == 200 and name in r.json() and r.json() == sorted(r.json())

    r = await client.delete(f"/topics/{name}")
    assert r.status_code == 204 and r.content == b""
    assert name not in admin.list_topics(timeout=5).topics
    # Gone for the gateway at once, too.
    _error(await client.get(f"/topics/{name}"), 404, 40401)
    _error(await client.get(f"/topics/{name}/offsets"), 404, 40401)
    assert name not in (await client.get("/topics")).json()


async def test_confluent_v2_media_type_follows_accept(client: httpx.AsyncClient, topic: str) -> None:
    r = await client.get("/topics", headers={"accept": V2})
    assert r.status_code == 200 and r.headers["content-type"] == V2
    assert isinstance(r.json(), list) and topic in r.json()

    r = await client.get(f"/topics/{topic}", headers={"accept": f"{V2}, application/json"})
    assert r.status_code == 200 and r.headers["content-type"] == V2
    body = r.json()
    # Confluent v2's keys are all there.
    assert {"name", "configs", "partitions"} <= set(body)
    assert {"partition", "leader", "replicas"} <= set(body["partitions"][0])
    assert set(body["partitions"][0]["replicas"][0]) == {"broker", "leader", "in_sync"}

    r = await client.get(f"/topics/{topic}", headers={"accept": "application/json"})
    assert r.headers["content-type"] == "application/json"


async def test_create_topic_errors(client: httpx.AsyncClient, topic: str, admin: AdminClient) -> None:
    _error(await client.post("/topics", json={"name": topic, "partitions": 1}), 409, 40901)

    name = _name()
    message = _error(
        await client.post("/topics", json={"name": name, "partitions": 1, "replication_factor": 3}), 422, 42201
    )
    assert "replicat" in message.lower()  # the broker's own reason
    message = _error(
        await client.post("/topics", json={"name": name, "partitions": 1, "configs": {"retention.ms": "soon"}}),
        422,
        42201,
    )
    assert "retention.ms" in message
    message = _error(await client.post("/topics", json={"name": name, "configs": {"no.such.config": "1"}}), 422, 42201)
    assert "no.such.config" in message
    _error(await client.post("/topics", json={"name": "bad name!", "partitions": 1}), 422, 42201)
    _error(await client.post("/topics", json={"partitions": 1}), 422, 42201)
    _error(await client.post("/topics", json={"name": name, "partitions": 0}), 422, 42201)
    _error(
        await client.post("/topics", content=b"{nope", headers={"content-type": "application/json"}),
        400,
        40001,
    )
    # None of the refused requests created anything.
    assert name not in admin.list_topics(timeout=5).topics


async def test_create_with_broker_defaults(client: httpx.AsyncClient, admin: AdminClient) -> None:
    name = _name()
    r = await client.post("/topics", json={"name": name})
    assert r.status_code == 201, r.text
    md = admin.list_topics(name, timeout=5).topics[name]
    assert md.error is None and len(md.partitions) >= 1
    assert (await client.delete(f"/topics/{name}")).status_code == 204


async def test_unknown_topic_is_404(client: httpx.AsyncClient) -> None:
    _error(await client.get("/topics/no-such-topic-adm"), 404, 40401)
    _error(await client.delete("/topics/no-such-topic-adm"), 404, 40401)


async def test_consumer_group_lag_members_and_metrics(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        producer.produce(topic, b"v%d" % i, partition=0)
    for i in range(3):
        producer.produce(topic, b"w%d" % i, partition=1)
    producer.flush(10)

    group = f"grp-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "lag-test"})
    try:
        consumer.subscribe([topic])
        # Join the group; then commit 4 of 10 on partition 0 and nothing on partition 1.
        for _ in range(100):
            consumer.poll(0.2)
            if consumer.assignment():
                break
        consumer.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)

        r = await client.get(f"/consumer-groups/{group}")
        assert r.status_code == 200, r.text
        g = r.json()
        assert g["group_id"] == group and g["state"] == "Stable" and g["type"] == "classic"
        (member,) = g["members"]
        assert member["client_id"] == "lag-test"
        assert sorted((a["topic"], a["partition"]) for a in member["assignment"]) == [(topic, 0), (topic, 1)]
        offsets = {(o["topic"], o["partition"]): o for o in g["offsets"]}
        assert offsets[(topic, 0)] == {
            "topic": topic,
            "partition": 0,
            "committed_offset": 4,
            "latest_offset": 10,
            "lag": 6,
        }
        assert offsets[(topic, 1)]["committed_offset"] is None and offsets[(topic, 1)]["lag"] is None
        assert g["total_lag"] == 6
        assert g["coordinator"]["id"] >= 0

        r = await client.get("/consumer-groups")
        assert r.status_code == 200
        listed = {x["group_id"]: x for x in r.json()}
        assert listed[group]["state"] == "Stable"

        metrics = (await client.get("/metrics")).text
        assert f'gateway_consumer_group_lag{{group="{group}"}} 6.0' in metrics
    finally:
        consumer.close()

    # Left the group: Empty, the committed offset and lag remain.
    r = await client.get(f"/consumer-groups/{group}")
    assert r.status_code == 200
    g = r.json()
    assert g["state"] == "Empty" and g["members"] == [] and g["total_lag"] == 6


async def test_unknown_group_is_404(client: httpx.AsyncClient) -> None:
    _error(await client.get(f"/consumer-groups/none-{uuid.uuid4().hex}"), 404, 40404)


async def test_cluster(client: httpx.AsyncClient, admin: AdminClient) -> None:
    r = await client.get("/cluster")
    assert r.status_code == 200
    body = r.json()
    md = admin.list_topics(timeout=5)
    assert body["cluster_id"] == md.cluster_id
    assert [b["id"] for b in body["brokers"]] == sorted(md.brokers)
    assert body["controller"]["id"] in md.brokers
    assert all(b["host"] and b["port"] > 0 for b in body["brokers"])


async def test_admin_answers_503_when_kafka_is_unreachable(make_client: Callable[..., object]) -> None:
    from localkafka import free_port

    dead = f"127.0.0.1:{free_port()}"
    async with make_client(kafka={"bootstrap.servers": dead}, request_timeout_s=1.0) as c:  # type: ignore[attr-defined]
        for r in (await c.get("/cluster"), await c.get("/topics/x"), await c.post("/topics", json={"name": "x"})):
            _error(r, 503, 50301)
            assert r.headers["retry-after"]


async def test_produce_sees_a_created_topic_at_once_and_a_deleted_one_gone(
    client: httpx.AsyncClient, bootstrap: str
) -> None:
    name = _name()
    assert (await client.post("/topics", json={"name": name, "partitions": 2})).status_code == 201
    r = await client.post(f"/topics/{name}/records", json={"key": "k", "value": {"n": 1}, "partition": 1})
    assert r.status_code == 200, r.text
    (msg,) = read_all(bootstrap, name, 1, partitions=2)
    assert (msg.partition(), msg.value()) == (1, b'{"n":1}')
    assert (await client.delete(f"/topics/{name}")).status_code == 204
    _error(await client.post(f"/topics/{name}/records", json={"value": 1}), 404, 40401)
