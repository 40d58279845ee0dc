"""asyncio load clients: SSE readers that count raw bytes instead of parsing every event, a raw
NDJSON uploader that reads its results while it is still sending, and a fixed-rate produce client.

Counting ``event: record`` lines in the raw stream keeps the client far cheaper than the server it
measures; only complete lines are scanned, so a pattern split across two reads is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

RECORD = b"\nevent: record\n"
TS_RE = re.compile(rb'"ts":(\d+)')


class LineCounter:
    """Counts occurrences of ``pattern`` in a byte stream fed in arbitrary pieces."""

    def __init__(self, pattern: bytes = RECORD) -> None:
        self.pattern = pattern
        self.count = 0
        self._tail = b""

    def feed(self, data: bytes) -> int:
        buf = self._tail + data
        cut = buf.rfind(b"\n")
        if cut < 0:
            self._tail = buf
            return 0
        # The last newline is scanned now and kept, so a pattern that starts with it is whole next time.
        done, self._tail = buf[: cut + 1], buf[cut:]
        n = done.count(self.pattern)
        self.count += n
        return n


@dataclass
class StreamRead:
    records: int
    seconds: float
    first_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


async def read_sse(url: str, expected: int, timeout_s: float) -> StreamRead:
    """One subscriber with httpx: time from the request to the ``expected``-th record event."""
    counter = LineCounter()
    c0 = time.process_time()
    first = 0.0
    # The clock starts after the client object is built, when the connection is opened: building an
    # httpx client loads certifi's CA bundle (30+ ms of CPU) even for http://, which is not part of
    # the time a subscriber waits for its first event.
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=10)) as client:
        t0 = time.monotonic()
        async with client.stream("GET", url, headers={"Accept": "text/event-stream"}) as resp:
            resp.raise_for_status()
            deadline = t0 + timeout_s
            async for chunk in resp.aiter_raw():
                counter.feed(chunk)
                if counter.count and not first:
                    first = time.monotonic() - t0
                if counter.count >= expected or time.monotonic() > deadline:
                    break
    return StreamRead(counter.count, time.monotonic() - t0, first, time.process_time() - c0)


async def first_event(url: str, timeout_s: float = 10.0) -> float:
    """Seconds from connecting to the first record event."""
    return (await read_sse(url, 1, timeout_s)).first_s


class Subscriber(asyncio.Protocol):
    """A minimal HTTP/1.1 SSE subscriber for fan-out: thousands of them cost little.

    Scans only complete lines: counts record events and, when ``latencies`` is given, takes every
    ``"ts":<µs>`` it sees as a produce time and records now - ts in milliseconds.
    """

    def __init__(self, request: bytes, latencies: list[float] | None) -> None:
        self.request = request
        self.latencies = latencies
        self.connected = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.head = b""
        self.in_body = False
        self.status = 0
        self.records = 0
        self.tail = b""
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not a subclass of asyncio.Transport, so no isinstance check here.
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.status = int(self.head.split(b" ", 2)[1])
            data, self.head, self.in_body = self.head[end + 4 :], b"", True
            if self.status != 200 and not self.connected.done():
                self.connected.set_exception(RuntimeError(f"status {self.status}"))
        buf = self.tail + data
        cut = buf.rfind(b"\n")
        if cut < 0:
            self.tail = buf
            return
        done, self.tail = buf[: cut + 1], buf[cut:]
        if not self.connected.done() and b": connected" in done:
            self.connected.set_result(None)
        n = done.count(RECORD)
        if n:
            self.records += n
            if self.latencies is not None:
                now_us = time.time_ns() // 1000
                self.latencies.extend((now_us - int(ts)) / 1000 for ts in TS_RE.findall(done))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed before the stream started"))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def sse_request(url: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    return host, port, req


async def subscribe(url: str, latencies: list[float] | None, timeout_s: float = 30.0) -> Subscriber:
    host, port, req = sse_request(url)
    loop = asyncio.get_running_loop()
    _, proto = await asyncio.wait_for(loop.create_connection(lambda: Subscriber(req, latencies), host, port), timeout_s)
    try:
        await asyncio.wait_for(asyncio.shield(proto.connected), timeout_s)
    except BaseException:
        proto.close()
        raise
    return proto


@dataclass
class Crowd:
    """Subscribers opened in concurrent waves, stopping early when a guard says so."""

    subscribers: list[Subscriber] = field(default_factory=list)
    failures: int = 0
    stopped_because: str = ""

    async def grow(
        self,
        url: str,
        target: int,
        latencies: list[float] | None,
        *,
        wave: int = 250,
        concurrency: int = 100,
        guard: Callable[[], str] | None = None,
        deadline_s: float = 300.0,
    ) -> None:
        sem = asyncio.Semaphore(concurrency)
        deadline = time.monotonic() + deadline_s

        async def one() -> None:
            async with sem:
                try:
                    self.subscribers.append(await subscribe(url, latencies))
                except (OSError, RuntimeError, TimeoutError):
                    self.failures += 1

        while len(self.subscribers) < target:
            n = min(wave, target - len(self.subscribers))
            await asyncio.gather(*(one() for _ in range(n)))
            if self.failures > max(10, target // 20):
                self.stopped_because = f"{self.failures} subscribers failed to connect"
                return
            reason = guard() if guard else ""
            if reason:
                self.stopped_because = reason
                return
            if time.monotonic() > deadline:
                self.stopped_because = f"ramp took over {deadline_s:.0f} s"
                return

    async def close(self) -> None:
        for s in self.subscribers:
            s.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(s.closed for s in self.subscribers)), 30)


@dataclass
class NdjsonResult:
    ok: int
    errors: int
    seconds: float
    cpu_s: float


async def post_ndjson(url: str, body: bytes, chunk: int = 65536) -> tuple[int, int]:
    """POST ``body`` as a chunked NDJSON stream while reading the result lines; (ok, errors)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-ndjson\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
    )

    async def send() -> None:
        for i in range(0, len(body), chunk):
            piece = body[i : i + chunk]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    ok = LineCounter(b'"offset":')
    bad = LineCounter(b'"error_code":')
    sender = asyncio.create_task(send())
    try:
        while data := await reader.read(1 << 16):
            ok.feed(data)
            bad.feed(data)
        await sender
    finally:
        sender.cancel()
        writer.close()
    ok.feed(b"\n")
    bad.feed(b"\n")
    return ok.count, bad.count


