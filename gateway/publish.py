"""Producing validated records: partition checks, the all-or-nothing reservation, and outcomes."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway import errors
from gateway._records import beyond, total_size
from gateway.kafka.admin import ClusterAdmin, valid_topic_name
from gateway.kafka.delivery import Batch, Delivered, DeliveryHook, Outcome, Prepared
from gateway.kafka.metadata import MetadataCache, TopicInfo
from gateway.kafka.producer import GatewayProducer
from gateway.metrics import Metrics

__all__ = [
    "Batch",
    "Delivered",
    "IdempotencyStore",
    "InOrder",
    "Outcome",
    "Publisher",
    "TopicAutoCreate",
    "delivery_metrics",
]

T = TypeVar("T")
log = logging.getLogger(__name__)


def delivery_metrics(metrics: Metrics) -> DeliveryHook:
    """The producer's per-batch hook: one counter update per completed batch, not per record."""
    produced, produced_bytes, failures = metrics.records_produced, metrics.bytes_produced, metrics.delivery_errors
    # The two counters' children per topic label (``.labels()`` costs more than the increment; labels are
    # bounded by ``Metrics.topic_label``).
    children: dict[str, tuple[Any, Any]] = {}

    def on_delivery(topic: str, records: int, size: int, errors_by_name: dict[str, int]) -> None:
        if records:
            label = metrics.topic_label(topic)
            pair = children.get(label)
            if pair is None:
                pair = children[label] = (produced.labels(label), produced_bytes.labels(label))
            pair[0].inc(records)
            pair[1].inc(size)
        for name, count in errors_by_name.items():
            failures.labels(name).inc(count)

    return on_delivery


class TopicAutoCreate:
    """Creates a topic the first time something is produced to it (``GATEWAY_PRODUCE__AUTO_CREATE_TOPICS``).

    Concurrent requests for one new topic share one creation; another gateway process creating it at the
    same moment is fine (Kafka's "already exists" counts as done). Kafka's refusals (the gateway's user
    lacking the Create right, a policy) reach the client with Kafka's reason.
    """

    def __init__(
        self, admin: ClusterAdmin, metadata: MetadataCache, partitions: int | None, replication_factor: int | None
    ) -> None:
        self._admin = admin
        self._metadata = metadata
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._pending: dict[str, asyncio.Future[None]] = {}

    async def __call__(self, name: str) -> None:
        if not valid_topic_name(name):
            raise errors.TopicNotFound(name)  # a name Kafka refuses can never exist: no round trip
        pending = self._pending.get(name)
        if pending is None:
            pending = self._pending[name] = asyncio.ensure_future(self._create(name))
            pending.add_done_callback(functools.partial(self._done, name))
        await asyncio.shield(pending)

    def _done(self, name: str, task: asyncio.Future[None]) -> None:
        del self._pending[name]
        if not task.cancelled():
            task.exception()  # seen by whoever awaited it; retrieved here too, in case every waiter left

    async def _create(self, name: str) -> None:
        try:
            await self._admin.create_topic(name, self._partitions, self._replication_factor, {})
            log.info("created topic '%s' on first produce (GATEWAY_PRODUCE__AUTO_CREATE_TOPICS)", name)
        except errors.Conflict:
            pass  # created meanwhile, by another gateway process or an operator
        await self._metadata.settle(name, present=True)


@dataclass
class Publisher:
    producer: GatewayProducer
    metadata: MetadataCache
    # Set when the operator turned on auto-creation: produce to an unknown topic creates it.
    auto_create: Callable[[str], Awaitable[None]] | None = None

    async def topic(self, name: str) -> TopicInfo:
        try:
            return await self.metadata.topic(name)
        except errors.TopicNotFound:
            if self.auto_create is None:
                raise
        await self.auto_create(name)
        return await self.metadata.topic(name)

    def submit(
        self,
        topic: TopicInfo,
        records: Sequence[Prepared],
        *,
        wait: bool = True,
        failed: Sequence[tuple[int, errors.GatewayError]] = (),
    ) -> Batch:
        """Hand every record to the producer, or none of them (429 when over the in-flight bounds).

        A record naming a partition the topic does not have gets its own 40402 result; the others
        are produced. ``failed`` pre-fills results for records that already failed validation
        (NDJSON lines), so their position in the output is kept.
        """
        self.producer.reserve(len(records), total_size(records))
        results: list[Outcome | None] = [None] * len(records)
        for i, err in failed:
            results[i] = err
        for i in beyond(records, topic.partitions):
            results[i] = errors.PartitionNotFound(topic.name, records[i][3])
        return self.producer.produce_batch(topic.name, records, results, wait=wait)

    @staticmethod
    async def settled(batch: Batch) -> Batch:
        """Wait for every delivery report of ``batch``."""
        if batch.future is not None:
            await batch.future
        return batch

    @staticmethod
    async def outcomes(batch: Batch) -> list[Outcome]:
        """Wait for every delivery report; each record's own success or error, in input order."""
        return (await Publisher.settled(batch)).outcomes()


