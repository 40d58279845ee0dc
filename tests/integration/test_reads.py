"""Stateless reads (API.md §2.2) against a real broker: nothing lost, nothing repeated, long-poll, offsets."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from confluent_kafka import Producer

pytestmark = pytest.mark.anyio


def _produce(bootstrap: str, topic: str, records: list[dict[str, object]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for rec in records:
        producer.produce(topic, **rec)  # type: ignore[arg-type]
    assert producer.flush(30) == 0


def _error(r: httpx.Response, status: int, code: int) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error_code"] == code and r.json()["message"], r.text


async def test_ten_thousand_records_with_small_limits_lose_and_repeat_nothing(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    n = 10_000
    # Sizes vary from 10 to ~1,200 bytes so max_bytes cuts batches at every possible place; one
    # record is far larger than max_bytes and must still come back (alone).
    records: list[dict[str, object]] = []
    for i in range(n):
        size = 3000 if i == 5000 else 10 + (i * 37) % 1200
        value = json.dumps({"i": i, "pad": "x" * size}).encode()
        records.append({"value": value, "key": f"k{i}".encode(), "partition": 1, "headers": [("n", str(i).encode())]})
    _produce(bootstrap, topic, records)

    seen: list[int] = []
    offset = 0
    requests = 0
    limits = [(7, 2000), (50, 900), (13, 5000), (200, 1500)]
    while offset < n:
        limit, max_bytes = limits[requests % len(limits)]
        r = await client.get(
            f"/topics/{topic}/partitions/1/records",
            params={"offset": offset, "limit": limit, "max_bytes": max_bytes},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        got = body["records"]
        assert 1 <= len(got) <= limit, (offset, len(got))
        offsets = [rec["offset"] for rec in got]
        # Exactly contiguous from the asked offset; next_offset is right after the last returned.
        assert offsets == list(range(offset, offset + len(got)))
        assert body["next_offset"] == offsets[-1] + 1
        for rec in got:
            i = rec["offset"]
            assert rec["value"]["i"] == i and rec["key"] == f"k{i}" and rec["headers"] == {"n": str(i)}
            assert rec["topic"] == topic and rec["partition"] == 1
        if len(got) > 1:
            # The size limit holds for every batch of more than one record.
            assert sum(len(json.dumps(x["value"], separators=(",", ":"))) for x in got) <= max_bytes + 200 * len(got)
        seen.extend(offsets)
        offset = body["next_offset"]
        requests += 1
    assert seen == list(range(n))
    assert requests > n // 200

    # At the end, with no wait: empty, and next_offset stays.
    r = await client.get(f"/topics/{topic}/partitions/1/records", params={"offset": n})
    assert r.json() == {"records": [], "next_offset": n}
    # Partition 0 is empty.
    r = await client.get(f"/topics/{topic}/partitions/0/records")
    assert r.json() == {"records": [], "next_offset": 0}


async def test_the_first_record_comes_back_even_if_larger_than_max_bytes(
    client: httpx.AsyncClient, bootstrap: str, topic: str
) -> None:
    _produce(bootstrap, topic, [{"value": b'"' + b"y" * 5000 + b'"'}, {"value": b"1"}, {"value": b"2"}])
    r = await client.get(f"/topics/{topic}/partitions/0/records", params={"offset": 0, "max_bytes": 100})
    body = r.json()
    assert [x["offset"] for x in body["records"]] == [0] and body["next_offset"] == 1
    r = await client.get(f"/topics/{topic}/partitions/0/records", params={"offset": 1, "max_bytes": 100})
    body = r.json()
    assert [x["value"] for x in body["records"]] == [1, 2] and body["next_offset"] == 3


async def test_long_poll_returns_a_record_produced_during_the_wait(
    client: httpx.AsyncClient, bootstrap: str, topic: str
) -> None:
    _produce(bootstrap, topic, [{"value": b'"old"'}])

    async def produce_later() -> None:
        await asyncio.sleep(0.7)
        await asyncio.to_thread(_produce, bootstrap, topic, [{"value": b'"new"', "key": b"late"}])

    producing = asyncio.create_task(produce_later())
    r = await client.get(f"/topics/{topic}/partitions/0/records", params={"offset": 1, "timeout_ms": 15000})
    await producing
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(x["offset"], x["key"], x["value"]) for x in body["records"]] == [(1, "late", "new")]
    assert body["next_offset"] == 2


async def test_long_poll_without_records_returns_empty_after_the_wait(client: httpx.AsyncClient, topic: str) -> None:
    r = await client.get(f"/topics/{topic}/partitions/0/records", params={"timeout_ms": 300})
    assert r.status_code == 200 and r.json() == {"records": [], "next_offset": 0}


async def test_formats_tombstones_and_decode_errors(client: httpx.AsyncClient, bootstrap: str, topic: str) -> None:
    _produce(
        bootstrap,
        topic,
        [{"value": b"plain text", "key": b"\xff\xfe"}, {"value": None, "key": b"gone"}, {"value": b'{"a":1}'}],
    )
    r = await client.get(
        f"/topics/{topic}/partitions/0/records", params={"value_format": "string", "key_format": "binary"}
    )
    first, tomb, third = r.json()["records"]
    assert first["value"] == "plain text" and base64.b64decode(first["key"]) == b"\xff\xfe"
    assert tomb["value"] is None
    assert third["value"] == '{"a":1}'
    # json (default) on a non-JSON value: the record still comes, as base64 with the reason.
    r = await client.get(f"/topics/{topic}/partitions/0/records", params={"limit": 1, "key_format": "binary"})
    (rec,) = r.json()["records"]
    assert base64.b64decode(rec["value_b64"]) == b"plain text" and "decode_error" in rec
    r = await client.get(f"/topics/{topic}/partitions/0/records", params={"format": "binary", "offset": 2})
    (rec,) = r.json()["records"]
    assert base64.b64decode(rec["value"]) == b'{"a":1}'


async def test_json_values_come_on_one_line_and_only_if_utf8(
    client: httpx.AsyncClient, bootstrap: str, topic: str
) -> None:
    # Written by other producers: pretty JSON with CRLF line breaks, and JSON whose string is not UTF-8.
    _produce(bootstrap, topic, [{"value": b'{\r\n  "a": [1,\n 2],\n  "b": "x y"\n}'}, {"value": b'{"name":"caf\xe9"}'}])
    r = await client.get(f"/topics/{topic}/partitions/0/records")
    assert b"\n" not in r.content and b"\r" not in r.content
    pretty, latin1 = r.json()["records"]
    assert pretty["value"] == {"a": [1, 2], "b": "x y"}
    assert base64.b64decode(latin1["value_b64"]) == b'{"name":"caf\xe9"}'
    assert latin1["decode_error"].startswith("value not valid UTF-8")


async def test_errors(client: httpx.AsyncClient, bootstrap: str, topic: str) -> None:
    _produce(bootstrap, topic, [{"value": b"1"}])
    _error(await client.get(f"/topics/{topic}/partitions/1/records"), 404, 40402)
    _error(await client.get("/topics/no-such-topic-reads/partitions/0/records"), 404, 40401)
    _error(await client.get(f"/topics/{topic}/partitions/0/records", params={"offset": 5}), 400, 40001)
    _error(await client.get(f"/topics/{topic}/partitions/0/records", params={"offset": -1}), 400, 40001)
    _error(await client.get(f"/topics/{topic}/partitions/0/records", params={"limit": 0}), 400, 40001)
    _error(await client.get(f"/topics/{topic}/partitions/0/records", params={"format": "xml"}), 400, 40001)
    _error(await client.get(f"/topics/{topic}/offsets", params={"timestamp": "yesterday"}), 400, 40001)
    _error(await client.get("/topics/no-such-topic-reads/offsets"), 404, 40401)


async def test_offsets_by_timestamp_and_watermarks(
    client: httpx.AsyncClient, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(3)
    base = 1_700_000_000_000
    # Partition 0: records at base, base+1000, base+2000; partition 1: one at base+500; partition 2: none.
    _produce(
        bootstrap,
        topic,
        [
            {"value": b"0", "partition": 0, "timestamp": base},
            {"value": b"1", "partition": 0, "timestamp": base + 1000},
            {"value": b"2", "partition": 0, "timestamp": base + 2000},
            {"value": b"3", "partition": 1, "timestamp": base + 500},
        ],
    )
    r = await client.get(f"/topics/{topic}/offsets", params={"timestamp": base + 600})
    assert r.status_code == 200
    assert r.json() == {
        "offsets": [{"partition": 0, "offset": 1}, {"partition": 1, "offset": None}, {"partition": 2, "offset": None}]
    }
    rfc = datetime.fromtimestamp((base + 1000) / 1000, UTC).isoformat().replace("+00:00", "Z")
    r = await client.get(f"/topics/{topic}/offsets", params={"timestamp": rfc})
    assert r.json()["offsets"][0] == {"partition": 0, "offset": 1}
    r = await client.get(f"/topics/{topic}/offsets", params={"timestamp": base})
    assert [o["offset"] for o in r.json()["offsets"]] == [0, 0, None]
    r = await client.get(f"/topics/{topic}/offsets", params={"timestamp": base + 5000})
    assert [o["offset"] for o in r.json()["offsets"]] == [None, None, None]

    r = await client.get(f"/topics/{topic}/offsets")
    assert r.json() == {
        "offsets": [
            {"partition": 0, "earliest": 0, "latest": 3},
            {"partition": 1, "earliest": 0, "latest": 1},
            {"partition": 2, "earliest": 0, "latest": 0},
        ]
    }
    # The offset found by time is where a read starts to get that record.
    r = await client.get(f"/topics/{topic}/partitions/0/records", params={"offset": 1, "limit": 1})
    assert r.json()["records"][0]["timestamp"] == base + 1000


async def test_concurrent_reads_beyond_the_pool_size_all_answer(
    make_client: Callable[..., object], bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(4)
    _produce(bootstrap, topic, [{"value": b"%d" % i, "partition": i % 4} for i in range(400)])
    async with make_client(reads={"pool_size": 2}) as c:  # type: ignore[attr-defined]
        rs = await asyncio.gather(
            *(c.get(f"/topics/{topic}/partitions/{p % 4}/records", params={"limit": 1000}) for p in range(12))
        )
    for p, r in enumerate(rs):
        assert r.status_code == 200
        assert [x["value"] for x in r.json()["records"]] == list(range(p % 4, 400, 4))


async def test_interleaved_pagers_on_one_pooled_consumer_lose_and_repeat_nothing(
    make_client: Callable[..., object], bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    records: list[dict[str, object]] = [
        {"value": json.dumps({"i": i, "pad": "z" * ((i * 53) % 400)}).encode(), "partition": i % 2} for i in range(2000)
    ]
    _produce(bootstrap, topic, records)
    # Three cursors (two on one partition, one on the other) take turns on a single consumer.
    cursors = {"a": (0, 0), "b": (0, 400), "c": (1, 0)}
    seen: dict[str, list[int]] = {k: [] for k in cursors}
    async with make_client(reads={"pool_size": 1}) as c:  # type: ignore[attr-defined]
        for turn in range(10_000):
            active = [k for k, (p, off) in cursors.items() if off < 1000 and not (k == "a" and off >= 400)]
            if not active:
                break
            name = active[turn % len(active)]
            p, off = cursors[name]
            r = await c.get(
                f"/topics/{topic}/partitions/{p}/records",
                params={"offset": off, "limit": 3 + turn % 11, "max_bytes": 700},
            )
            body = r.json()
            assert body["records"], (name, off)
            seen[name].extend(x["offset"] for x in body["records"])
            assert all(x["value"]["i"] % 2 == p for x in body["records"])
            cursors[name] = (p, body["next_offset"])
    assert seen["a"][:400] == list(range(400)) and len(set(seen["a"])) == len(seen["a"])
    assert seen["b"] == list(range(400, 1000))
    assert seen["c"] == list(range(1000))


async def test_reads_beyond_the_busy_pool_get_429_after_the_named_wait(
    make_client: Callable[..., object], topic: str
) -> None:
    async with make_client(reads={"pool_size": 1, "max_wait_s": 0.3}) as c:  # type: ignore[attr-defined]
        holding = asyncio.create_task(c.get(f"/topics/{topic}/partitions/0/records", params={"timeout_ms": 3000}))
        await asyncio.sleep(0.5)
        r = await c.get(f"/topics/{topic}/partitions/0/records")
        assert r.status_code == 429 and r.json()["error_code"] == 42901 and r.headers["retry-after"]
        assert (await holding).json() == {"records": [], "next_offset": 0}
        # Free again: reads work.
        assert (await c.get(f"/topics/{topic}/partitions/0/records")).status_code == 200
