"""SSE streams with ``group=<id>``: Kafka's group protocol splits partitions among the group's streams.

Streams of one group, on any number of gateway processes, ``subscribe()`` to the topic; the broker
assigns each a share of the partitions. A stream starts every partition it gets at the group's
committed offset (or at ``from=`` where the group has none), and commits the next offset of what it
has written to its socket after each write: at-least-once, and a reconnect continues where the
group left off. On a rebalance the revoked partitions' written offsets are committed synchronously
before the broker hands them to another member, so a partition changes hands without a gap and
without a repeat of what was written.

The rebalance callbacks run inside ``consume()`` on the Kafka executor while the stream's coroutine
awaits that very call, so they never run concurrently with the coroutine's own use of the state.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator

import msgspec
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition

from gateway import cursor, errors, streams
from gateway.kafka.consumer import OFFSETS_TIMEOUT_S, AsyncConsumer

log = logging.getLogger(__name__)

MAX_GROUP_CHARS = 249


def parse_group(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > MAX_GROUP_CHARS or not value.isprintable():
        raise errors.BadRequest(f"'group' must be 1 to {MAX_GROUP_CHARS} printable characters.")
    return value


class GroupStream:
    """One member of a consumer group and what it has written: positions per owned partition."""

    def __init__(self, consumer: AsyncConsumer, spec: streams.StreamSpec) -> None:
        self.consumer = consumer
        self.spec = spec
        self.owned: set[int] = set()
        # Next offset per owned partition after the last record encoded (what cursors carry).
        self.positions: dict[int, int] = {}
        # Next offset per partition after the last record written to the socket (what is committed).
        self.written_offsets: dict[int, int] = {}
        # Advanced by the chunk now being written; becomes written once the write returns.
        self._pending: dict[int, int] = {}

    async def join(self) -> None:
        await self.consumer.subscribe([self.spec.topic.name], on_assign=self._on_assign, on_revoke=self._on_revoke)

    # --- rebalance callbacks: librdkafka calls them inside consume(), on the executor thread ---

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        try:
            starts = self._start_offsets(consumer, partitions)
        except KafkaException as exc:
            # Kafka's own reset policy still gives a sane start; the cursor fills in on the first record.
            log.warning("group %s: start offsets unavailable (%s)", self.spec.topic.name, exc)
            starts = {tp.partition: OFFSET_INVALID for tp in partitions}
        topic = self.spec.topic.name
        consumer.assign([TopicPartition(topic, p, off) for p, off in starts.items()])
        for p, off in starts.items():
            self.owned.add(p)
            if off >= 0:
                self.positions[p] = off

    def _start_offsets(self, consumer: Consumer, partitions: list[TopicPartition]) -> dict[int, int]:
        """The group's committed offset, else ``from=``, resolved to exact offsets for the cursor."""
        topic = self.spec.topic.name
        committed = consumer.committed([TopicPartition(topic, tp.partition) for tp in partitions], OFFSETS_TIMEOUT_S)
        starts = {tp.partition: tp.offset for tp in committed}
        fresh = [p for p, off in starts.items() if off < 0]
        found: dict[int, int] = {}
        if fresh and self.spec.start_ms is not None:
            wanted = [TopicPartition(topic, p, self.spec.start_ms) for p in fresh]
            found = {tp.partition: tp.offset for tp in consumer.offsets_for_times(wanted, OFFSETS_TIMEOUT_S)}
        for p in fresh:
            if found.get(p, -1) >= 0:
                starts[p] = found[p]
                continue
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), OFFSETS_TIMEOUT_S)
            starts[p] = low if self.spec.start == "earliest" else high
        return starts

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = {tp.partition for tp in partitions}
        done = {p: off for p, off in self.written_offsets.items() if p in revoked}
        if done:
            try:
                self._commit_now(consumer, done)
            except KafkaException as exc:
                # The next owner repeats what was written since the last commit: at-least-once.
                log.warning("group commit on revoke failed: %s", exc)
        for p in revoked:
            self.owned.discard(p)
            self.positions.pop(p, None)
            self.written_offsets.pop(p, None)
        consumer.unassign()

    def _commit_now(self, consumer: Consumer, offsets: dict[int, int]) -> None:
        topic = self.spec.topic.name
        consumer.commit(offsets=[TopicPartition(topic, p, off) for p, off in offsets.items()], asynchronous=False)

    # --- the stream's side, on the event loop ---

    async def frames(self, batch: int, poll_s: float) -> AsyncGenerator[tuple[bytes, int], None]:
        """Endless (chunk, events); the caller calls ``written()`` once a chunk is on the socket."""
        topic_json = msgspec.json.encode(self.spec.topic.name)
        size = batch
        while True:
            msgs = await self.consumer.consume(size, poll_s)
            before = dict(self.positions)
            chunk, events = streams.encode_batch(self.spec, topic_json, self.positions, msgs, self.owned)
            if msgs:
                size = streams.next_batch(batch, len(chunk), events)
            for p, off in self.positions.items():
                if before.get(p) != off:
                    self._pending[p] = off
            yield chunk, events

    def cursor(self) -> str:
        return cursor.encode(self.spec.topic.name, self.positions)

    async def written(self) -> None:
        """The last chunk reached the socket: commit its offsets (asynchronously; ordered per group)."""
        if not self._pending:
            return
        self.written_offsets.update(self._pending)
        offsets = [TopicPartition(self.spec.topic.name, p, off) for p, off in self._pending.items()]
        self._pending = {}
        await self.consumer.commit(offsets, asynchronous=True)

    async def close(self) -> None:
        """Commit what was written, leave the group (its revoke commits too) and close the consumer."""
        try:
            if self.written_offsets:
                offsets = [TopicPartition(self.spec.topic.name, p, off) for p, off in self.written_offsets.items()]
                await self.consumer.commit(offsets)
        except (KafkaException, errors.GatewayError) as exc:
            log.warning("group commit on close failed: %s", exc)
        finally:
            await self.consumer.close()
