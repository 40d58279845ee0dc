"""One Confluent v2 consumer instance: its Kafka consumer, what it buffered and what it returned.

No HTTP here: errors are the gateway's domain errors. Every blocking librdkafka call runs on the
gateway's Kafka executor; the calls of one instance are serialised by its lock, so a close never
overlaps a consume still running in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from typing import Any, Literal, TypeVar

from confluent_kafka import KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from gateway import errors
from gateway.consumers.config import InstanceConfig
from gateway.consumers.progress import TP, Progress, tp_of
from gateway.kafka.consumer import AsyncConsumer
from gateway.settings import ConfluentSettings

T = TypeVar("T")


async def _uncancelled(fut: asyncio.Future[Any]) -> None:
    while not fut.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([fut])


class ConsumerInstance:
    """One named consumer of a group: its Kafka consumer, its buffer and what it returned."""

    def __init__(
        self,
        group: str,
        name: str,
        config: InstanceConfig,
        consumer: AsyncConsumer,
        executor: Executor,
        settings: ConfluentSettings,
    ) -> None:
        self.group = group
        self.name = name
        self.config = config
        self._consumer = consumer
        self._executor = executor
        self._settings = settings
        self._lock = asyncio.Lock()
        self._closed = False
        self._progress = Progress()
        self._mode: Literal["none", "subscribe", "assign"] = "none"
        self._topics: list[str] = []
        self._pattern: str | None = None
        self.last_used = time.monotonic()

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call on the Kafka executor; a cancelled caller still waits for the thread."""
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            await _uncancelled(fut)
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise errors.ConsumerInstanceNotFound("Consumer instance not found.")

    async def _assignment(self) -> list[TP]:
        parts = await self._blocking(self._consumer.raw.assignment)
        return sorted((tp.topic, tp.partition) for tp in parts)

    # -- subscription and assignment ------------------------------------------------------------

    async def subscribe(self, topics: Sequence[str] | None, pattern: str | None) -> None:
        async with self._lock:
            self._check_open()
            if self._mode == "assign":
                raise errors.ConsumerStateConflict(
                    "Subscription to topics, partitions and pattern are mutually exclusive: "
                    "this instance has manually assigned partitions."
                )
            if topics and pattern:
                raise errors.ConsumerStateConflict("Give either 'topics' or 'topic_pattern', not both.")
            if not topics and not pattern:
                raise errors.InvalidRecord("A subscription needs 'topics' (a non-empty list) or 'topic_pattern'.")
            # librdkafka reads a name starting with '^' as a regex; the Confluent proxy matches
            # the Java pattern against the whole topic name, hence the anchors.
            names = list(topics) if topics else [f"^({pattern})$"]
            try:
                await self._consumer.subscribe(names, on_revoke=self._progress.on_revoke)
            except KafkaException as exc:
                raise errors.InvalidRecord(f"Kafka refused the subscription: {exc.args[0].str()}.") from None
            self._mode = "subscribe"
            self._topics = list(topics or [])
            self._pattern = pattern
            self.touch()

    async def subscription(self) -> list[str]:
        async with self._lock:
            self._check_open()
            self.touch()
            if self._mode != "subscribe":
                return []
            if self._pattern is None:
                return list(self._topics)
            # The topics the pattern currently matches, as far as this member is assigned them.
            return sorted({t for t, _ in await self._assignment()})

    async def unsubscribe(self) -> None:
        async with self._lock:
            self._check_open()
            if self._mode == "subscribe":
                await self._blocking(self._consumer.raw.unsubscribe)
                self._progress.clear()
                self._mode = "none"
                self._topics, self._pattern = [], None
            self.touch()

    async def assign(self, partitions: Sequence[TP]) -> None:
        async with self._lock:
            self._check_open()
            if self._mode == "subscribe":
                raise errors.ConsumerStateConflict(
                    "Subscription to topics, partitions and pattern are mutually exclusive: "
                    "this instance is subscribed."
                )
            await self._reassign(list(dict.fromkeys(partitions)), {})
            self.touch()

    async def _reassign(self, wanted: list[TP], new_offsets: dict[TP, int]) -> None:
        """(Re)assign ``wanted``; partitions kept continue where the client is, not where Kafka is."""
        tps = [
            KafkaTopicPartition(t, p, new_offsets.get((t, p), self._progress.resume_offset((t, p)))) for t, p in wanted
        ]
        await self._consumer.assign(tps)
        # librdkafka refetches from each partition's new start: nothing buffered is still valid.
        self._progress.reassigned(wanted)
        self._mode = "assign" if wanted else "none"

    async def assignment(self) -> list[TP]:
        async with self._lock:
            self._check_open()
            self.touch()
            return await self._assignment()

    # -- positions ------------------------------------------------------------------------------

    async def seek(self, offsets: Iterable[tuple[str, int, int]]) -> None:
        """Next fetch of each partition starts at the offset (or OFFSET_BEGINNING / OFFSET_END)."""
        wanted = {(t, p): o for t, p, o in offsets}
        async with self._lock:
            self._check_open()
            self._progress.drain_revoked()
            assigned = set(await self._assignment())
            missing = sorted(set(wanted) - assigned)
            if missing:
                names = ", ".join(f"{t}-{p}" for t, p in missing)
                raise errors.ConsumerStateConflict(f"Illegal state: No current assignment for partition(s) {names}.")
            if self._mode == "assign":
                # Re-assigning at the new offsets works even before the first fetch, where
                # librdkafka's seek() would find no fetcher yet.
                await self._reassign(sorted(assigned), wanted)
            else:
                for (t, p), o in wanted.items():
                    try:
                        await self._blocking(self._consumer.raw.seek, KafkaTopicPartition(t, p, o))
                    except KafkaException as exc:
                        raise errors.ConsumerStateConflict(f"Illegal state: {exc.args[0].str()}.") from None
                self._progress.seeked(wanted)
            self.touch()

    async def seek_to(self, partitions: Iterable[TP], end: bool) -> None:
        """Seek to each partition's first offset, or to its end (the next record written)."""
        # Resolved to absolute offsets here: librdkafka's logical OFFSET_END seek did not reliably
        # deliver a record written right after it, and the watermarks are what Java resolves to.
        targets = []
        for t, p in dict.fromkeys(partitions):
            try:
                low, high = await self._consumer.watermarks(t, p)
            except KafkaException as exc:
                raise errors.Unavailable(f"Kafka did not answer for offsets of {t}-{p}: {exc.args[0].str()}.") from None
            targets.append((t, p, high if end else low))
        await self.seek(targets)

    # -- offsets --------------------------------------------------------------------------------

    async def commit(self, offsets: Sequence[tuple[str, int, int, str | None]] | None) -> None:
        """Commit the given offsets (as the Confluent proxy: the next record is ``offset + 1``), or
        without any, every record returned to the client so far."""
        async with self._lock:
            self._check_open()
            self._progress.drain_revoked()
            if offsets is None:
                tps = [KafkaTopicPartition(t, p, o) for (t, p), o in sorted(self._progress.returned.items())]
            else:
                tps = [
                    KafkaTopicPartition(t, p, o + 1, metadata=m) if m is not None else KafkaTopicPartition(t, p, o + 1)
                    for t, p, o, m in offsets
                ]
            if tps:
                try:
                    await self._consumer.commit(tps)
                except KafkaException as exc:
                    raise errors.Unavailable(f"Kafka did not accept the commit: {exc.args[0].str()}.") from None
            self.touch()

    async def committed(self, partitions: Sequence[TP] | None) -> list[tuple[str, int, int, str]]:
        """Last committed offsets (by anyone in the group); partitions without one are left out."""
        async with self._lock:
            self._check_open()
            wanted = list(partitions) if partitions is not None else await self._assignment()
            self.touch()
            if not wanted:
                return []
            try:
                found = await self._consumer.committed([KafkaTopicPartition(t, p) for t, p in wanted])
            except KafkaException as exc:
                raise errors.Unavailable(f"Kafka did not answer for committed offsets: {exc.args[0].str()}.") from None
            return [
                (tp.topic, tp.partition, int(tp.offset), tp.metadata or "")
                for tp in found
                if tp.error is None and tp.offset >= 0
            ]

    # -- records --------------------------------------------------------------------------------

    async def fetch(self, timeout_ms: int | None, max_bytes: int | None) -> list[Message]:
        """Records for one response: at most ``max_bytes`` of keys and values, but at least one record
        when any is available; the rest stays buffered for the next fetch."""
        cfg = self._settings
        wait_ms = self.config.request_timeout_ms
        if timeout_ms is not None and timeout_ms > 0:
            # As in the Confluent proxy, the request may only shorten the instance's wait.
            wait_ms = min(timeout_ms, wait_ms)
        limit = (
            cfg.max_response_bytes if max_bytes is None or max_bytes <= 0 else min(max_bytes, cfg.max_response_bytes)
        )
        min_bytes = self.config.fetch_min_bytes
        async with self._lock:
            self._check_open()
            self.touch()
            deadline = time.monotonic() + wait_ms / 1000
            out: list[Message] = []
            size = 0
            revoked: set[TP] = set()
            while True:
                revoked |= self._progress.drain_revoked()
                size, full = self._progress.take(out, size, limit)
                if full or size >= limit or (out and (min_bytes < 0 or size > min_bytes)):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._mode == "none":
                    break
                msgs = await self._consumer.consume(cfg.fetch_batch_records, min(remaining, cfg.poll_slice_s))
                self._progress.add(msgs, self.group, self.name)
            revoked |= self._progress.drain_revoked()
            stored: dict[TP, int] = {}
            for m in out:
                stored[tp_of(m)] = int(m.offset() or 0) + 1
            if revoked:
                # Offsets of partitions owned by another member now are not ours to commit.
                assigned = set(await self._assignment())
                stored = {tp: o for tp, o in stored.items() if tp in assigned}
            self._progress.returned.update(stored)
            if stored and self.config.auto_commit:
                # Auto-commit commits stored offsets only: exactly the records returned so far.
                tps = [KafkaTopicPartition(t, p, o) for (t, p), o in stored.items()]
                with contextlib.suppress(KafkaException):
                    await self._blocking(lambda: self._consumer.raw.store_offsets(offsets=tps))
            self.touch()
            return out

    # -- lifetime -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close once (leaves the group); waits for a running call first. Safe to call twice."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            self._progress.buffer.clear()
        await self._consumer.close()
