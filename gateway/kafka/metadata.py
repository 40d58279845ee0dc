"""Cached cluster metadata: which topics exist, how many partitions each has, and whether Kafka answers.

Requests ask this cache, not the broker, so an unknown topic is a 404 in microseconds rather than a
metadata round trip (or the Confluent proxy's 60 s hang). A miss triggers at most one refresh at a
time, rate-limited, so a new topic becomes visible quickly without a flood of metadata requests.
The last successful refresh also drives readiness.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from gateway import errors

log = logging.getLogger(__name__)

# A miss may refresh metadata at most this often; more misses share the last answer.
MISS_REFRESH_INTERVAL_S = 0.05
METADATA_TIMEOUT_S = 5.0
# After a create or delete, ``settle`` waits this long at most for the cache to show it (so the very next
# produce sees it; KRaft brokers learn of a new topic milliseconds after the controller), asking this often.
SETTLE_S = 3.0
SETTLE_STEP_S = 0.05
# ``gone`` asks Kafka about one missing topic at most this often.
GONE_CHECK_INTERVAL_S = 5.0


@dataclass
class TopicInfo:
    name: str
    partitions: int
    internal: bool = False


@dataclass
class MetadataCache:
    admin: AdminClient
    executor: Executor
    refresh_s: float
    max_age_s: float
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    cluster_id: str | None = None
    brokers: dict[int, str] = field(default_factory=dict)
    controller_id: int = -1
    last_ok: float = 0.0
    last_error: str | None = "metadata not fetched yet"
    _last_attempt: float = 0.0
    _inflight: asyncio.Future[None] | None = None
    _gone_checked: dict[str, float] = field(default_factory=dict)

    async def refresh(self) -> None:
        """Fetch metadata now; concurrent callers share one request."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
            return
        loop = asyncio.get_running_loop()
        self._inflight = loop.create_future()
        self._last_attempt = time.monotonic()
        try:
            md = await loop.run_in_executor(self.executor, lambda: self.admin.list_topics(timeout=METADATA_TIMEOUT_S))
            self._apply(md)
        except Exception as exc:  # KafkaException or a transport error: record it, stay up
            self.last_error = f"Kafka metadata request failed: {exc}"
            log.warning("%s", self.last_error)
        finally:
            self._inflight.set_result(None)
            self._inflight = None

    def _apply(self, md: Any) -> None:
        if not md.brokers:
            self.last_error = "Kafka answered with no brokers"
            return
        self.topics = {
            name: TopicInfo(name, len(t.partitions), name.startswith("__"))
            for name, t in md.topics.items()
            if t.error is None
        }
        self.cluster_id = md.cluster_id
        self.controller_id = md.controller_id
        self.brokers = {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}
        self.last_ok = time.monotonic()
        self.last_error = None

    async def run(self) -> None:
        """Refresh forever every ``refresh_s``; cancelled by the lifespan on shutdown."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_s if self.last_error is None else min(self.refresh_s, 1.0))

    def fresh(self) -> bool:
        return self.last_ok > 0 and time.monotonic() - self.last_ok <= self.max_age_s

    def not_ready_reason(self) -> str | None:
        if self.last_error is not None:
            # The latest attempt failed: Kafka is unreachable now, whatever the cache still holds.
            return self.last_error
        age = time.monotonic() - self.last_ok
        if age > self.max_age_s:
            return f"Kafka metadata is {age:.0f} s old ({self.last_error or 'no answer'})"
        return None

    async def topic(self, name: str) -> TopicInfo:
        """The topic's cached metadata; refreshes once (rate-limited) on a miss."""
        info = self.topics.get(name)
        if info is not None:
            return info
        # A topic created a moment ago should work at once: refresh, but at most every
        # MISS_REFRESH_INTERVAL_S, so a flood of unknown names cannot flood the brokers.
        if self._inflight is not None:
            # A refresh already running may have started before the topic was created: let it
            # finish, and if it does not know the topic either, ask once more below.
            await asyncio.shield(self._inflight)
            info = self.topics.get(name)
            if info is not None:
                return info
        wait = self._last_attempt + MISS_REFRESH_INTERVAL_S - time.monotonic()
        if wait > 0 and self._inflight is None:
            await asyncio.sleep(wait)
        await self.refresh()
        info = self.topics.get(name)
        if info is not None:
            return info
        if not self.fresh():
            raise errors.Unavailable("Kafka is unreachable; cannot tell whether the topic exists.")
        raise errors.TopicNotFound(name)

    async def settle(self, name: str, present: bool, timeout_s: float = SETTLE_S) -> None:
        """Refresh until the cache shows ``name`` created (or gone), bounded in time: after an admin change
        the controller's answer reaches every broker's metadata a moment later."""
        deadline = time.monotonic() + timeout_s
        while True:
            await self.refresh()
            if (name in self.topics) == present or time.monotonic() >= deadline:
                return
            await asyncio.sleep(SETTLE_STEP_S)

    async def gone(self, name: str) -> bool:
        """Whether an open stream's topic was deleted: missing from the last refresh, which succeeded,
        and Kafka answers "unknown topic" when asked about it alone.

        librdkafka's consumer says nothing when an assigned topic is deleted (it waits for it), so
        streams ask this on idle polls; the first test is a dict lookup. A topic briefly without a
        leader also drops out of a refresh, hence the question to Kafka (at most every
        ``GONE_CHECK_INTERVAL_S`` per topic); any failure to get an answer means "not gone".
        """
        if name in self.topics or self.last_error is not None or not self.fresh():
            return False
        now = time.monotonic()
        if now - self._gone_checked.get(name, -GONE_CHECK_INTERVAL_S) < GONE_CHECK_INTERVAL_S:
            return False
        self._gone_checked[name] = now
        loop = asyncio.get_running_loop()
        try:
            md = await loop.run_in_executor(
                self.executor, lambda: self.admin.list_topics(topic=name, timeout=METADATA_TIMEOUT_S)
            )
        except Exception:  # KafkaException or a transport error: no answer
            return False
        found = md.topics.get(name)
        error = found.error if found is not None else None
        return error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART

    async def partition(self, topic: str, partition: int) -> TopicInfo:
        info = await self.topic(topic)
        if not 0 <= partition < info.partitions:
            raise errors.PartitionNotFound(topic, partition)
        return info
