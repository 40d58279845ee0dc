"""Every SSE stream of the process: the cap, the drain on shutdown, and the shared fan-out feeds.

Streams that start at ``latest`` without a group and ask for the same topic, partitions, formats
and filters share one assign-mode Kafka consumer (a *feed*). The feed encodes each poll once into
one chunk of frames and hands the very same bytes object to every subscriber.

A subscriber holds a bounded buffer of events not yet written to its socket. When a new chunk
would push it over ``subscriber_buffer``, the feed drops it on the spot (its buffer is freed and
it is told ``slow consumer``); the feed never waits for any subscriber. The feed's consumer closes
when its last subscriber leaves. An evicted client loses nothing: its last event id resumes it
exactly, on this or any other process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import Executor
from typing import Any

import msgspec

from gateway import errors, sse, streams
from gateway.feed import Feed, FeedKey, Subscription
from gateway.kafka.consumer import AsyncConsumer
from gateway.kafka.metadata import MetadataCache
from gateway.kafka.offsets import Offsets
from gateway.metrics import Metrics
from gateway.settings import SseSettings

log = logging.getLogger(__name__)

__all__ = ["Slot", "StreamHub", "Subscription"]

# How long closing the hub waits for feeds to stop (each stops within one poll).
CLOSE_TIMEOUT_S = 5.0
# A warm consumer older than this is replaced rather than used: brokers close connections idle for
# 10 minutes (connections.max.idle.ms), and a reconnect is exactly what warming avoids.
WARM_MAX_AGE_S = 300.0


class Slot:
    """One stream's place under the cap; releasing twice is harmless (the generator's ``finally``
    and the response's background task both release, so a stream that never started is counted out)."""

    def __init__(self, hub: StreamHub, mode: str) -> None:
        self._hub = hub
        self.mode = mode
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._hub._release(self)


class StreamHub:
    """Counts streams against the cap, drains them on shutdown, and owns the shared feeds."""

    def __init__(
        self,
        settings: SseSettings,
        consumer_conf: dict[str, Any],
        executor: Executor,
        metrics: Metrics,
        metadata: MetadataCache,
    ):
        self.settings = settings
        self.consumer_conf = consumer_conf
        self.executor = executor
        self.metrics = metrics
        # Feeds end their subscribers' streams when their topic is deleted.
        self.metadata = metadata
        self.open_streams = 0
        self.draining = False
        self._feeds: dict[FeedKey, Feed] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: set[Subscription] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._spares: list[tuple[float, AsyncConsumer]] = []
        self._filling = False
        # Built inside the lifespan: start warming now, so even the first stream gets a warm consumer.
        self.refill()

    async def consumer(self) -> AsyncConsumer:
        """A connected assign-mode consumer: a warm spare when there is one (then a new spare is
        made in the background), else a new one."""
        now = time.monotonic()
        try:
            while self._spares:
                born, spare = self._spares.pop()
                if now - born < WARM_MAX_AGE_S:
                    return spare
                self._spawn(spare.close())
        finally:
            self.refill()
        return await AsyncConsumer.create(self.consumer_conf, self.executor)

    def refill(self) -> None:
        """Top the warm spares up to ``warm_consumers`` in the background."""
        if not self._filling and not self.draining and len(self._spares) < self.settings.warm_consumers:
            self._filling = True
            self._spawn(self._fill())

    async def _fill(self) -> None:
        try:
            while not self.draining and len(self._spares) < self.settings.warm_consumers:
                spare = await AsyncConsumer.create(self.consumer_conf, self.executor)
                try:
                    await spare.connect()
                except Exception as exc:
                    await spare.close()
                    log.warning("could not warm a consumer: %s", exc)
                    return
                if self.draining:
                    await spare.close()
                    return
                self._spares.append((time.monotonic(), spare))
        finally:
            self._filling = False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def acquire(self, mode: str, retry_after_s: int = 1) -> Slot:
        """A place for one more stream, or 429 (cap) / 503 (draining) before the stream starts."""
        if self.draining:
            raise errors.Unavailable("The gateway is draining; reconnect to another instance.", retry_after_s)
        if self.open_streams >= self.settings.max_streams:
            raise errors.Backpressure("Too many streams on this gateway instance; retry shortly.", retry_after_s)
        self.open_streams += 1
        self.metrics.sse_streams.labels(mode).inc()
        return Slot(self, mode)

    def _release(self, slot: Slot) -> None:
        self.open_streams -= 1
        self.metrics.sse_streams.labels(slot.mode).dec()

    async def subscribe(self, spec: streams.StreamSpec, offsets: Offsets) -> Subscription:
        """Join (or start) the shared feed for ``spec``; returns once the feed reads from ``latest``."""
        key: FeedKey = (
            spec.topic.name,
            spec.partitions,
            spec.key_format,
            spec.value_format,
            spec.key,
            spec.filter_path,
            msgspec.json.encode(spec.filter_value) if spec.filter_path else None,
        )
        feed = self._feeds.get(key)
        if feed is None:
            feed = Feed(key, spec, self, offsets)
            self._feeds[key] = feed
            feed.task = asyncio.create_task(feed.run(), name=f"sse-feed-{spec.topic.name}")
            self._tasks.add(feed.task)
            feed.task.add_done_callback(self._tasks.discard)
        sub = Subscription(feed, self.settings.subscriber_buffer)
        feed.subscribers.add(sub)
        self._subscriptions.add(sub)
        if self._ticker is None:
            self._ticker = asyncio.create_task(self._tick(), name="sse-heartbeat")
        try:
            await asyncio.shield(feed.started)
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)
        sub.feed.leave(sub)

    async def _tick(self) -> None:
        """Heartbeats and the send-timeout watchdog for every fan-out subscriber, in one task.

        One timer for all instead of a ping task and a timeout scope per stream: an idle subscriber
        then costs one pending future, and a write costs no timer. Every subscriber gets the same
        comment bytes each ``heartbeat_s`` (unless it has data to write anyway); a write stuck on a
        client's full socket for over ``send_timeout_s`` cancels that stream (its writer turns the
        cancellation into sse-starlette's ``SendTimeoutError``), checked every half timeout.
        """
        cfg = self.settings
        loop = asyncio.get_running_loop()
        period = min(cfg.heartbeat_s, cfg.send_timeout_s / 2)
        last_ping = loop.time()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            ping = None
            if now - last_ping >= cfg.heartbeat_s - period / 2:
                ping, last_ping = sse.heartbeat(), now
            for sub in self._subscriptions:
                since = sub.sending_since
                if since and now - since > cfg.send_timeout_s:
                    if not sub.timed_out and sub.task is not None:
                        sub.timed_out = True
                        sub.task.cancel()
                elif ping is not None and not sub.chunks:
                    sub.offer(ping, 0)

    def forget(self, feed: Feed) -> None:
        if self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]

    def drain(self) -> None:
        """Shutdown began: refuse new streams and wake every stream so it says goodbye now."""
        if self.draining:
            return
        self.draining = True
        # Fan-out subscribers wait on their buffer; assign and group streams notice between polls.
        for sub in self._subscriptions:
            sub.wake()

    async def close(self) -> None:
        """Stop every feed (each within one poll) and close its consumer."""
        self.drain()
        if self._ticker is not None:
            self._ticker.cancel()
        for feed in list(self._feeds.values()):
            feed.stopping = True
        while self._spares:
            self._spawn(self._spares.pop()[1].close())
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_TIMEOUT_S)
