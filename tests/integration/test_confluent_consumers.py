"""Confluent REST Proxy v2 consumer instances against a real broker.

Each test drives the instance the way a Confluent client does (create, subscribe or assign, fetch,
commit, seek, delete, using the returned ``base_uri``) and checks bodies and codes against the
Confluent documentation, and committed offsets against what Kafka itself reports.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

pytestmark = pytest.mark.anyio

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
JSON = "application/vnd.kafka.json.v2+json"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def fill(
    bootstrap: str, topic: str, values: list[bytes], partition: int | None = None, key: bytes | None = None
) -> None:
    """Write records with the native client, so reading is tested apart from producing."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for v in values:
        if partition is None:
            producer.produce(topic, v, key)
        else:
            producer.produce(topic, v, key, partition=partition)
    assert producer.flush(30) == 0


def committed_in_kafka(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": "false"})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in found if tp.offset >= 0}
    finally:
        consumer.close()


def path_of(base_uri: str) -> str:
    return httpx.URL(base_uri).path


async def fetch_until(
    client: httpx.AsyncClient, base: str, n: int, accept: str = BINARY, deadline_s: float = 30.0, **params: Any
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + deadline_s
    while len(out) < n and time.monotonic() < deadline:
        r = await client.get(f"{base}/records", params=params, headers={"accept": accept})
        assert r.status_code == 200, r.text
        out.extend(r.json())
    return out


async def test_consumer_instance_round_trip(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(1)
    fill(bootstrap, topic, [f"v{i}".encode() for i in range(10)], key=b"k")
    group = f"g-{uuid.uuid4().hex[:8]}"

    # create (as in the docs' example)
    r = await client.post(
        f"/consumers/{group}",
        json={
            "name": "my_consumer",
            "format": "binary",
            "auto.offset.reset": "earliest",
            "auto.commit.enable": "false",
        },
        headers={"content-type": V2, "accept": V2},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == V2
    created = r.json()
    assert created["instance_id"] == "my_consumer"
    assert created["base_uri"] == f"http://gateway/consumers/{group}/instances/my_consumer"
    base = path_of(created["base_uri"])

    # the same name again: 409 40902
    r = await client.post(f"/consumers/{group}", json={"name": "my_consumer"}, headers={"content-type": V2})
    assert r.status_code == 409 and r.json()["error_code"] == 40902

    # subscribe; the subscription reads back
    r = await client.post(f"{base}/subscription", json={"topics": [topic]}, headers={"content-type": V2})
    assert r.status_code == 204, r.text
    r = await client.get(f"{base}/subscription", headers={"accept": V2})
    assert r.json() == {"topics": [topic]}

    # fetch all ten, in order, binary embedded
    got = await fetch_until(client, base, 10, timeout=1000)
    assert [base64.b64decode(x["value"]) for x in got] == [f"v{i}".encode() for i in range(10)]
    assert {(x["topic"], x["partition"], base64.b64decode(x["key"])) for x in got} == {(topic, 0, b"k")}
    assert [x["offset"] for x in got] == list(range(10))

    # assignments after the group gave us the partition
    r = await client.get(f"{base}/assignments", headers={"accept": V2})
    assert r.json() == {"partitions": [{"topic": topic, "partition": 0}]}

    # commit offset 4 (Confluent: the last processed record), then read it back: 5 is next
    r = await client.post(
        f"{base}/offsets",
        json={"offsets": [{"topic": topic, "partition": 0, "offset": 4}]},
        headers={"content-type": V2},
    )
    assert r.status_code == 200, r.text
    r = await client.request(
        "GET", f"{base}/offsets", json={"partitions": [{"topic": topic, "partition": 0}]}, headers={"content-type": V2}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"offsets": [{"topic": topic, "partition": 0, "offset": 5, "metadata": ""}]}
    assert committed_in_kafka(bootstrap, group, topic, 1) == {0: 5}

    # commit without a body: everything returned so far
    r = await client.post(f"{base}/offsets", headers={"content-type": V2})
    assert r.status_code == 200, r.text
    assert committed_in_kafka(bootstrap, group, topic, 1) == {0: 10}

    # seek back to 3 and read again from there; then to the beginning and the end
    r = await client.post(
        f"{base}/positions",
        json={"offsets": [{"topic": topic, "partition": 0, "offset": 3}]},
        headers={"content-type": V2},
    )
    assert r.status_code == 204, r.text
    again = await fetch_until(client, base, 7, timeout=1000)
    assert [x["offset"] for x in again] == list(range(3, 10))
    r = await client.post(
        f"{base}/positions/beginning",
        json={"partitions": [{"topic": topic, "partition": 0}]},
        headers={"content-type": V2},
    )
    assert r.status_code == 204
    assert [x["offset"] for x in await fetch_until(client, base, 10, timeout=1000)] == list(range(10))
    r = await client.post(
        f"{base}/positions/end", json={"partitions": [{"topic": topic, "partition": 0}]}, headers={"content-type": V2}
    )
    assert r.status_code == 204
    fill(bootstrap, topic, [b"after-end"])
    tail = await fetch_until(client, base, 1, timeout=1000)
    assert [(x["offset"], base64.b64decode(x["value"])) for x in tail] == [(10, b"after-end")]

    # a json Accept on a binary instance: 406 40601
    r = await client.get(f"{base}/records", headers={"accept": JSON})
    assert r.status_code == 406 and r.json()["error_code"] == 40601

    # unsubscribe, delete, then every call is 40403
    r = await client.delete(f"{base}/subscription")
    assert r.status_code == 204
    r = await client.get(f"{base}/subscription", headers={"accept": V2})
    assert r.json() == {"topics": []}
    r = await client.delete(base, headers={"content-type": V2})
    assert r.status_code == 204
    for method, suffix in [("GET", "/records"), ("POST", "/offsets"), ("GET", "/subscription"), ("DELETE", "")]:
        r = await client.request(method, f"{base}{suffix}", headers={"accept": V2})
        assert r.status_code == 404, (method, suffix, r.text)
        assert r.json() == {"error_code": 40403, "message": "Consumer instance not found."}


async def test_manual_assignment_json_format_and_seek_before_first_fetch(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    fill(bootstrap, topic, [b'{"n":%d}' % i for i in range(5)], partition=1)
    fill(bootstrap, topic, [b"not json"], partition=0)
    group = f"g-{uuid.uuid4().hex[:8]}"
    r = await client.post(f"/consumers/{group}", json={"format": "json", "auto.offset.reset": "earliest"})
    assert r.status_code == 200, r.text
    name = r.json()["instance_id"]
    assert name.startswith("rest-consumer-")
    base = path_of(r.json()["base_uri"])

    r = await client.post(f"{base}/assignments", json={"partitions": [{"topic": topic, "partition": 1}]})
    assert r.status_code == 204, r.text
    r = await client.get(f"{base}/assignments")
    assert r.json() == {"partitions": [{"topic": topic, "partition": 1}]}
    # subscribing an instance with manual assignments: 409 40903
    r = await client.post(f"{base}/subscription", json={"topics": [topic]})
    assert r.status_code == 409 and r.json()["error_code"] == 40903
    # seeking a partition that is not assigned: 409 40903
    r = await client.post(f"{base}/positions", json={"offsets": [{"topic": topic, "partition": 0, "offset": 0}]})
    assert r.status_code == 409 and r.json()["error_code"] == 40903

    # seek before the first fetch
    r = await client.post(f"{base}/positions", json={"offsets": [{"topic": topic, "partition": 1, "offset": 2}]})
    assert r.status_code == 204, r.text
    got = await fetch_until(client, base, 3, accept=JSON, timeout=1000)
    assert [(x["partition"], x["offset"], x["value"], x["key"]) for x in got] == [
        (1, 2, {"n": 2}, None),
        (1, 3, {"n": 3}, None),
        (1, 4, {"n": 4}, None),
    ]

    # adding partition 0 keeps partition 1 where the client is (nothing repeated)
    r = await client.post(
        f"{base}/assignments", json={"partitions": [{"topic": topic, "partition": 1}, {"topic": topic, "partition": 0}]}
    )
    assert r.status_code == 204
    fill(bootstrap, topic, [b'{"n":5}'], partition=1)
    got = await fetch_until(client, base, 2, accept=JSON, timeout=1000)
    # a value that is not JSON comes as a JSON string of its text rather than failing the fetch
    assert sorted((x["partition"], x["offset"], x["value"]) for x in got) == [(0, 0, "not json"), (1, 5, {"n": 5})]

    # committed offsets without a body: the assigned partitions (none committed yet)
    r = await client.request("GET", f"{base}/offsets")
    assert r.status_code == 200 and r.json() == {"offsets": []}
    r = await client.delete(base)
    assert r.status_code == 204


async def test_create_errors(client: httpx.AsyncClient) -> None:
    cases = [
        ({"format": "avro"}, 422, 42204),
        ({"format": "xml"}, 422, 42204),
        ({"auto.offset.reset": "sometimes"}, 422, 42204),
        ({"auto.commit.enable": "maybe"}, 422, 42204),
        ({"fetch.min.bytes": "lots"}, 422, 42204),
        ({"colour": "red"}, 422, 42204),
    ]
    for body, status, code in cases:
        r = await client.post("/consumers/g-errors", json=body, headers={"content-type": V2})
        assert r.status_code == status and r.json()["error_code"] == code, (body, r.text)
    r = await client.post("/consumers/g-errors", content=b"{oops", headers={"content-type": V2})
    assert r.status_code == 400 and r.json()["error_code"] == 40001
    r = await client.post("/consumers/g-errors", json={}, headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["error_code"] == 41501


async def test_ten_thousand_records_with_a_small_max_bytes_none_lost_or_repeated(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(3)
    # 10,000 values of 8 to 120 bytes over three partitions; one record (5 kB) larger than max_bytes.
    values = [(b"%06d-" % i) + b"x" * (i % 115) for i in range(10_000)]
    values[4321] = b"004321-" + b"big" * 1700
    # Spread explicitly: with no key, the sticky partitioner may put every record on one partition.
    for p in range(3):
        fill(bootstrap, topic, values[p::3], partition=p)
    group = f"g-{uuid.uuid4().hex[:8]}"
    r = await client.post(f"/consumers/{group}", json={"format": "binary", "auto.offset.reset": "earliest"})
    base = path_of(r.json()["base_uri"])
    r = await client.post(f"{base}/subscription", json={"topics": [topic]})
    assert r.status_code == 204

    max_bytes = 1000
    seen: list[tuple[int, int]] = []
    payloads: list[bytes] = []
    fetches = 0
    deadline = time.monotonic() + 120
    while len(seen) < 10_000 and time.monotonic() < deadline:
        r = await client.get(
            f"{base}/records", params={"max_bytes": max_bytes, "timeout": 1000}, headers={"accept": BINARY}
        )
        assert r.status_code == 200, r.text
        batch = r.json()
        fetches += 1
        size = sum(len(base64.b64decode(x["value"])) for x in batch)
        # Never over max_bytes, except a single record that is larger on its own.
        assert size <= max_bytes or len(batch) == 1, (size, len(batch))
        seen.extend((x["partition"], x["offset"]) for x in batch)
        payloads.extend(base64.b64decode(x["value"]) for x in batch)
    assert len(seen) == 10_000, f"{len(seen)} records after {fetches} fetches"
    assert len(set(seen)) == 10_000, "a record was returned twice"
    assert sorted(payloads) == sorted(values), "a record was lost or changed"
    # Per partition, offsets come in order with no gap.
    for p in range(3):
        offsets = [o for q, o in seen if q == p]
        assert offsets == list(range(len(offsets)))
    # One more fetch finds nothing buffered or left over.
    r = await client.get(f"{base}/records", params={"max_bytes": max_bytes, "timeout": 300}, headers={"accept": BINARY})
    assert r.json() == []
    # Committing "everything consumed" commits exactly the end of each partition.
    r = await client.post(f"{base}/offsets")
    assert r.status_code == 200
    ends = {p: sum(1 for q, _ in seen if q == p) for p in range(3)}
    assert committed_in_kafka(bootstrap, group, topic, 3) == ends
    await client.delete(base)


async def test_idle_instance_expires_and_is_closed(
    make_client: Callable[..., Any], bootstrap: str, new_topic: Callable[..., str], admin: Any
) -> None:
    topic = new_topic(1)
    fill(bootstrap, topic, [b"one"])
    async with make_client(confluent={"instance_timeout_s": 1.0}) as client:
        group = f"g-{uuid.uuid4().hex[:8]}"
        r = await client.post(f"/consumers/{group}", json={"name": "idle", "auto.offset.reset": "earliest"})
        base = path_of(r.json()["base_uri"])
        r = await client.post(f"{base}/subscription", json={"topics": [topic]})
        assert r.status_code == 204
        assert len(await fetch_until(client, base, 1, timeout=1000)) == 1
        # Kept alive while used ...
        for _ in range(3):
            await asyncio.sleep(0.5)
            r = await client.get(f"{base}/subscription")
            assert r.status_code == 200
        # ... and gone once idle longer than the timeout.
        await asyncio.sleep(2.5)
        r = await client.get(f"{base}/records", headers={"accept": BINARY})
        assert r.status_code == 404 and r.json()["error_code"] == 40403
        # Closed means it left the group: Kafka shows no member for it.
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        assert desc.members == []
        # The name is free again.
        r = await client.post(f"/consumers/{group}", json={"name": "idle"})
        assert r.status_code == 200


async def test_base_uri_uses_the_advertised_url(make_client: Callable[..., Any]) -> None:
    async with make_client(advertised_url="https://gw-7.example.com:8443/") as client:
        r = await client.post("/consumers/grp%20one", json={"name": "c/1".replace("/", "-")})
        assert r.status_code == 200, r.text
        assert r.json()["base_uri"] == "https://gw-7.example.com:8443/consumers/grp%20one/instances/c-1"


async def test_pattern_subscription_and_auto_commit_of_returned_records_only(
    client: httpx.AsyncClient, bootstrap: str, admin: Any
) -> None:
    from tests.conftest import create_topic

    prefix = f"pat{uuid.uuid4().hex[:8]}"
    topics = [create_topic(admin, 1, name=f"{prefix}.{i}") for i in range(2)]
    create_topic(admin, 1, name=f"other{prefix}")  # does not match the anchored pattern
    for t in topics:
        fill(bootstrap, t, [b"0123456789"] * 5)
    group = f"g-{uuid.uuid4().hex[:8]}"
    r = await client.post(
        f"/consumers/{group}", json={"format": "binary", "auto.offset.reset": "earliest", "auto.commit.enable": "true"}
    )
    base = path_of(r.json()["base_uri"])
    r = await client.post(f"{base}/subscription", json={"topic_pattern": f"{prefix}\\..*"})
    assert r.status_code == 204, r.text
    # topics and topic_pattern together: 409 40903 (mutually exclusive)
    r = await client.post(f"{base}/subscription", json={"topics": topics, "topic_pattern": "x.*"})
    assert r.status_code == 409 and r.json()["error_code"] == 40903

    # Fetch until both topics answered, 2 records (20 bytes) per response at most.
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len({x["topic"] for x in got}) < 2 and time.monotonic() < deadline:
        r = await client.get(f"{base}/records", params={"max_bytes": 25, "timeout": 500}, headers={"accept": BINARY})
        assert r.status_code == 200, r.text
        assert len(r.json()) <= 2
        got.extend(r.json())
    assert {x["topic"] for x in got} == set(topics)
    r = await client.get(f"{base}/subscription")
    assert r.json() == {"topics": sorted(topics)}
    returned = {t: max(x["offset"] for x in got if x["topic"] == t) + 1 for t in topics}
    assert sum(returned.values()) < 10, "the test needs records still buffered"

    # Deleting closes the consumer, which auto-commits what was stored: only records returned.
    r = await client.delete(base)
    assert r.status_code == 204
    for t in topics:
        assert committed_in_kafka(bootstrap, group, t, 1) == {0: returned[t]}


async def test_two_instances_of_a_group_split_the_partitions_and_lose_nothing(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(4)
    values = [b"%05d" % i for i in range(2000)]
    fill(bootstrap, topic, values)
    group = f"g-{uuid.uuid4().hex[:8]}"
    bases = []
    for name in ("a", "b"):
        r = await client.post(f"/consumers/{group}", json={"name": name, "auto.offset.reset": "earliest"})
        bases.append(path_of(r.json()["base_uri"]))
        r = await client.post(f"{bases[-1]}/subscription", json={"topics": [topic]})
        assert r.status_code == 204
    seen: dict[str, list[bytes]] = {"a": [], "b": []}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for name, base in zip(("a", "b"), bases, strict=True):
            r = await client.get(
                f"{base}/records", params={"timeout": 500, "max_bytes": 300}, headers={"accept": BINARY}
            )
            assert r.status_code == 200, r.text
            seen[name].extend(base64.b64decode(x["value"]) for x in r.json())
            # Commit what this member was given, as a careful client does after each batch.
            r = await client.post(f"{base}/offsets")
            assert r.status_code == 200, r.text
        parts = [(await client.get(f"{b}/assignments")).json()["partitions"] for b in bases]
        if set(seen["a"]) | set(seen["b"]) == set(values) and all(parts):
            break
    # Nothing lost; during a rebalance a record may reach both members (at-least-once), never neither.
    assert set(seen["a"]) | set(seen["b"]) == set(values)
    parts = [(await client.get(f"{b}/assignments")).json()["partitions"] for b in bases]
    owned = [{p["partition"] for p in ps} for ps in parts]
    assert owned[0] and owned[1] and not owned[0] & owned[1]
    assert owned[0] | owned[1] == {0, 1, 2, 3}
    for base in bases:
        assert (await client.delete(base)).status_code == 204


def test_base_uri_is_absolute_and_used_as_is_on_a_live_process(gateway: Any, bootstrap: str, admin: Any) -> None:
    from tests.conftest import create_topic

    topic = create_topic(admin, 1)
    fill(bootstrap, topic, [b"live"])
    with httpx.Client(timeout=30) as http:
        r = http.post(f"{gateway.url}/consumers/live-{uuid.uuid4().hex[:6]}", json={"auto.offset.reset": "earliest"})
        assert r.status_code == 200, r.text
        base_uri = r.json()["base_uri"]
        # The client follows base_uri verbatim, as Confluent clients do.
        assert base_uri.startswith(gateway.url + "/consumers/")
        assert http.post(f"{base_uri}/subscription", json={"topics": [topic]}).status_code == 204
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = http.get(f"{base_uri}/records", headers={"accept": BINARY}).json()
        assert [base64.b64decode(x["value"]) for x in got] == [b"live"]
        assert http.delete(base_uri).status_code == 204
        assert http.get(f"{base_uri}/records").json()["error_code"] == 40403