@dataclass
class PacedResult:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    late: int = 0
    latencies_ms: list[float] = field(default_factory=list)


async def _post_keepalive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def paced_produce(url: str, body: bytes, rate: float, duration_s: float, connections: int = 32) -> PacedResult:
    """POST ``body`` at a steady ``rate`` per second for ``duration_s`` over keep-alive connections.

    A raw HTTP/1.1 client (httpx costs milliseconds of CPU per request here, which would make the
    client the bottleneck). Latency counts from when a request was due, so queueing is not hidden;
    a request due while every connection is busy with a backlog of ``connections`` more is counted
    as late and skipped, so the offered rate stays honest.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    res = PacedResult()
    due_times: asyncio.Queue[float | None] = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (due := await due_times.get()) is not None:
                try:
                    status = await _post_keepalive(reader, writer, request)
                    if status < 300:
                        res.ok += 1
                    else:
                        res.errors += 1
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    res.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                res.latencies_ms.append((time.monotonic() - due) * 1000)
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    t0 = time.monotonic()
    i = 0
    while (now := time.monotonic()) - t0 < duration_s:
        due = t0 + i / rate
        if due > now:
            await asyncio.sleep(due - now)
        i += 1
        if due_times.qsize() >= connections:
            res.late += 1
            continue
        res.sent += 1
        due_times.put_nowait(due)
    for _ in workers:
        due_times.put_nowait(None)
    await asyncio.wait(workers, timeout=30)
    return res
