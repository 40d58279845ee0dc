"""Native produce (API.md §1) against the real broker: what the client sees and what Kafka holds afterwards."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import localkafka
from tests.helpers import read_all

pytestmark = pytest.mark.anyio

JAVA_MURMUR = Path(__file__).resolve().parent.parent / "java" / "Murmur.java"


async def post(client: httpx.AsyncClient, topic: str, body: Any, **params: str) -> httpx.Response:
    return await client.post(f"/topics/{topic}/records", json=body, params=params)


def assert_error(r: httpx.Response, status: int, code: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert set(body) == {"error_code", "message"}, body
    assert body["error_code"] == code, body
    for word in words:
        assert word in body["message"], body
    return body


# -- formats: exact bytes in Kafka -------------------------------------------------------------------


async def test_default_formats_string_key_json_value_and_headers(
    client: httpx.AsyncClient, bootstrap: str, topic: str
) -> None:
    body = {"key": "ключ-1", "value": {"a": [1, 2.5, None], "s": "é\n"}, "headers": {"h1": "v1", "h2": "ü"}}
    r = await post(client, topic, body)
    assert r.status_code == 200, r.text
    (msg,) = read_all(bootstrap, topic, 1)
    assert msg.key() == "ключ-1".encode()
    assert msg.value() == json.dumps(body["value"], separators=(",", ":"), ensure_ascii=False).encode()
    assert msg.headers() == [("h1", b"v1"), ("h2", "ü".encode())]


async def test_json_string_binary_formats_write_exact_bytes(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(1)
    raw = bytes(range(256))
    b64 = base64.b64encode(raw).decode()
    cases: list[tuple[dict[str, str], dict[str, Any], bytes | None, bytes | None]] = [
        # (query, record, expected key bytes, expected value bytes)
        ({"format": "json"}, {"key": {"id": 7}, "value": [1, {"x": "y"}]}, b'{"id":7}', b'[1,{"x":"y"}]'),
        ({"format": "json"}, {"key": "k", "value": "text"}, b'"k"', b'"text"'),
        ({"format": "string"}, {"key": "k", "value": "plain text ✓"}, b"k", "plain text ✓".encode()),
        ({"format": "binary"}, {"key": base64.b64encode(b"\x00k").decode(), "value": b64}, b"\x00k", raw),
        ({"key_format": "binary", "value_format": "string"}, {"key": "AAE=", "value": "v"}, b"\x00\x01", b"v"),
        ({"key_format": "json"}, {"key": 42, "value": {"n": 1}}, b"42", b'{"n":1}'),
        ({"value_format": "binary"}, {"key": "k", "value": ""}, b"k", b""),
        ({}, {"value": {"no": "key"}}, None, b'{"no":"key"}'),
        ({}, {"key": None, "value": 1}, None, b"1"),
        ({"format": "json"}, {"key": None, "value": "x"}, None, b'"x"'),
    ]
    for query, record, _, _ in cases:
        r = await post(client, topic, record, **query)
        assert r.status_code == 200, (query, record, r.text)
    msgs = read_all(bootstrap, topic, len(cases))
    assert [(m.key(), m.value()) for m in msgs] == [(k, v) for _, _, k, v in cases]


async def test_batch_with_json_keys(client: httpx.AsyncClient, bootstrap: str, topic: str) -> None:
    body = {"records": [{"key": {"id": 1}, "value": "a"}, {"value": "b"}, {"key": [2], "value": None}]}
    r = await post(client, topic, body, format="json")
    assert r.status_code == 200, r.text
    msgs = read_all(bootstrap, topic, 3)
    assert [(m.key(), m.value()) for m in msgs] == [(b'{"id":1}', b'"a"'), (None, b'"b"'), (b"[2]", None)]


async def test_json_value_is_written_compact_from_the_request_text(
    client: httpx.AsyncClient, bootstrap: str, topic: str
) -> None:
    content = b'{"key": "k", "value": {\n  "a" : [ 1 , 2 ],\n  "big": 12345678901234567890123, "f": 1.0e+2 }}'
    r = await client.post(f"/topics/{topic}/records", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    (msg,) = read_all(bootstrap, topic, 1)
    # Numbers keep their exact text (no float round trip), whitespace is gone.
    assert msg.value() == b'{"a":[1,2],"big":12345678901234567890123,"f":1.0e+2}'


async def test_null_value_is_a_tombstone(client: httpx.AsyncClient, bootstrap: str, topic: str) -> None:
    for query in ({}, {"value_format": "string"}, {"value_format": "binary"}):
        r = await post(client, topic, {"key": "gone", "value": None}, **query)
        assert r.status_code == 200, r.text
    msgs = read_all(bootstrap, topic, 3)
    assert [(m.key(), m.value()) for m in msgs] == [(b"gone", None)] * 3


async def test_timestamps_epoch_ms_and_rfc3339_are_stored(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    # Records from 2023 are past the default 7-day retention: Kafka's next retention check would delete them.
    topic = new_topic(1, **{"retention.ms": "-1"})
    records = [
        {"value": 1, "timestamp": 1700000000123},
        {"value": 2, "timestamp": "2024-05-01T12:00:00.250Z"},
        {"value": 3, "timestamp": "2024-05-01T14:00:00.250+02:00"},
        {"value": 4, "timestamp": "1700000000999"},
    ]
    r = await post(client, topic, {"records": records})
    assert r.status_code == 200, r.text
    rfc = int(datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC).timestamp() * 1000)
    expected = [1700000000123, rfc, rfc, 1700000000999]
    assert [res["timestamp"] for res in r.json()["results"]] == expected
    msgs = read_all(bootstrap, topic, 4)
    assert [m.timestamp()[1] for m in msgs] == expected

    before = int(time.time() * 1000)
    r = await post(client, topic, {"value": "now"})
    assert r.status_code == 200
    assert before - 1000 <= r.json()["timestamp"] <= int(time.time() * 1000) + 1000


async def test_explicit_partition_is_used(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(3)
    r = await post(client, topic, {"records": [{"key": "same", "value": i, "partition": i % 3} for i in range(6)]})
    assert r.status_code == 200, r.text
    assert [res["partition"] for res in r.json()["results"]] == [0, 1, 2, 0, 1, 2]
    msgs = read_all(bootstrap, topic, 6, partitions=3)
    assert sorted((m.partition(), m.value()) for m in msgs) == sorted((i % 3, str(i).encode()) for i in range(6))


# -- partitioning: the same partition as the Java client -----------------------------------------------


def java_partitions(keys: list[str], partitions: int) -> list[int]:
    """Kafka's own Java code (kafka-clients jar) computes the partition of each key."""
    jars = localkafka.ensure_jars()
    proc = subprocess.run(
        ["java", "-cp", f"{jars}/*", str(JAVA_MURMUR), str(partitions), *keys],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [int(line) for line in proc.stdout.split()]


async def test_keyed_records_land_where_the_java_client_puts_them(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    partitions = 6
    topic = new_topic(partitions)
    keys = [f"user-{i}" for i in range(40)] + ["", "a", "ключ", "日本語", "emoji-🎉", "with space", "x" * 300]
    keys += ["order:2024-05-01", "0", "-1"]
    r = await post(client, topic, {"records": [{"key": k, "value": i} for i, k in enumerate(keys)]})
    assert r.status_code == 200, r.text
    gateway_parts = [res["partition"] for res in r.json()["results"]]
    java = java_partitions(keys, partitions)
    assert len(java) == len(keys)
    assert gateway_parts == java
    assert len(set(java)) == partitions  # the key set really exercises every partition
    # Kafka agrees with the answer: each record is where the response said.
    msgs = read_all(bootstrap, topic, len(keys), partitions=partitions)
    stored = {int(m.value()): m.partition() for m in msgs}
    assert [stored[i] for i in range(len(keys))] == java


async def test_keyless_records_are_spread(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(4)
    for _ in range(5):
        r = await post(client, topic, {"records": [{"value": i} for i in range(20)]})
        assert r.status_code == 200
    msgs = read_all(bootstrap, topic, 100, partitions=4)
    assert len(msgs) == 100
    assert len({m.partition() for m in msgs}) > 1


# -- batches: order, 207, all-failed ------------------------------------------------------------------


async def test_batch_results_in_input_order(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(3)
    n = 300
    r = await post(client, topic, {"records": [{"key": f"k{i % 17}", "value": {"i": i}} for i in range(n)]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == n and all(set(x) == {"partition", "offset", "timestamp"} for x in results)
    # Compact JSON, as every other answer (written straight from the delivery reports).
    assert r.content == json.dumps(r.json(), separators=(",", ":")).encode()
    msgs = read_all(bootstrap, topic, n, partitions=3)
    where = {(m.partition(), m.offset()): (json.loads(m.value())["i"], m.timestamp()[1]) for m in msgs}
    assert [where[(x["partition"], x["offset"])] for x in results] == [
        (i, x["timestamp"]) for i, x in enumerate(results)
    ]


async def test_one_bad_partition_gives_207_with_that_record_404(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    records = [{"value": "a", "partition": 0}, {"value": "b", "partition": 9}, {"value": "c", "partition": 1}]
    r = await post(client, topic, {"records": records})
    assert r.status_code == 207, r.text
    first, bad, third = r.json()["results"]
    assert first["partition"] == 0 and third["partition"] == 1
    assert bad == {"error_code": 40402, "message": f"Partition 9 of topic '{topic}' not found."}
    msgs = read_all(bootstrap, topic, 2, partitions=2)
    assert sorted(m.value() for m in msgs) == [b'"a"', b'"c"']


async def test_all_failed_for_one_cause_has_that_status(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    r = await post(client, topic, {"records": [{"value": 1, "partition": 5}, {"value": 2, "partition": 7}]})
    assert r.status_code == 404, r.text
    assert [x["error_code"] for x in r.json()["results"]] == [40402, 40402]
    r = await post(client, topic, {"value": 1, "partition": 2})
    assert_error(r, 404, 40402, "Partition 2")
    assert read_all(bootstrap, topic, 0, partitions=2, timeout_s=1) == []


# -- validation: nothing produced ---------------------------------------------------------------------


async def test_invalid_batch_is_422_naming_the_record_and_produces_nothing(
    client: httpx.AsyncClient, bootstrap: str, topic: str
) -> None:
    good = [{"key": f"k{i}", "value": i} for i in range(5)]
    cases: list[tuple[dict[str, Any], dict[str, str], str]] = [
        ({"records": [*good, {"key": 5, "value": 1}]}, {}, "records[5].key"),
        ({"records": [*good, {"key": "k"}]}, {}, "records[5]"),
        ({"records": [*good[:3], {"value": 1, "timestamp": "yesterday"}, *good]}, {}, "records[3]"),
        ({"records": [*good, {"value": 1, "partition": -1}]}, {}, "records[5].partition"),
        ({"records": [*good, {"value": 1, "headers": {"h": 1}}]}, {}, "records[5].headers"),
        ({"records": [*good, {"value": 1, "colour": "red"}]}, {}, "colour"),
        ({"records": [{"value": "AA=="}, {"value": "not base64!"}]}, {"value_format": "binary"}, "records[1].value"),
        ({"records": [{"value": "ok"}, {"value": {"a": 1}}]}, {"value_format": "string"}, "records[1].value"),
        ({"records": []}, {}, "must not be empty"),
        ({"records": good, "key": "x"}, {}, "only 'records'"),
        ({"key": "k"}, {}, "'value' is required"),
        ({"value": 1, "timestamp": -5}, {}, "timestamp"),
        ({"value": 1, "timestamp": "2024-05-01T12:00:00"}, {}, "zone"),
    ]
    for body, query, words in cases:
        r = await post(client, topic, body, **query)
        assert_error(r, 422, 42201, words)
    r = await client.post(f"/topics/{topic}/records", content=b"[1,2]", headers={"content-type": "application/json"})
    assert_error(r, 422, 42201)
    assert read_all(bootstrap, topic, 0, timeout_s=1) == []


async def test_malformed_json_400_wrong_content_type_415_bad_query_400(
    client: httpx.AsyncClient, bootstrap: str, topic: str
) -> None:
    for content in (b"{oops", b'{"records": [{"value": 1}, ', b"", b'{"value": 1} trailing'):
        r = await client.post(f"/topics/{topic}/records", content=content, headers={"content-type": "application/json"})
        assert_error(r, 400, 40001, "Malformed JSON")
    # JSON is UTF-8: a string that is not is malformed wherever it is (nothing produced, no 500).
    for content in (
        b'{"key":"caf\xe9","value":1}',
        b'{"value":"caf\xe9"}',
        b'{"value":{"name":"\xff"}}',
        b'{"value":1,"headers":{"h":"\xff"}}',
        b'{"records":[{"value":1},{"value":["ok","\xc3"]}]}',
    ):
        r = await client.post(f"/topics/{topic}/records", content=content, headers={"content-type": "application/json"})
        assert_error(r, 400, 40001, "UTF-8")
    for ctype in ("text/plain", "application/xml", "application/vnd.kafka.json.v2+json"):
        r = await client.post(f"/topics/{topic}/records", content=b'{"value":1}', headers={"content-type": ctype})
        assert_error(r, 415, 41501, ctype)
    r = await client.post(f"/topics/{topic}/records", content=b'{"value":1}')
    assert_error(r, 415, 41501)
    r = await post(client, topic, {"value": 1}, value_format="xml")
    assert_error(r, 400, 40001, "value_format")
    r = await client.post(
        f"/topics/{topic}/records", json={"value": 1}, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert r.status_code == 200
    r = await client.post(f"/topics/{topic}/records", json={"value": 1}, headers={"idempotency-key": "x" * 256})
    assert_error(r, 400, 40001, "Idempotency-Key")
    assert len(read_all(bootstrap, topic, 1, timeout_s=2)) == 1


async def test_unknown_topic_is_404_at_once(client: httpx.AsyncClient) -> None:
    started = time.monotonic()
    r = await post(client, "no-such-topic-anywhere", {"value": 1})
    assert_error(r, 404, 40401, "no-such-topic-anywhere")
    # Not a broker round trip per record nor a metadata wait: bounded far below any client timeout.
    assert time.monotonic() - started < 5
    r = await client.post(
        "/topics/no-such-topic-anywhere/records", content=b"{}\n", headers={"content-type": "application/x-ndjson"}
    )
    assert_error(r, 404, 40401)


async def test_auto_created_topics_when_the_operator_turns_it_on(
    make_client: Callable[..., Any], bootstrap: str, admin: Any
) -> None:
    name = f"auto-{time.monotonic_ns()}"
    settings = {"auto_create_topics": True, "auto_create_partitions": 3}
    async with make_client(produce=settings) as c:
        # Twenty concurrent first requests: one creation, every record produced.
        answers = await asyncio.gather(*(post(c, name, {"key": f"k{i}", "value": i}) for i in range(20)))
        assert [r.status_code for r in answers] == [200] * 20, [r.text for r in answers]
        r = await c.post(
            f"/topics/{name}-nd/records", content=b'{"value": 1}\n', headers={"content-type": "application/x-ndjson"}
        )
        assert r.status_code == 200 and json.loads(r.text.splitlines()[0])["offset"] == 0, r.text
        # Confluent v2 produce goes the same way.
        v2 = {"content-type": "application/vnd.kafka.json.v2+json", "accept": "application/vnd.kafka.v2+json"}
        r = await c.post(f"/topics/{name}-v2", json={"records": [{"value": {"a": 1}}]}, headers=v2)
        assert r.status_code == 200 and r.json()["offsets"][0]["offset"] == 0, r.text
        # A name Kafka refuses can never exist: still 404, and nothing asked of Kafka.
        assert_error(await post(c, "bad name", {"value": 1}), 404, 40401)
        assert_error(await post(c, "x" * 250, {"value": 1}), 400, 40001)  # over the route's own limit
        assert_error(await post(c, "a+b", {"value": 1}), 404, 40401)
    topics = admin.list_topics(timeout=10).topics
    assert len(topics[name].partitions) == 3
    assert sorted(json.loads(m.value()) for m in read_all(bootstrap, name, 20, partitions=3)) == list(range(20))
    assert "bad name" not in topics and "a+b" not in topics
    # Off (the default): the same unknown name stays a 404 and nothing is created.
    async with make_client() as c:
        assert_error(await post(c, f"{name}-off", {"value": 1}), 404, 40401)
    assert f"{name}-off" not in admin.list_topics(timeout=10).topics


# -- limits -------------------------------------------------------------------------------------------


async def test_limits_413_before_anything_is_produced(
    make_client: Callable[..., Any], bootstrap: str, topic: str
) -> None:
    limits = {"max_body_bytes": 4096, "max_record_bytes": 100, "max_batch_records": 5}
    async with make_client(produce=limits) as client:
        # Content-Length over the limit: refused before the body is read.
        r = await client.post(
            f"/topics/{topic}/records",
            content=b"x" * 5000,
            headers={"content-type": "application/json"},
        )
        assert_error(r, 413, 41301, "4096")

        # A chunked body (no Content-Length) is cut off as soon as it passes the limit.
        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 1000

        r = await client.post(
            f"/topics/{topic}/records", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_error(r, 413, 41301, "4096")

        r = await post(client, topic, {"records": [{"value": i} for i in range(6)]})
        assert_error(r, 413, 41301, "6 records", "5")

        r = await post(client, topic, {"records": [{"value": 1}, {"key": "k", "value": "v" * 100}]})
        assert_error(r, 413, 41301, "records[1]", "100 bytes")
        r = await post(client, topic, {"value": 1, "headers": {"h": "v" * 100}})
        assert_error(r, 413, 41301, "record")

        r = await post(client, topic, {"records": [{"value": i} for i in range(5)]})
        assert r.status_code == 200
    assert len(read_all(bootstrap, topic, 5, timeout_s=3)) == 5


async def _concurrent_batches(client: httpx.AsyncClient, topic: str, batch: list[Any], n: int) -> list[httpx.Response]:
    return list(await asyncio.gather(*(post(client, topic, {"records": batch}) for _ in range(n))))


async def test_backpressure_429_with_retry_after_and_nothing_produced(
    make_client: Callable[..., Any], bootstrap: str, topic: str
) -> None:
    # Room for one batch of 3 in flight: of 20 concurrent batches, those arriving while another is
    # still waiting for Kafka are refused whole with 429, and nothing of them is produced.
    async with make_client(
        produce={"max_in_flight_records": 3, "max_batch_records": 3, "ndjson_window": 3, "retry_after_s": 2}
    ) as client:
        answers = await _concurrent_batches(client, topic, [{"value": i} for i in range(3)], 20)
        refused = [r for r in answers if r.status_code == 429]
        accepted = [r for r in answers if r.status_code == 200]
        assert len(refused) + len(accepted) == 20, [r.text for r in answers]
        assert refused and accepted
        for r in refused:
            assert_error(r, 429, 42901, "queue is full")
            assert r.headers["retry-after"] == "2"
        # Once the queue drained, the same request goes through.
        r = await post(client, topic, {"records": [{"value": i} for i in range(3)]})
        assert r.status_code == 200
    # Waits for one record more than expected: none comes.
    produced = 3 * (len(accepted) + 1)
    assert len(read_all(bootstrap, topic, produced + 1, timeout_s=3)) == produced


async def test_backpressure_in_flight_bytes(make_client: Callable[..., Any], bootstrap: str, topic: str) -> None:
    async with make_client(
        produce={"max_in_flight_bytes": 1000, "max_body_bytes": 1000, "max_record_bytes": 500}
    ) as client:
        answers = await _concurrent_batches(client, topic, [{"value": "x" * 400} for _ in range(2)], 20)
        refused = [r for r in answers if r.status_code == 429]
        accepted = [r for r in answers if r.status_code == 200]
        assert len(refused) + len(accepted) == 20 and refused and accepted, [r.text for r in answers]
        for r in refused:
            assert_error(r, 429, 42901)
            assert r.headers["retry-after"] == "1"
    assert len(read_all(bootstrap, topic, 2 * len(accepted) + 1, timeout_s=3)) == 2 * len(accepted)


# -- async --------------------------------------------------------------------------------------------


async def test_async_query_and_prefer_header_202_then_in_kafka(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    r = await post(client, topic, {"records": [{"key": "a", "value": i} for i in range(10)]}, **{"async": "true"})
    assert r.status_code == 202, r.text
    assert r.json() == {"queued": 10}
    r = await client.post(
        f"/topics/{topic}/records", json={"key": "b", "value": "pref"}, headers={"prefer": "respond-async"}
    )
    assert r.status_code == 202 and r.json() == {"queued": 1}
    msgs = read_all(bootstrap, topic, 11, partitions=2)
    assert sorted(m.value() for m in msgs) == sorted([str(i).encode() for i in range(10)] + [b'"pref"'])

    # A record refused before queueing is still reported.
    r = await post(
        client, topic, {"records": [{"value": 1, "partition": 0}, {"value": 2, "partition": 5}]}, **{"async": "true"}
    )
    assert r.status_code == 207, r.text
    assert r.json()["queued"] == 1
    assert r.json()["results"][0] == {"queued": True} and r.json()["results"][1]["error_code"] == 40402
    r = await post(client, topic, {"value": 1, "partition": 5}, **{"async": "true"})
    assert_error(r, 404, 40402)
    r = await post(client, topic, {"value": 1}, **{"async": "false"})
    assert r.status_code == 200 and "offset" in r.json()


# -- idempotency --------------------------------------------------------------------------------------


async def test_idempotent_retry_returns_first_answer_and_produces_nothing_more(
    client: httpx.AsyncClient, bootstrap: str, topic: str
) -> None:
    headers = {"idempotency-key": "order-4711"}
    body = {"key": "k", "value": {"order": 4711}}
    first = await client.post(f"/topics/{topic}/records", json=body, headers=headers)
    assert first.status_code == 200, first.text
    for _ in range(3):
        again = await client.post(f"/topics/{topic}/records", json=body, headers=headers)
        assert again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["idempotency-replayed"] == "true"
    # Same key, another body: refused, clearly.
    other = await client.post(f"/topics/{topic}/records", json={"key": "k", "value": 1}, headers=headers)
    assert_error(other, 422, 42201, "Idempotency-Key", "different")
    # Same key and body but another format is another request as well.
    other = await client.post(f"/topics/{topic}/records?format=json", json=body, headers=headers)
    assert_error(other, 422, 42201, "Idempotency-Key")

    msgs = read_all(bootstrap, topic, 1)
    assert len(msgs) == 1
    assert msgs[0].headers() == [("idempotency-key", b"order-4711")]
    assert msgs[0].offset() == first.json()["offset"]


async def test_idempotent_concurrent_retries_and_batches(client: httpx.AsyncClient, bootstrap: str, topic: str) -> None:
    import asyncio

    headers = {"idempotency-key": "batch-1"}
    body = {"records": [{"value": i, "headers": {"n": str(i)}} for i in range(5)]}
    answers = await asyncio.gather(
        *(client.post(f"/topics/{topic}/records", json=body, headers=headers) for _ in range(4))
    )
    assert {a.status_code for a in answers} == {200}
    assert all(a.json() == answers[0].json() for a in answers)
    msgs = read_all(bootstrap, topic, 5)
    assert len(msgs) == 5
    assert [m.headers() for m in msgs] == [[("n", str(i).encode()), ("idempotency-key", b"batch-1")] for i in range(5)]

    # A rejected request's answer is remembered too (and produced nothing).
    bad = {"records": [{"key": 1, "value": 1}]}
    for _ in range(2):
        r = await client.post(f"/topics/{topic}/records", json=bad, headers={"idempotency-key": "bad-1"})
        assert_error(r, 422, 42201)
    assert len(read_all(bootstrap, topic, 5, timeout_s=2)) == 5


# -- metrics ------------------------------------------------------------------------------------------


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_produced_records_and_bytes(client: httpx.AsyncClient, topic: str) -> None:
    before = (await client.get("/metrics")).text
    r = await post(client, topic, {"records": [{"key": "ab", "value": "x" * 10} for _ in range(7)]})
    assert r.status_code == 200
    r = await post(client, topic, {"value": 1}, **{"async": "true"})
    assert r.status_code == 202
    deadline = time.monotonic() + 10
    while True:
        after = (await client.get("/metrics")).text
        produced = metric(after, "gateway_records_produced_total", topic=topic) - metric(
            before, "gateway_records_produced_total", topic=topic
        )
        if produced >= 8 or time.monotonic() > deadline:
            break
        # Yield to the loop: the producer's completions arrive through call_soon_threadsafe.
        await asyncio.sleep(0.02)
    assert produced == 8
    # key "ab" (2) + value '"xxxxxxxxxx"' (12) per record, plus the async record's value "1".
    grown = metric(after, "gateway_bytes_produced_total", topic=topic) - metric(
        before, "gateway_bytes_produced_total", topic=topic
    )
    assert grown == 7 * 14 + 1
    assert "gateway_producer_in_flight_records" in after
