"""A bounded pool of connected assign-mode consumers, lent to SSE streams and reused after them.

Why: a new librdkafka consumer costs a bootstrap connection, ApiVersions, a metadata round trip and a
connection to each partition leader before its first fetch (40-100 ms on a local broker, more across a
network), plus starting and later stopping its threads. A pooled consumer has all of that already, so
a stream only ``assign()``s its partitions at exact positions and fetches.

Reuse never leaks: ``release`` unassigns the consumer and empties its queue (``AsyncConsumer.reset``).
librdkafka tags what each assignment fetched with the partition's op version and discards anything of
an older version, whether queued or still in flight, so the next stream sees only records of its own
assignment. A consumer whose call failed is closed, never lent again.

A fetch still in flight when a consumer is released holds the broker connection's single fetch slot
until the broker answers, up to ``fetch.wait.max.ms`` for a partition at its end. A consumer therefore
comes back *cooling* and is lent *ready* first: a new stream on a cooling consumer would wait for that
old long-poll before its own first fetch. When only cooling consumers are idle, the one closest to ready
is lent anyway: waiting out the rest of a cooldown is still quicker than bootstrapping a new consumer.

Bounds: at most ``max_idle`` consumers are kept idle (more are closed on release); ``warm`` connected
consumers are kept ready in the background so even a burst's first stream skips the handshake; an idle
consumer unused for ``idle_s`` is closed (and replaced while fewer than ``warm`` remain, so the warm
ones never sit on connections a broker closed for idleness). Leased consumers are bounded by the stream
cap. After ``close`` every consumer coming back is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from gateway import errors
from gateway.kafka.consumer import AsyncConsumer
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

# librdkafka's default fetch.wait.max.ms, for a configuration that does not set it.
LIBRDKAFKA_FETCH_WAIT_MS = 500
# Added to fetch.wait.max.ms before a returned consumer counts as ready: the broker's answer to a
# long-poll arrives a little after the wait it was asked for.
COOLDOWN_MARGIN_MS = 15
# How often idle consumers are checked for expiry (at most; shorter when idle_s is shorter).
REAP_INTERVAL_S = 5.0
# Closing the idle consumers at shutdown waits at most this long.
CLOSE_TIMEOUT_S = 5.0
# After a consumer could not be warmed (Kafka unreachable), the next try waits this long: no stream of
# warnings and half-made consumers while Kafka is down. Streams still get new consumers meanwhile.
WARM_RETRY_S = 15.0


@dataclass
class _Idle:
    consumer: AsyncConsumer
    # time.monotonic() after which its last assignment's fetch has surely come back.
    ready_at: float
    # time.monotonic() when it came back (or was made).
    since: float


class ConsumerPool:
    """Connected assign-mode consumers: ``acquire`` one per stream, ``release`` it when the stream ends."""

    def __init__(
        self,
        conf: dict[str, Any],
        executor: Executor,
        *,
        max_idle: int,
        warm: int,
        idle_s: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._conf = conf
        self._executor = executor
        self._max_idle = max_idle
        self._warm = min(warm, max_idle)
        self._idle_s = idle_s
        self._metrics = metrics
        wait_ms = int(conf.get("fetch.wait.max.ms", LIBRDKAFKA_FETCH_WAIT_MS))
        self._cooldown_s = (wait_ms + COOLDOWN_MARGIN_MS) / 1000
        self._idle: list[_Idle] = []
        self._leased = 0
        self._closed = False
        self._filling = False
        self._warm_retry_at = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin warming and expiring; call inside the running loop (the lifespan)."""
        if self._reaper is None and not self._closed:
            self._reaper = asyncio.create_task(self._reap(), name="sse-consumer-pool-expiry")
            self._refill()

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def leased(self) -> int:
        return self._leased

    async def acquire(self) -> AsyncConsumer:
        """A consumer with nothing assigned: a pooled one if any (ready before cooling), else a new one."""
        if self._closed:
            raise errors.Unavailable("The gateway is shutting down; reconnect to another instance.")
        entry = self._take()
        self._leased += 1
        self._refill()
        if entry is not None:
            self._count("pooled")
            self._gauges()
            return entry.consumer
        self._gauges()
        try:
            consumer = await AsyncConsumer.create(self._conf, self._executor)
        except BaseException:
            self._leased -= 1
            self._gauges()
            raise
        self._count("new")
        return consumer

    async def release(self, consumer: AsyncConsumer) -> None:
        """Take a consumer back from its stream: reset and keep it, or close it. Never raises."""
        self._leased -= 1
        try:
            if not self._keeps(consumer):
                await consumer.close()
                return
            try:
                stale = await consumer.reset()
            except Exception as exc:
                log.warning("closing a pooled consumer that could not be reset: %s", exc)
                await consumer.close()
                return
            if stale:
                # librdkafka should have discarded them; they went nowhere, but the consumer is suspect.
                log.warning("a released consumer still delivered %d messages after unassign; closing it", stale)
                await consumer.close()
                return
            if not self._keeps(consumer):  # closed or filled up while resetting
                await consumer.close()
                return
            now = time.monotonic()
            self._idle.append(_Idle(consumer, now + self._cooldown_s, now))
        except Exception as exc:
            log.warning("could not close a Kafka consumer: %s", exc)
        finally:
            self._gauges()

    async def close(self) -> None:
        """Close every idle consumer; leased ones are closed when their streams give them back."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        idle, self._idle = self._idle, []
        for entry in idle:
            self._spawn(entry.consumer.close())
        self._gauges()
        tasks = [t for t in (self._reaper, *self._tasks) if t is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)

    def _keeps(self, consumer: AsyncConsumer) -> bool:
        return not self._closed and not consumer.broken and len(self._idle) < self._max_idle

    def _take(self) -> _Idle | None:
        if not self._idle:
            return None
        now = time.monotonic()
        ready = [i for i, e in enumerate(self._idle) if e.ready_at <= now]
        if ready:
            # The most recently returned ready one: its connections are the freshest, and the
            # least used ones age out through idle_s when load falls.
            pick = max(ready, key=lambda i: self._idle[i].since)
        else:
            pick = min(range(len(self._idle)), key=lambda i: self._idle[i].ready_at)
        return self._idle.pop(pick)

    def _refill(self) -> None:
        if (
            not self._filling
            and not self._closed
            and len(self._idle) < self._warm
            and time.monotonic() >= self._warm_retry_at
        ):
            self._filling = True
            self._spawn(self._fill())

    async def _fill(self) -> None:
        try:
            while not self._closed and len(self._idle) < self._warm:
                consumer = await AsyncConsumer.create(self._conf, self._executor)
                try:
                    await consumer.connect()
                except Exception as exc:
                    self._warm_retry_at = time.monotonic() + WARM_RETRY_S
                    await consumer.close()
                    log.warning("could not warm a Kafka consumer (next try in %.0f s): %s", WARM_RETRY_S, exc)
                    return
                if self._closed or len(self._idle) >= self._max_idle:
                    await consumer.close()
                    return
                now = time.monotonic()
                # Never assigned: no fetch in flight, ready at once.
                self._idle.append(_Idle(consumer, now, now))
                self._gauges()
        finally:
            self._filling = False

    async def _reap(self) -> None:
        interval = min(REAP_INTERVAL_S, self._idle_s / 2)
        while not self._closed:
            await asyncio.sleep(interval)
            cutoff = time.monotonic() - self._idle_s
            expired = [e for e in self._idle if e.since < cutoff]
            if expired:
                self._idle = [e for e in self._idle if e.since >= cutoff]
                for entry in expired:
                    self._spawn(entry.consumer.close())
                self._gauges()
            self._refill()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(_logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _count(self, source: str) -> None:
        if self._metrics is not None:
            self._metrics.sse_pool_acquired.labels(source).inc()

    def _gauges(self) -> None:
        if self._metrics is not None:
            self._metrics.sse_pool_consumers.labels("idle").set(len(self._idle))
            self._metrics.sse_pool_consumers.labels("leased").set(self._leased)


async def _logged(coro: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        try:
            await coro
        except Exception as exc:
            log.warning("Kafka consumer pool: %s", exc)
