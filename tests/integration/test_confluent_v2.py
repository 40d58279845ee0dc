"""Confluent REST Proxy v2 against a real broker: produce, partition metadata and brokers.

Requests are written the way Confluent's documentation (docs/api.rst, API v2) writes them; bodies,
status codes and error codes are checked against it, and what was produced is read back from Kafka.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

from tests.helpers import read_all

pytestmark = pytest.mark.anyio

V2 = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
JSON = "application/vnd.kafka.json.v2+json"
ACCEPT = f"{V2}, application/vnd.kafka+json, application/json"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_binary_produce_to_topic_matches_the_docs_example(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(3)
    body = {
        "records": [
            {"key": "a2V5", "value": "Y29uZmx1ZW50"},
            {"value": "a2Fma2E=", "partition": 1},
            {"value": "bG9ncw=="},
        ]
    }
    r = await client.post(f"/topics/{topic}", json=body, headers={"content-type": BINARY, "accept": ACCEPT})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == V2
    answer = r.json()
    assert answer["key_schema_id"] is None and answer["value_schema_id"] is None
    offsets = answer["offsets"]
    assert len(offsets) == 3
    assert all(o["error_code"] is None and o["error"] is None for o in offsets)
    assert offsets[1]["partition"] == 1

    msgs = read_all(bootstrap, topic, 3, partitions=3)
    stored = {(m.partition(), m.offset()): (m.key(), m.value()) for m in msgs}
    assert stored[(offsets[0]["partition"], offsets[0]["offset"])] == (b"key", b"confluent")
    assert stored[(1, offsets[1]["offset"])] == (None, b"kafka")
    assert stored[(offsets[2]["partition"], offsets[2]["offset"])] == (None, b"logs")


async def test_json_produce_writes_keys_and_values_as_json(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    body = {
        "records": [
            {"key": "somekey", "value": {"foo": "bar"}},
            {"value": ["foo", "bar"], "partition": 1},
            {"value": 53.5},
        ]
    }
    r = await client.post(f"/topics/{topic}", json=body, headers={"content-type": JSON, "accept": V2})
    assert r.status_code == 200, r.text
    assert [o["error_code"] for o in r.json()["offsets"]] == [None, None, None]
    msgs = read_all(bootstrap, topic, 3, partitions=2)
    got = {m.value(): m.key() for m in msgs}
    # The Confluent json format serialises the key as JSON too: "somekey" is stored with its quotes.
    assert got == {b'{"foo":"bar"}': b'"somekey"', b'["foo","bar"]': None, b"53.5": None}


async def test_produce_to_one_partition(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(3)
    body = {"records": [{"key": b64(b"k"), "value": b64(b"v1")}, {"value": b64(b"v2")}]}
    r = await client.post(f"/topics/{topic}/partitions/2", json=body, headers={"content-type": BINARY})
    assert r.status_code == 200, r.text
    assert [(o["partition"], o["offset"]) for o in r.json()["offsets"]] == [(2, 0), (2, 1)]
    msgs = read_all(bootstrap, topic, 2, partitions=3)
    assert [(m.partition(), m.value()) for m in msgs] == [(2, b"v1"), (2, b"v2")]


async def test_produce_errors_use_confluent_codes(client: httpx.AsyncClient, topic: str) -> None:
    ok = {"records": [{"value": "YQ=="}]}
    cases = [
        # unknown topic / partition
        (client.post("/topics/no-such-topic-v2", json=ok, headers={"content-type": BINARY}), 404, 40401),
        (client.post(f"/topics/{topic}/partitions/7", json=ok, headers={"content-type": BINARY}), 404, 40402),
        # schema-registry formats and plain JSON are not v2 produce media types
        (
            client.post(f"/topics/{topic}", json=ok, headers={"content-type": "application/vnd.kafka.avro.v2+json"}),
            415,
            41501,
        ),
        (client.post(f"/topics/{topic}", json=ok, headers={"content-type": "application/json"}), 415, 41501),
        # Accept negotiation: only v1 or an unrelated type -> 406
        (
            client.post(
                f"/topics/{topic}", json=ok, headers={"content-type": BINARY, "accept": "application/vnd.kafka.v1+json"}
            ),
            406,
            40601,
        ),
        (client.post(f"/topics/{topic}", json=ok, headers={"content-type": BINARY, "accept": "text/html"}), 406, 40601),
        # bodies
        (client.post(f"/topics/{topic}", content=b"{nope", headers={"content-type": BINARY}), 400, 40001),
        (client.post(f"/topics/{topic}", json={"records": []}, headers={"content-type": BINARY}), 422, 42201),
        (
            client.post(
                f"/topics/{topic}", json={"records": [{"value": "not base64!"}]}, headers={"content-type": BINARY}
            ),
            422,
            42201,
        ),
        (
            client.post(
                f"/topics/{topic}", json={"records": [{"value": 1, "color": "red"}]}, headers={"content-type": JSON}
            ),
            422,
            42201,
        ),
    ]
    for request, status, code in cases:
        r = await request
        assert r.status_code == status, r.text
        assert r.json()["error_code"] == code, r.text
        assert set(r.json()) == {"error_code", "message"}


async def test_a_record_for_a_missing_partition_fails_alone(
    client: httpx.AsyncClient, bootstrap: str, topic: str
) -> None:
    body = {"records": [{"value": b64(b"fine")}, {"value": b64(b"lost"), "partition": 5}]}
    r = await client.post(f"/topics/{topic}", json=body, headers={"content-type": BINARY})
    assert r.status_code == 200, r.text
    first, second = r.json()["offsets"]
    assert (first["partition"], first["offset"], first["error_code"]) == (0, 0, None)
    assert second["partition"] is None and second["offset"] is None
    assert second["error_code"] == 40402 and "Partition 5" in second["error"]
    assert [m.value() for m in read_all(bootstrap, topic, 1)] == [b"fine"]


async def test_partition_metadata_and_offsets(
    client: httpx.AsyncClient, new_topic: Callable[..., str], bootstrap: str
) -> None:
    topic = new_topic(2)
    r = await client.post(
        f"/topics/{topic}/partitions/1", json={"records": [{"value": b64(b"x")}] * 3}, headers={"content-type": BINARY}
    )
    assert r.status_code == 200

    r = await client.get(f"/topics/{topic}/partitions", headers={"accept": ACCEPT})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == V2
    parts = r.json()
    assert [p["partition"] for p in parts] == [0, 1]
    for p in parts:
        assert p["leader"] >= 0
        assert p["replicas"] == [{"broker": p["leader"], "leader": True, "in_sync": True}]

    r = await client.get(f"/topics/{topic}/partitions/1", headers={"accept": V2})
    assert r.status_code == 200 and r.json()["partition"] == 1

    r = await client.get(f"/topics/{topic}/partitions/1/offsets", headers={"accept": V2})
    assert r.status_code == 200 and r.json() == {"beginning_offset": 0, "end_offset": 3}

    for path, code in [
        (f"/topics/{topic}/partitions/9", 40402),
        (f"/topics/{topic}/partitions/9/offsets", 40402),
        ("/topics/no-such-topic-v2/partitions", 40401),
    ]:
        r = await client.get(path, headers={"accept": V2})
        assert r.status_code == 404 and r.json()["error_code"] == code, r.text

    r = await client.get(f"/topics/{topic}/partitions", headers={"accept": "application/xml"})
    assert r.status_code == 406 and r.json()["error_code"] == 40601


async def test_topics_list_and_topic_in_the_v2_shape(client: httpx.AsyncClient, new_topic: Callable[..., str]) -> None:
    # Served by the admin API for both APIs; checked here the way a v2 client reads them.
    topic = new_topic(2)
    r = await client.get("/topics", headers={"accept": V2})
    assert r.status_code == 200 and r.headers["content-type"] == V2
    assert topic in r.json()
    r = await client.get(f"/topics/{topic}", headers={"accept": V2})
    assert r.status_code == 200 and r.headers["content-type"] == V2
    t = r.json()
    assert t["name"] == topic and isinstance(t["configs"], dict)
    assert [p["partition"] for p in t["partitions"]] == [0, 1]
    assert all({"broker", "leader", "in_sync"} <= set(p["replicas"][0]) for p in t["partitions"])
    r = await client.get("/topics/no-such-topic-v2", headers={"accept": V2})
    assert r.status_code == 404 and r.json()["error_code"] == 40401


async def test_brokers(client: httpx.AsyncClient) -> None:
    r = await client.get("/brokers", headers={"accept": V2})
    assert r.status_code == 200, r.text
    brokers = r.json()["brokers"]
    assert len(brokers) == 1 and isinstance(brokers[0], int)
