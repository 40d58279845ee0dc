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
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import Consumer, Message, TopicPartition

from gateway import errors, sse, streams
from gateway.kafka.consumer import AsyncConsumer
from gateway.kafka.offsets import Offsets
from gateway.metrics import Metrics
from gateway.settings import SseSettings

log = logging.getLogger(__name__)

SLOW_CONSUMER = (
    "slow consumer: this client fell more than {n} events behind the stream; reconnect with its last event id"
)
# How long closing the hub waits for feeds to stop (each stops within one poll).
CLOSE_TIMEOUT_S = 5.0
# A warm consumer older than this is replaced rather than used: brokers close connections idle for
# 10 minutes (connections.max.idle.ms), and a reconnect is exactly what warming avoids.
WARM_MAX_AGE_S = 300.0

FeedKey = tuple[object, ...]
# Polls of one feed whose records may wait for the event loop at once (see Feed._poll_slice).
POLLS_IN_FLIGHT = 2
# How long a feed's poller keeps its executor thread before queueing again behind other Kafka calls.
POLL_SLICE_S = 1.0


async def _until_done(fut: asyncio.Future[Any]) -> None:
    """Wait for ``fut`` (a thread's work, which cannot be interrupted) even if cancelled meanwhile."""
    while not fut.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([fut])
    if not fut.cancelled():
        fut.exception()  # retrieved: run() reported it already, or is being cancelled


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


