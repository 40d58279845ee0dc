"""Producing validated records: partition checks, the all-or-nothing reservation, and outcomes."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from gateway import errors
from gateway.kafka.metadata import MetadataCache, TopicInfo
from gateway.kafka.producer import Delivered, GatewayProducer
from gateway.records import OutRecord

Outcome = Delivered | errors.GatewayError
Pending = asyncio.Future[Delivered] | errors.GatewayError


def _swallow(fut: asyncio.Future[Delivered]) -> None:
    # Async produce: nobody awaits the outcome; retrieve it so asyncio does not log it as lost.
    if not fut.cancelled():
        fut.exception()


@dataclass
class Publisher:
    producer: GatewayProducer
    metadata: MetadataCache

    async def topic(self, name: str) -> TopicInfo:
        return await self.metadata.topic(name)

    def submit(self, topic: TopicInfo, records: Sequence[OutRecord]) -> list[Pending]:
        """Hand every record to the producer, or none of them (429 when over the in-flight bounds)."""
        self.producer.reserve(len(records), sum(r.size for r in records))
        pending: list[Pending] = []
        produce = self.producer.produce
        for rec in records:
            if rec.partition is not None and rec.partition >= topic.partitions:
                pending.append(errors.PartitionNotFound(topic.name, rec.partition))
                continue
            try:
                pending.append(
                    produce(
                        topic.name,
                        rec.value,
                        rec.key,
                        partition=rec.partition,
                        timestamp=rec.timestamp,
                        headers=rec.headers,
                    )
                )
            except errors.GatewayError as exc:
                pending.append(exc)
        return pending

    @staticmethod
    def detach(pending: Sequence[Pending]) -> None:
        """Let records complete in the background (``async=true``)."""
        for p in pending:
            if isinstance(p, asyncio.Future):
                p.add_done_callback(_swallow)

    @staticmethod
    async def outcomes(pending: Sequence[Pending]) -> list[Outcome]:
        """Wait for every delivery report; each record's own success or error, in input order."""
        futures = [p for p in pending if isinstance(p, asyncio.Future)]
        if futures:
            await asyncio.wait(futures)
        out: list[Outcome] = []
        for p in pending:
            if isinstance(p, errors.GatewayError):
                out.append(p)
            else:
                exc = p.exception()
                out.append(p.result() if exc is None else exc)  # type: ignore[arg-type]
        return out


@dataclass
class _Entry:
    fingerprint: bytes
    expires: float
    answer: asyncio.Future[tuple[int, bytes]]


class IdempotencyStore:
    """Per-process memory of answers by ``Idempotency-Key``: bounded in count, expiring in time.

    A retry with the same key and body gets the first answer (waiting for it if the first request is
    still running) and produces nothing; the same key with another body is refused.
    """

    def __init__(self, window_s: float, max_keys: int) -> None:
        self._window_s = window_s
        self._max_keys = max_keys
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.expires > now and len(entries) <= self._max_keys:
                break
            del entries[key]

    def begin(self, key: str, scope: str, body: bytes) -> asyncio.Future[tuple[int, bytes]] | None:
        """The first answer's future if this is a retry; otherwise ``None`` and the key is reserved."""
        now = time.monotonic()
        self._expire(now)
        fingerprint = hashlib.sha256(scope.encode() + b"\0" + body).digest()
        entry = self._entries.get(key)
        if entry is not None:
            if entry.fingerprint != fingerprint:
                raise errors.InvalidRecord(
                    "This Idempotency-Key was already used with a different request; use a new key."
                )
            return entry.answer
        self._entries[key] = _Entry(fingerprint, now + self._window_s, asyncio.get_running_loop().create_future())
        return None

    def finish(self, key: str, status: int, body: bytes) -> None:
        entry = self._entries.get(key)
        if entry is None or entry.answer.done():
            return
        if status >= 500 or status == 429:
            # A failure worth retrying is not remembered: the next retry really tries again.
            del self._entries[key]
        entry.answer.set_result((status, body))