@dataclass
class _Entry:
    fingerprint: bytes
    expires: float
    answer: asyncio.Future[tuple[int, bytes]]


class IdempotencyStore:
    """Per-process memory of answers by ``Idempotency-Key``: bounded in count, expiring in time.

    A retry with the same key and body gets the first answer (waiting for it if the first request is
    still running) and produces nothing; the same key with another body is refused. Answers that
    ask for a retry (429, 5xx) are not remembered, so the retry really tries again.
    """

    def __init__(self, window_s: float, max_keys: int) -> None:
        self._window_s = window_s
        self._max_keys = max_keys
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _expire(self, now: float) -> None:
        # Entries are in insertion order and all live equally long, so the oldest expire first.
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.expires > now and len(entries) < self._max_keys:
                break
            del entries[key]

    def begin(self, key: str, scope: str, body: bytes) -> tuple[bool, asyncio.Future[tuple[int, bytes]]]:
        """``(first, answer)``: ``first`` when this request must do the work and then ``finish``;
        otherwise ``answer`` is (or will be) the first request's (status, body)."""
        now = time.monotonic()
        fingerprint = hashlib.sha256(scope.encode() + b"\0" + body).digest()
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now:
            if entry.fingerprint != fingerprint:
                raise errors.InvalidRecord(
                    "This Idempotency-Key was already used with a different request body, topic or format; "
                    "use a new key for a new request."
                )
            return False, entry.answer
        self._entries.pop(key, None)
        self._expire(now)
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._entries[key] = _Entry(fingerprint, now + self._window_s, answer)
        return True, answer

    def finish(self, key: str, answer: asyncio.Future[tuple[int, bytes]], status: int, body: bytes) -> None:
        """Record the first request's answer; waiting retries get it even if the key was evicted."""
        entry = self._entries.get(key)
        if (status >= 500 or status == 429) and entry is not None and entry.answer is answer:
            del self._entries[key]
        if not answer.done():
            answer.set_result((status, body))


class InOrder(Generic[T]):
    """Streamed produce (native NDJSON, Confluent v3): batches answered in input order as they complete.

    A reader task turns the request body into batches and ``add``s them, each with the caller's
    context ``T`` (what it needs to encode the answers) and its record count; ``wait_for_room``
    bounds the records in flight to ``window``. The writer iterates ``run(reader)``, which yields each
    run of completed batches at the head of the line. Reading and writing run side by side, so a
    client that waits for one answer before sending its next record is served.
    """

    def __init__(self, window: int) -> None:
        self._window = window
        self._pending: deque[tuple[Batch, T, int]] = deque()
        self._changed = asyncio.Event()  # a batch was added, or the reader ended
        self._room = asyncio.Event()  # the writer freed room in the window
        self._in_flight = 0
        self._reader_done = False

    def add(self, batch: Batch, context: T, records: int) -> None:
        self._pending.append((batch, context, records))
        self._in_flight += records
        self._changed.set()

    async def wait_for_room(self) -> None:
        while self._in_flight >= self._window:
            self._room.clear()
            await self._room.wait()

    async def _read(self, reader: Callable[[], Awaitable[None]]) -> None:
        try:
            await reader()
        finally:
            self._reader_done = True
            self._changed.set()

    async def run(self, reader: Callable[[], Awaitable[None]]) -> AsyncIterator[list[tuple[Batch, T]]]:
        task = asyncio.create_task(self._read(reader))
        pending = self._pending
        try:
            while True:
                while not pending:
                    if self._reader_done:
                        return
                    self._changed.clear()
                    await self._changed.wait()
                head = pending[0][0].future
                if head is not None and not head.done():
                    await head
                done: list[tuple[Batch, T]] = []
                while pending and (pending[0][0].future is None or pending[0][0].future.done()):
                    batch, context, records = pending.popleft()
                    self._in_flight -= records
                    done.append((batch, context))
                self._room.set()
                yield done
        finally:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
