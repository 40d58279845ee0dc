"""A shared fan-out feed: one assign-mode consumer at ``latest`` and the subscribers it writes to.

The feed encodes each poll once into one chunk of frames and hands the very same bytes object to every
subscriber (``Subscription``: a bounded buffer of references to those chunks). One that would go over
its bound is dropped on the spot and told ``slow consumer``; the feed never waits for a subscriber. The
registry of feeds, the stream cap and shutdown are ``gateway.hub``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from confluent_kafka import Consumer, Message, TopicPartition

from gateway import errors, streams
from gateway.kafka.consumer import AsyncConsumer
from gateway.kafka.offsets import Offsets

if TYPE_CHECKING:
    from gateway.hub import StreamHub

# Logged under the hub's name, as before this module was split out of it.
log = logging.getLogger("gateway.hub")

__all__ = ["POLLS_IN_FLIGHT", "POLL_SLICE_S", "SLOW_CONSUMER", "Feed", "FeedKey", "Subscription"]

SLOW_CONSUMER = (
    "slow consumer: this client fell more than {n} events behind the stream; reconnect with its last event id"
)
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
                if await hub.metadata.gone(topic):
                    raise errors.TopicDeleted(topic)
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
            hub.forget(self)
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

        batch = max(1, min(cfg.batch_max_records, cfg.subscriber_buffer // 2))
        while not self.stopping and time.monotonic() < deadline:
            if not room.acquire(timeout=cfg.poll_timeout_s):
                continue
            try:
                first = consumer.poll(cfg.poll_timeout_s)
                msgs = [first, *consumer.consume(batch - 1, 0)] if first is not None else []
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
            self.hub.forget(self)
