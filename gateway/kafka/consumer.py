"""An asyncio face for a confluent-kafka Consumer whose blocking calls run on a bounded executor.

Construction, ``consume``, offset look-ups and ``close`` all block in librdkafka; each runs on the
gateway's dedicated Kafka executor, never on the event loop or asyncio's default executor. Calls on
one consumer are serialised by a lock, so ``close`` never races a ``consume`` still in a thread.

A consumer whose call failed is marked ``broken``; a pool (``gateway.kafka.pool``) closes such a
consumer instead of lending it again.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, Message, TopicPartition

from gateway import errors

log = logging.getLogger(__name__)
T = TypeVar("T")

EARLIEST = OFFSET_BEGINNING
LATEST = OFFSET_END
OFFSETS_TIMEOUT_S = 5.0
# Messages taken per call while emptying a consumer's queue after unassign, and the most calls made:
# a drain never loops without end behind a fetch that keeps delivering.
DRAIN_BATCH = 1000
DRAIN_MAX_CALLS = 100


class AsyncConsumer:
    """One Consumer; every call goes through ``_call`` on the Kafka executor, one at a time."""

    def __init__(self, consumer: Consumer, executor: Executor) -> None:
        self._consumer = consumer
        self._executor = executor
        self._lock = asyncio.Lock()
        self._closed = False
        # Set when a call failed (or its user saw a fatal error): not to be reused, only closed.
        self.broken = False

    @classmethod
    async def create(cls, conf: dict[str, Any], executor: Executor) -> AsyncConsumer:
        loop = asyncio.get_running_loop()
        consumer = await loop.run_in_executor(executor, Consumer, conf)
        return cls(consumer, executor)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            if self._closed:
                raise errors.Unavailable("The stream's Kafka consumer is closed.")
            fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
            try:
                return await asyncio.shield(fut)
            except Exception:
                self.broken = True
                raise
            except asyncio.CancelledError:
                # A thread cannot be interrupted: keep the lock until the call returns (bounded by its
                # own timeout), so a close() after a cancelled stream never overlaps a consume().
                await _wait_uncancelled(fut)
                raise

    async def connect(self) -> None:
        """Bootstrap and fetch metadata now, so a later assign() fetches over open connections."""
        await self._call(lambda: self._consumer.list_topics(timeout=OFFSETS_TIMEOUT_S))

    async def assign(self, partitions: Sequence[TopicPartition]) -> None:
        await self._call(self._consumer.assign, list(partitions))

    async def reset(self) -> int:
        """Unassign everything and empty the queue, so the next user sees nothing of the last one.

        librdkafka discards what the old assignment fetched (queued or still in flight) by its
        partition's op version, and ``consume`` skips such outdated messages; the drain also takes
        away errors and events queued for the old partitions. Returns how many were still delivered
        after unassign (records only; expected 0).
        """
        return await self._call(_unassign_and_drain, self._consumer)

    async def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        await self._call(lambda: self._consumer.subscribe(topics, **callbacks))

    async def consume(self, max_records: int, timeout_s: float) -> list[Message]:
        """Up to ``max_records`` as soon as one is there; waits at most ``timeout_s`` for the first."""
        return await self._call(_consume_ready, self._consumer, max_records, timeout_s)

    async def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        tp = TopicPartition(topic, partition)
        low, high = await self._call(lambda: self._consumer.get_watermark_offsets(tp, OFFSETS_TIMEOUT_S))
        return int(low), int(high)

    async def offsets_for_time(self, topic: str, partitions: Sequence[int], ts_ms: int) -> dict[int, int]:
        """First offset at or after ``ts_ms`` per partition; -1 where no record is that recent."""
        tps = [TopicPartition(topic, p, ts_ms) for p in partitions]
        found = await self._call(lambda: self._consumer.offsets_for_times(tps, OFFSETS_TIMEOUT_S))
        return {tp.partition: tp.offset for tp in found}

    async def commit(self, offsets: Sequence[TopicPartition], asynchronous: bool = False) -> None:
        if asynchronous:
            await self._call(lambda: self._consumer.commit(offsets=list(offsets), asynchronous=True))
        else:
            await self._call(lambda: self._consumer.commit(offsets=list(offsets), asynchronous=False))

    async def committed(self, partitions: Sequence[TopicPartition]) -> list[TopicPartition]:
        return await self._call(lambda: self._consumer.committed(list(partitions), OFFSETS_TIMEOUT_S))

    async def close(self) -> None:
        """Close once; waits for a running call to finish first. Safe to call twice."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            await asyncio.get_running_loop().run_in_executor(self._executor, self._consumer.close)

    @property
    def raw(self) -> Consumer:
        """The wrapped client, for callbacks that librdkafka invokes inside ``consume``."""
        return self._consumer

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn("AsyncConsumer was never closed", ResourceWarning, stacklevel=1)


def _consume_ready(consumer: Consumer, max_records: int, timeout_s: float) -> list[Message]:
    # librdkafka's consume(n, timeout) waits until it has n messages or the timeout passed, which
    # would hold every quiet stream's first event for the whole timeout. Wait for one, then take
    # whatever else is already fetched without waiting.
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    if max_records <= 1:
        return [first]
    return [first, *consumer.consume(max_records - 1, 0)]


def _unassign_and_drain(consumer: Consumer) -> int:
    consumer.unassign()
    records = 0
    for _ in range(DRAIN_MAX_CALLS):
        got = consumer.consume(DRAIN_BATCH, 0)
        if not got:
            break
        # Error events (a broker connection lost, ...) are harmless to drop; records are counted.
        records += sum(1 for m in got if m.error() is None)
    return records


async def _wait_uncancelled(fut: asyncio.Future[Any]) -> None:
    while not fut.done():
        try:
            await asyncio.wait([fut])
        except asyncio.CancelledError:
            continue


def is_partition_eof(err: KafkaError | None) -> bool:
    return err is not None and err.code() == KafkaError._PARTITION_EOF
