"""Stateless reads of one partition from an offset (API.md §2.2) on a small pool of assign-mode consumers.

A read never skips a record because of a size limit: records are taken in offset order until
``limit`` or ``max_bytes`` is reached, the record that would pass ``max_bytes`` is left for the next
request (unless it is the first, which is always returned), and ``next_offset`` is the offset right
after the last record returned. Nothing is committed; the client holds its position.

Consumers are created lazily up to ``pool_size`` and reused (``assign`` moves one to any partition
and offset in microseconds; creating a consumer costs a connection and a metadata round trip).
Every blocking call runs on the Kafka executor through ``AsyncConsumer``. A read whose client goes
away is not interrupted inside a ``consume()``: it stops at the next short poll slice and gives its
consumer back, so a thread never outlives the consumer it uses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import KafkaError, Message, TopicPartition

from gateway import errors
from gateway.kafka.consumer import AsyncConsumer

# Longest single consume() call; also how quickly an abandoned read notices and stops.
POLL_SLICE_S = 0.25
READER_FETCH_WAIT_MS = 10


@dataclass
class ReadResult:
    messages: list[Message]
    next_offset: int


@dataclass
class _Reader:
    """A pooled consumer and, while idle, where it stands: the partition it is assigned and the
    offset of the next record it will hand out, plus records it fetched but did not return."""

    consumer: AsyncConsumer
    at: tuple[str, int, int] | None = None
    leftover: list[Message] = field(default_factory=list)


@dataclass
class ReaderPool:
    conf: dict[str, Any]
    executor: Executor
    size: int
    fetch_timeout_s: float
    # (earliest, latest) of a partition; not from the reading consumer (see ClusterAdmin.watermarks).
    watermarks: Callable[[str, int], Awaitable[tuple[int, int]]]
    # Longest wait for a free reader before a read is refused with 429.
    max_wait_s: float = 5.0
    _idle: list[_Reader] = field(default_factory=list)
    _sem: asyncio.Semaphore | None = None
    _closed: bool = False

    @staticmethod
    def reader_config(conf: dict[str, Any]) -> dict[str, Any]:
        conf = dict(conf)
        # If retention removes records between the watermark look-up and the fetch, restart at the
        # new beginning: the records' own offsets show the gap. librdkafka's default ("latest")
        # would jump to the end and silently skip everything in between.
        conf["auto.offset.reset"] = "earliest"
        conf["enable.partition.eof"] = "false"
        # An idle reader stays assigned (the next page of a paging client is then already fetched);
        # this bounds what it buffers meanwhile: pool_size x this.
        conf.setdefault("queued.max.messages.kbytes", "4096")
        # A request that moves a reader to another partition waits for the reader's outstanding
        # fetch to return first; the broker holds an empty fetch this long.
        conf["fetch.wait.max.ms"] = str(READER_FETCH_WAIT_MS)
        return conf

    def _take_idle(self, at: tuple[str, int, int]) -> _Reader | None:
        """The idle reader already standing at ``at`` if any, else the least recently used one."""
        for i, reader in enumerate(self._idle):
            if reader.at == at:
                return self._idle.pop(i)
        return self._idle.pop(0) if self._idle else None

    @asynccontextmanager
    async def _reader(self, at: tuple[str, int, int]) -> AsyncIterator[_Reader]:
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.size)
        try:
            # Long-polls hold their reader: past this wait, say "busy" rather than queue without end.
            await asyncio.wait_for(self._sem.acquire(), self.max_wait_s)
        except TimeoutError:
            raise errors.Backpressure(
                "Every stateless-read consumer of this instance is busy; retry shortly."
            ) from None
        try:
            if self._closed:
                raise errors.Unavailable("The gateway is shutting down.")
            reader = self._take_idle(at) or _Reader(await AsyncConsumer.create(self.conf, self.executor))
            healthy = False
            try:
                yield reader
                healthy = True
            finally:
                if healthy and not self._closed:
                    self._idle.append(reader)
                else:
                    await asyncio.shield(reader.consumer.close())
        finally:
            self._sem.release()

    async def read(
        self, topic: str, partition: int, offset: int | None, limit: int, max_bytes: int, wait_s: float
    ) -> ReadResult:
        """Records from ``offset`` (default: the partition's first), waiting up to ``wait_s`` at the end."""
        stop = asyncio.Event()
        task = asyncio.ensure_future(self._read(topic, partition, offset, limit, max_bytes, wait_s, stop))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            stop.set()  # the task ends at its next poll slice and returns its consumer
            raise

    async def _read(
        self,
        topic: str,
        partition: int,
        offset: int | None,
        limit: int,
        max_bytes: int,
        wait_s: float,
        stop: asyncio.Event,
    ) -> ReadResult:
        async with self._reader((topic, partition, -1 if offset is None else offset)) as reader:
            consumer = reader.consumer
            out: list[Message] = []
            size = 0
            pending: list[Message] = []
            high = -1
            if offset is not None and reader.at == (topic, partition, offset):
                # A paging client's next request: this consumer already stands there, with what
                # it fetched meanwhile; no watermark look-up unless nothing is there.
                pos = offset
                pending, reader.leftover = reader.leftover, []
            else:
                reader.at, reader.leftover = None, []
                low, high = await self.watermarks(topic, partition)
                pos = low if offset is None or offset < low else offset
                if pos > high:
                    raise errors.BadRequest(
                        f"Offset {offset} is past the end of partition {partition} (next offset {high})."
                    )
                if pos == high and wait_s <= 0:
                    return ReadResult([], pos)
                await consumer.assign([TopicPartition(topic, partition, pos)])
            deadline = 0.0
            full = False
            while len(out) < limit and not stop.is_set():
                want = limit - len(out)
                if pending:
                    msgs, pending = pending, []
                elif out or (high < 0 and deadline == 0.0):
                    # Something to return (or a continued read): take only what is already fetched.
                    msgs = await consumer.consume(want, 0)
                    if not msgs and not out:
                        # Nothing buffered for the continued read: learn where the end is.
                        high = (await self.watermarks(topic, partition))[1]
                        if pos == high and wait_s <= 0:
                            break
                        continue
                else:
                    if deadline == 0.0:
                        # Records below the high watermark exist: allow the fetch its time even
                        # if wait_s is shorter.
                        budget = wait_s if pos >= high else max(wait_s, self.fetch_timeout_s)
                        deadline = time.monotonic() + budget
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    # Below the high watermark ask for exactly what exists, so consume() returns as
                    # soon as it is there; at the end, return on the first new record.
                    n = min(want, high - pos) if pos < high else 1
                    msgs = await consumer.consume(n, min(POLL_SLICE_S, remaining))
                taken = 0
                full = False
                for i, msg in enumerate(msgs):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED and msg.topic() in (topic, None):
                            # Never an empty page that looks like the end: no retry reads this topic.
                            raise errors.KafkaDenied("read", topic, err.str())
                        continue  # transient broker trouble is reported in-band; librdkafka retries
                    m_offset = cast(int, msg.offset())
                    if msg.topic() != topic or msg.partition() != partition or m_offset < pos:
                        continue  # left over from an earlier assignment of this pooled consumer
                    if len(out) >= limit or (out and size + _size(msg) > max_bytes):
                        # Already taken from the consumer but not returned: kept for the next page.
                        reader.leftover = msgs[i:]
                        full = True
                        break
                    out.append(msg)
                    size += _size(msg)
                    pos = m_offset + 1
                    taken += 1
                if full or (out and taken == 0):
                    break
            if pending:
                reader.leftover = pending + reader.leftover
            if stop.is_set() or not (full or len(out) >= limit):
                # Abandoned (position unknown), or at the end of the partition: an idle reader left
                # there would keep long-polling the broker; unassigned it fetches nothing.
                reader.at, reader.leftover = None, []
                await consumer.assign([])
            else:
                # More records follow: stay, so the client's next page is likely fetched already.
                reader.at = (topic, partition, pos)
            return ReadResult(out, pos)

    async def close(self) -> None:
        """Close the idle consumers; busy ones close when their read ends. Safe to call twice."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(asyncio.shield(r.consumer.close()) for r in idle), return_exceptions=True)


def _size(msg: Message) -> int:
    key, value = msg.key(), msg.value()
    headers = cast("list[tuple[str, bytes | None]] | None", msg.headers()) or []
    return (
        (len(key) if key else 0) + (len(value) if value else 0) + sum(len(n) + (len(v) if v else 0) for n, v in headers)
    )
