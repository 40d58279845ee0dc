"""Partition offsets looked up through the process's long-lived admin client.

A stream's start positions come from here rather than from the stream's own new consumer: that one
would first have to bootstrap, fetch metadata and connect to every leader (~40-100 ms on a local
broker), while the admin client is connected already and asks each leader once for all of its
partitions. ``list_offsets`` only queues the request; the answers arrive as futures, so nothing here
blocks the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from gateway import errors

OFFSETS_TIMEOUT_S = 5.0


class Offsets:
    def __init__(self, admin: AdminClient, timeout_s: float = OFFSETS_TIMEOUT_S) -> None:
        self._admin = admin
        self._timeout_s = timeout_s

    async def _lookup(self, topic: str, partitions: Sequence[int], spec: OffsetSpec) -> dict[int, int]:
        if not partitions:
            return {}
        wanted = {TopicPartition(topic, p): spec for p in partitions}
        try:
            futures = self._admin.list_offsets(wanted, request_timeout=self._timeout_s)
            results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures.values()))
        except KafkaException as exc:
            raise errors.Unavailable(f"Kafka did not answer an offsets request for '{topic}': {exc}") from None
        return {tp.partition: int(res.offset) for tp, res in zip(futures, results, strict=True)}

    async def earliest(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        return await self._lookup(topic, partitions, OffsetSpec.earliest())  # type: ignore[no-untyped-call]

    async def latest(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        return await self._lookup(topic, partitions, OffsetSpec.latest())  # type: ignore[no-untyped-call]

    async def at_time(self, topic: str, partitions: Sequence[int], ts_ms: int) -> dict[int, int]:
        """First offset at or after ``ts_ms``; -1 where no record is that recent."""
        return await self._lookup(topic, partitions, OffsetSpec.for_timestamp(ts_ms))
