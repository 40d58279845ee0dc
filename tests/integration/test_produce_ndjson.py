"""NDJSON streaming produce against a live uvicorn: one result line per input line, in order, written while
the request body is still arriving, and what Kafka holds afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.helpers import GatewayProcess, read_all

pytestmark = pytest.mark.anyio


class DuplexNdjson:
    """A raw HTTP/1.1 client that writes a chunked NDJSON body and reads the response at the same time
    (httpx sends the whole request before it reads, which hides whether results really stream)."""

    def __init__(self, url: str, path: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, path
        self.status = 0
        self.headers: dict[str, str] = {}
        self._buf = b""

    async def __aenter__(self) -> DuplexNdjson:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/x-ndjson\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        self.writer.write(head.encode())
        await self.writer.drain()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def send(self, data: bytes) -> None:
        if data:
            self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self.writer.drain()

    async def end(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def _head(self) -> None:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = raw.decode().split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}

    async def _chunk(self) -> bytes | None:
        size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2] if size else None

    async def lines(self) -> AsyncIterator[dict[str, Any]]:
        """Result lines as they arrive."""
        if not self.status:
            await self._head()
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                yield json.loads(line)
            chunk = await self._chunk()
            if chunk is None:
                return
            self._buf += chunk


async def test_ten_thousand_lines_give_ten_thousand_results_in_order(
    gateway: GatewayProcess, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(3)
    n = 10_000
    body = b"".join(b'{"key":"k%d","value":{"i":%d}}\n' % (i % 97, i) for i in range(n))
    results: list[dict[str, Any]] = []
    async with DuplexNdjson(gateway.url, f"/topics/{topic}/records") as s:

        async def write() -> None:
            for start in range(0, len(body), 16384):  # uneven chunks: lines cross chunk borders
                await s.send(body[start : start + 16384])
            await s.end()

        writer = asyncio.create_task(write())
        async for line in s.lines():
            results.append(line)
        await writer
        assert s.status == 200 and s.headers["content-type"].startswith("application/x-ndjson")
    assert len(results) == n
    assert all(set(r) == {"partition", "offset", "timestamp"} for r in results), results[:3]
    msgs = read_all(bootstrap, topic, n, partitions=3, timeout_s=60)
    assert len(msgs) == n
    line_of = {(m.partition(), m.offset()): json.loads(m.value())["i"] for m in msgs}
    assert [line_of[(r["partition"], r["offset"])] for r in results] == list(range(n))


async def test_bad_lines_get_error_lines_and_the_stream_goes_on(
    gateway: GatewayProcess, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2, **{"retention.ms": "-1"})  # a record from 2024: past the default retention
    lines = [
        b'{"key":"a","value":1}',
        b'{"key":"b","value":',  # malformed
        b'{"key":7,"value":3}',  # key not a string
        b"",  # blank: skipped, no result line
        b'{"value":4,"partition":5}',  # no such partition
        b'{"value":5,"headers":{"h":"x"}}',
        b'{"key":"f"}',  # no value
        b'{"value":7,"timestamp":"2024-05-01T12:00:00Z"}',
        b'{"value":{"name":"caf\xe9"}}',  # a JSON string that is not UTF-8
        b'{"key":"\xff","value":9}',
    ]
    async with DuplexNdjson(gateway.url, f"/topics/{topic}/records") as s:
        await s.send(b"\n".join(lines) + b"\n")
        await s.end()
        results = [r async for r in s.lines()]
    codes = [r.get("error_code") for r in results]
    assert codes == [None, 40001, 42201, 40402, None, 42201, None, 40001, 40001], results
    assert "line 9" in results[7]["message"] and "UTF-8" in results[7]["message"]
    assert "line 10" in results[8]["message"] and "UTF-8" in results[8]["message"]
    assert "line 2" in results[1]["message"] and "line 3" in results[2]["message"]
    assert "line 7" in results[5]["message"] and "value" in results[5]["message"]
    msgs = read_all(bootstrap, topic, 3, partitions=2)
    assert sorted(m.value() for m in msgs) == [b"1", b"5", b"7"]
    assert {m.value(): m.headers() for m in msgs}[b"5"] == [("h", b"x")]


async def test_each_result_is_written_before_the_body_ends(gateway: GatewayProcess, topic: str) -> None:
    # A client that waits for each line's result before sending the next one is served.
    async with DuplexNdjson(gateway.url, f"/topics/{topic}/records") as s:
        results = s.lines()
        for i in range(3):
            await s.send(b'{"value":%d}\n' % i)
            line = await asyncio.wait_for(results.__anext__(), 10)
            assert line["offset"] == i
        await s.end()
        assert [r async for r in results] == []


async def test_a_line_over_the_limit_ends_the_stream_with_an_error_line(
    gateway: GatewayProcess, bootstrap: str, topic: str
) -> None:
    async with DuplexNdjson(gateway.url, f"/topics/{topic}/records") as s:
        await s.send(b'{"value":"ok"}\n')
        huge = b'{"value":"' + b"x" * 65536
        for _ in range(32):  # 2.1 MB without a newline: over max_record_bytes * 2 + 64 KiB
            await s.send(huge)
        results = [r async for r in s.lines()]
    assert results[0]["offset"] == 0
    assert results[-1]["error_code"] == 41301 and "line" in results[-1]["message"]
    assert [m.value() for m in read_all(bootstrap, topic, 1)] == [b'"ok"']


async def test_lines_over_the_in_flight_bound_get_429_lines(
    make_client: Callable[..., Any], bootstrap: str, topic: str
) -> None:
    # Room for 2 records in flight and 10 streams of 2 lines at once: lines arriving while the queue
    # is full get a 429 line each (the stream goes on), and only the other lines reach Kafka.
    async with make_client(produce={"max_in_flight_records": 2, "max_batch_records": 2, "ndjson_window": 2}) as client:
        body = b'{"value":1}\n{"value":2}\n'

        async def stream() -> list[dict[str, Any]]:
            r = await client.post(
                f"/topics/{topic}/records", content=body, headers={"content-type": "application/x-ndjson"}
            )
            assert r.status_code == 200
            return [json.loads(line) for line in r.text.splitlines()]

        results = [x for lines in await asyncio.gather(*(stream() for _ in range(10))) for x in lines]
    assert len(results) == 20
    refused = [x for x in results if "error_code" in x]
    delivered = [x for x in results if "offset" in x]
    assert refused and delivered and len(refused) + len(delivered) == 20, results
    assert all(x["error_code"] == 42901 and "queue is full" in x["message"] for x in refused)
    assert len(read_all(bootstrap, topic, len(delivered) + 1, timeout_s=3)) == len(delivered)