class Subscription:
    """A fan-out subscriber: the chunks the feed put and its stream has not written yet.

    Thousands of these live at once, mostly idle, so each is small: slots, a list of references to
    the feed's shared chunks (never copies), and a bare future only while its stream waits (an
    ``asyncio.Event`` costs a 760-byte deque per subscriber).
    """

    __slots__ = ("_waiter", "chunks", "error", "feed", "gone", "limit", "pending", "sending_since", "task", "timed_out")

    def __init__(self, feed: Feed, limit: int) -> None:
        self.feed = feed
        self.limit = limit
        self.chunks: list[bytes] = []
        self.pending = 0
        self.error: str | None = None
        # The client went away: the stream ends without writing anything more.
        self.gone = False
        # The task writing this subscriber's stream, and since when (loop time) its current write
        # waits on the socket: the hub's watchdog enforces ``send_timeout_s`` from these, which is
        # cheaper than a timeout scope around each of a thousand subscribers' writes.
        self.task: asyncio.Task[Any] | None = None
        self.sending_since = 0.0
        self.timed_out = False
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, chunk: bytes, events: int) -> bool:
        """Queue one chunk; False (and evicted) when the subscriber is too far behind.

        An empty buffer always takes a whole poll, so a batch larger than the limit does not
        evict a subscriber that keeps up.
        """
        if self.pending and self.pending + events > self.limit:
            self.chunks.clear()
            self.pending = 0
            self.fail(SLOW_CONSUMER.format(n=self.limit))
            return False
        self.chunks.append(chunk)
        self.pending += events
        self.wake()
        return True

    def fail(self, message: str) -> None:
        self.error = message
        self.wake()

    def hang_up(self) -> None:
        """The client disconnected: free the buffer now and let the stream end."""
        self.gone = True
        self.chunks.clear()
        self.pending = 0
        self.wake()

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Until something is offered, the subscriber fails or hangs up, or ``wake()`` (shutdown)."""
        if self.chunks or self.error is not None or self.gone:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter

    def take(self) -> tuple[bytes, int]:
        """Everything queued, as one write: events that arrived together go out together."""
        chunks, events = self.chunks, self.pending
        self.chunks, self.pending = [], 0
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), events


@dataclass(eq=False)
class Feed:
    """One shared assign-mode consumer at ``latest`` and its subscribers."""

    key: FeedKey
    spec: streams.StreamSpec
    hub: StreamHub
    offsets: Offsets
    subscribers: set[Subscription] = field(default_factory=set)
    started: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    stopping: bool = False
    task: asyncio.Task[None] | None = None
    # A poll's failure, raised by ``run`` once the poller thread has stopped.
    _error: Exception | None = None
    # Room for polls whose records wait for the event loop (see _poll_slice).
    _room: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(POLLS_IN_FLIGHT))

    async def run(self) -> None:
        hub = self.hub
        consumer: AsyncConsumer | None = None
        poller: asyncio.Future[None] | None = None
        hub.metrics.sse_shared_consumers.inc()
        try:
            # The new consumer connects while the warm admin client resolves the start positions.
            create = asyncio.ensure_future(hub.consumer())
            try:
                positions = await streams.start_positions(self.offsets, self.spec)
            finally:
                consumer = own = await asyncio.shield(create)
            topic = self.spec.topic.name
            await own.assign([TopicPartition(topic, p, off) for p, off in positions.items()])
            self.started.set_result(None)
            loop = asyncio.get_running_loop()
            deliver = functools.partial(self._deliver, msgspec.json.encode(topic), positions)
            while not self.stopping:
                # A slice at a time: between slices the thread goes back to the executor, so with
                # more feeds and streams than threads every Kafka call still gets its turn.
                poller = loop.run_in_executor(hub.executor, self._poll_slice, own.raw, loop, deliver)
                await asyncio.shield(poller)
            if self._error is not None:
                raise self._error
        except Exception as exc:
            message = exc.message if isinstance(exc, errors.GatewayError) else f"Kafka error: {exc}"
            if not self.started.done():
                self.started.set_exception(exc)
                # Every waiting subscriber re-raises it; none may be left to, which is fine too.
                self.started.add_done_callback(lambda f: f.exception())
            else:
                log.warning("shared feed for %s failed: %s", self.spec.topic.name, message)
            for sub in self.subscribers:
                sub.fail(message)
            self.subscribers.clear()
        finally:
            hub._forget(self)
            hub.metrics.sse_shared_consumers.dec()
            self.stopping = True
            if poller is not None:
                # The consumer is closed only once its poller thread is out of librdkafka.
                await _until_done(poller)
            if consumer is not None:
                await asyncio.shield(consumer.close())

    def _poll_slice(
        self, consumer: Consumer, loop: asyncio.AbstractEventLoop, deliver: Callable[[list[Message]], None]
    ) -> None:
        """The feed's poller, on a Kafka executor thread for ``POLL_SLICE_S`` (``run`` starts the next).

        It polls again as soon as a poll's records are passed to the event loop, and they reach the
        feed in one loop callback. Through ``AsyncConsumer.consume`` each poll would start only after
        the loop got round to asking, and its result would pass through several futures, each one
        queued behind every subscriber write the previous hand-out woke: records then waited for
        a thousand writes several times over. At most ``POLLS_IN_FLIGHT`` polls wait for the loop;
        beyond that this thread waits, so a loop that falls behind holds back Kafka, not memory.
        Nothing else uses the consumer meanwhile: it was assigned before and is closed after.
        """
        cfg = self.hub.settings
        room = self._room
        deadline = time.monotonic() + POLL_SLICE_S

        def handed(msgs: list[Message]) -> None:
            try:
                deliver(msgs)
            finally:
                room.release()

        while not self.stopping and time.monotonic() < deadline:
            if not room.acquire(timeout=cfg.poll_timeout_s):
                continue
            try:
                first = consumer.poll(cfg.poll_timeout_s)
                msgs = [first, *consumer.consume(cfg.batch_max_records - 1, 0)] if first is not None else []
            except BaseException:
                room.release()
                raise
            if not msgs:
                room.release()
                continue
            try:
                loop.call_soon_threadsafe(handed, msgs)
            except RuntimeError:  # the loop is closed: the process is going away
                return

    def _deliver(self, topic_json: bytes, positions: dict[int, int], msgs: list[Message]) -> None:
        """On the loop: encode one poll once and hand it out; a fatal error ends the feed."""
        if self.stopping:
            return
        try:
            chunk, events = streams.encode_batch(self.spec, topic_json, positions, msgs)
        except Exception as exc:
            self._error = exc
            self.stopping = True
            return
        if events:
            self._hand_out(chunk, events)

    def _hand_out(self, chunk: bytes, events: int) -> None:
        """The same bytes to every subscriber; one too far behind is dropped on the spot."""
        for sub in list(self.subscribers):
            if not sub.offer(chunk, events):
                self.subscribers.discard(sub)
                self.hub.metrics.sse_evictions.inc()

    def leave(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)
        if not self.subscribers:
            # Stop after the current poll; a later subscriber of the same key gets a new feed.
            self.stopping = True
            self.hub._forget(self)


class StreamHub:
    """Counts streams against the cap, drains them on shutdown, and owns the shared feeds."""

    def __init__(self, settings: SseSettings, consumer_conf: dict[str, Any], executor: Executor, metrics: Metrics):
        self.settings = settings
        self.consumer_conf = consumer_conf
        self.executor = executor
        self.metrics = metrics
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

    def _forget(self, feed: Feed) -> None:
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
