"""Confluent REST Proxy v3 against a real broker: clusters, topics, consumer groups and lags, produce.

Shapes are checked against Confluent's v3 OpenAPI (``kind``, ``metadata.self``, ``related`` links,
``data`` lists; a produce report has ``error_code`` 200). The streamed produce runs against a live
uvicorn process, since an in-process transport buffers the request and the response.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tests.helpers import GatewayProcess, read_all

pytestmark = pytest.mark.anyio


async def cluster_id(client: httpx.AsyncClient) -> str:
    r = await client.get("/v3/clusters")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "KafkaClusterList"
    (cluster,) = body["data"]
    assert cluster["kind"] == "KafkaCluster"
    return str(cluster["cluster_id"])


async def test_clusters(client: httpx.AsyncClient) -> None:
    cid = await cluster_id(client)
    r = await client.get(f"/v3/clusters/{cid}")
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["cluster_id"] == cid
    assert c["metadata"]["self"] == f"http://gateway/v3/clusters/{cid}"
    assert c["topics"] == {"related": f"http://gateway/v3/clusters/{cid}/topics"}
    assert c["controller"]["related"].startswith(f"http://gateway/v3/clusters/{cid}/brokers/")
    r = await client.get("/v3/clusters/not-this-one")
    assert r.status_code == 404 and r.json()["error_code"] == 40400


async def test_topics_create_get_list_delete(client: httpx.AsyncClient, bootstrap: str) -> None:
    cid = await cluster_id(client)
    name = f"v3-{uuid.uuid4().hex[:10]}"
    body = {
        "topic_name": name,
        "partitions_count": 3,
        "replication_factor": 1,
        "configs": [{"name": "cleanup.policy", "value": "compact"}],
    }
    r = await client.post(f"/v3/clusters/{cid}/topics", json=body)
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["kind"], t["topic_name"], t["partitions_count"], t["replication_factor"], t["is_internal"]) == (
        "KafkaTopic",
        name,
        3,
        1,
        False,
    )
    assert t["metadata"]["self"] == f"http://gateway/v3/clusters/{cid}/topics/{name}"
    # Kafka has it, with the config.
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ResourceType.TOPIC, name)
    configs = next(iter(admin.describe_configs([res]).values())).result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"

    r = await client.post(f"/v3/clusters/{cid}/topics", json=body)
    assert r.status_code == 409 and r.json()["error_code"] == 40901

    r = await client.get(f"/v3/clusters/{cid}/topics/{name}")
    assert r.status_code == 200 and r.json()["partitions_count"] == 3

    r = await client.get(f"/v3/clusters/{cid}/topics")
    assert r.status_code == 200
    listing = r.json()
    assert listing["kind"] == "KafkaTopicList"
    assert name in {x["topic_name"] for x in listing["data"]}

    r = await client.delete(f"/v3/clusters/{cid}/topics/{name}")
    assert r.status_code == 204, r.text
    r = await client.get(f"/v3/clusters/{cid}/topics/{name}")
    assert r.status_code == 404 and r.json()["error_code"] == 40401
    r = await client.delete(f"/v3/clusters/{cid}/topics/{name}")
    assert r.status_code == 404


async def test_produce_one_record_of_each_type(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    cid = await cluster_id(client)
    record = {
        "partition_id": 1,
        "headers": [{"name": "source", "value": base64.b64encode(b"web").decode()}],
        "key": {"type": "STRING", "data": "user-1"},
        "value": {"type": "JSON", "data": {"clicked": "buy"}},
        "timestamp": "2026-01-02T03:04:05.678Z",
    }
    r = await client.post(f"/v3/clusters/{cid}/topics/{topic}/records", json=record)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report == {
        "error_code": 200,
        "cluster_id": cid,
        "topic_name": topic,
        "partition_id": 1,
        "offset": 0,
        "timestamp": "2026-01-02T03:04:05.678Z",
        "key": {"type": "STRING", "size": 6},
        "value": {"type": "JSON", "size": 17},
    }
    r = await client.post(
        f"/v3/clusters/{cid}/topics/{topic}/records",
        json={"partition_id": 1, "value": {"type": "BINARY", "data": base64.b64encode(b"\x00\xffraw").decode()}},
    )
    assert r.status_code == 200 and r.json()["offset"] == 1
    msgs = read_all(bootstrap, topic, 2, partitions=2)
    first, second = sorted(msgs, key=lambda m: m.offset())
    assert (first.key(), first.value(), first.headers()) == (b"user-1", b'{"clicked":"buy"}', [("source", b"web")])
    assert first.timestamp()[1] == 1767323045678
    assert (second.key(), second.value()) == (None, b"\x00\xffraw")

    cases = [
        ({"value": {"type": "BINARY", "data": "not base64!"}}, 422, 42201),
        ({"value": {"type": "AVRO", "data": 1}}, 422, 42201),
        ({"value": {"schema_id": 3, "data": 1}}, 422, 42201),
        ({"partition_id": 9, "value": {"data": 1}}, 404, 40402),
    ]
    for body, status, code in cases:
        r = await client.post(f"/v3/clusters/{cid}/topics/{topic}/records", json=body)
        assert r.status_code == status and r.json()["error_code"] == code, (body, r.text)
    r = await client.post(f"/v3/clusters/{cid}/topics/missing-v3/records", json={"value": {"data": 1}})
    assert r.status_code == 404 and r.json()["error_code"] == 40401


def _records(n: int, bad: set[int]) -> Iterator[bytes]:
    """Concatenated JSON records in odd chunks (a record may straddle two chunks)."""
    buf = b""
    for i in range(n):
        if i in bad:
            rec: dict[str, Any] = {"value": {"type": "BINARY", "data": "%%%"}}
        else:
            rec = {"key": {"type": "STRING", "data": f"k{i}"}, "value": {"type": "JSON", "data": {"i": i}}}
        buf += json.dumps(rec).encode()
        if len(buf) > 700:
            yield buf[:500]
            buf = buf[500:]
    yield buf


def _reports(text: str) -> list[dict[str, Any]]:
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)


def test_streamed_produce_of_1000_records_gives_1000_reports_in_order(
    gateway: GatewayProcess, bootstrap: str, admin: Any
) -> None:
    from tests.conftest import create_topic

    topic = create_topic(admin, 3)
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        cid = client.get("/v3/clusters").json()["data"][0]["cluster_id"]
        bad = {10, 500}
        with client.stream(
            "POST",
            f"/v3/clusters/{cid}/topics/{topic}/records",
            content=_records(1000, bad),
            headers={"content-type": "application/json", "transfer-encoding": "chunked"},
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("application/json")
            reports = _reports(r.read().decode())
    assert len(reports) == 1000
    for i, rep in enumerate(reports):
        if i in bad:
            assert rep["error_code"] == 42201 and f"record {i + 1}" in rep["message"], rep
        else:
            assert rep["error_code"] == 200 and rep["topic_name"] == topic, rep
    good = [r for r in reports if r["error_code"] == 200]
    # Kafka holds exactly the 998 good records, each where its report says.
    msgs = read_all(bootstrap, topic, 998, partitions=3)
    assert len(msgs) == 998
    where = {(m.partition(), m.offset()): json.loads(m.value())["i"] for m in msgs}
    expected = [i for i in range(1000) if i not in bad]
    assert [where[(r["partition_id"], r["offset"])] for r in good] == expected


def test_a_malformed_stream_reports_then_ends(gateway: GatewayProcess, admin: Any) -> None:
    from tests.conftest import create_topic

    topic = create_topic(admin, 1)
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        cid = client.get("/v3/clusters").json()["data"][0]["cluster_id"]

        def body() -> Iterator[bytes]:
            yield b'{"value": {"data": 1}} {"value": {"data": 2}}'
            yield b" {oops"

        with client.stream(
            "POST",
            f"/v3/clusters/{cid}/topics/{topic}/records",
            content=body(),
            headers={"content-type": "application/json"},
        ) as r:
            reports = _reports(r.read().decode())
    assert [x["error_code"] for x in reports] == [200, 200, 40001]


async def test_consumer_groups_lags_and_lag_summary(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(10):
        producer.produce(topic, b"x", partition=i % 2)
    producer.produce(topic, b"x", partition=1)
    assert producer.flush(20) == 0
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": "false"})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 1)], asynchronous=False)
        cid = await cluster_id(client)
        r = await client.get(f"/v3/clusters/{cid}/consumer-groups")
        assert r.status_code == 200, r.text
        assert r.json()["kind"] == "KafkaConsumerGroupList"
        assert group in {g["consumer_group_id"] for g in r.json()["data"]}

        r = await client.get(f"/v3/clusters/{cid}/consumer-groups/{group}")
        assert r.status_code == 200, r.text
        g = r.json()
        assert (g["kind"], g["consumer_group_id"], g["state"]) == ("KafkaConsumerGroup", group, "EMPTY")
        assert g["lag_summary"] == {"related": f"http://gateway/v3/clusters/{cid}/consumer-groups/{group}/lag-summary"}

        r = await client.get(f"/v3/clusters/{cid}/consumer-groups/{group}/lags")
        assert r.status_code == 200, r.text
        lags = sorted((x["partition_id"], x["current_offset"], x["log_end_offset"], x["lag"]) for x in r.json()["data"])
        assert lags == [(0, 2, 5, 3), (1, 1, 6, 5)]

        r = await client.get(f"/v3/clusters/{cid}/consumer-groups/{group}/lag-summary")
        assert r.status_code == 200, r.text
        s = r.json()
        assert (s["kind"], s["max_lag"], s["total_lag"], s["max_lag_topic_name"], s["max_lag_partition_id"]) == (
            "KafkaConsumerGroupLagSummary",
            5,
            8,
            topic,
            1,
        )
        r = await client.get(f"/v3/clusters/{cid}/consumer-groups/no-such-group-v3/lag-summary")
        assert r.status_code == 404 and r.json()["error_code"] == 40404
    finally:
        consumer.close()


def test_concatenated_json_splits_across_chunks_and_utf8_boundaries() -> None:
    from gateway.api.confluent_v3 import ConcatenatedJson

    text = '{"value": {"data": "é€😀"}}\n  {"value": {"data": [1, {"a": "}"}]}}{"value": {"data": null}}'
    data = text.encode()
    splitter = ConcatenatedJson(max_value=10_000)
    values: list[str] = []
    for i in range(len(data)):  # one byte at a time: every boundary, inside strings and characters
        got, error = splitter.feed(data[i : i + 1])
        assert error is None
        values.extend(got)
    got, error = splitter.feed(b"", final=True)
    assert error is None
    values.extend(got)
    assert [json.loads(v) for v in values] == [
        {"value": {"data": "é€😀"}},
        {"value": {"data": [1, {"a": "}"}]}},
        {"value": {"data": None}},
    ]
    # Bytes that are not UTF-8 end the stream with a 400, never a 500.
    values, error = ConcatenatedJson(max_value=10_000).feed(b'{"value": {"data": "caf\xe9"}}', final=True)
    assert values == [] and error is not None and "not valid UTF-8" in error.message
    # An unfinished value at the end of the stream is reported, not dropped silently.
    values, error = ConcatenatedJson(max_value=10_000).feed(b'{"value": 1} {"value": ', final=True)
    assert len(values) == 1 and error is not None and error.message.startswith("Malformed JSON")
