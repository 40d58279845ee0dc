"""The pool of assign-mode consumers (gateway/kafka/pool.py) against a real broker.

What a reused consumer hands its next user is checked on the records themselves: nothing of the
previous assignment (topic, partitions, positions), even with records buffered or a fetch in flight
when it came back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from confluent_kafka import Message, TopicPartition

from gateway import errors
from gateway.kafka.consumer import AsyncConsumer
from gateway.kafka.pool import ConsumerPool
from gateway.lifespan import consumer_config
from gateway.metrics import Metrics
from tests.conftest import settings_for
from tests.helpers import read_all
from tests.integration.sse_support import produce

pytestmark = pytest.mark.anyio


@pytest.fixture
async def executor() -> AsyncIterator[ThreadPoolExecutor]:
    ex = ThreadPoolExecutor(8, thread_name_prefix="test-kafka")
    yield ex
    ex.shutdown(wait=True)


def make_pool(bootstrap: str, executor: ThreadPoolExecutor, **kw: float) -> tuple[ConsumerPool, Metrics]:
    metrics = Metrics()
    args: dict[str, float] = {"max_idle": 1, "warm": 0, "idle_s": 60.0}
    args.update(kw)
    pool = ConsumerPool(
        consumer_config(settings_for(bootstrap)),
        executor,
        max_idle=int(args["max_idle"]),
        warm=int(args["warm"]),
        idle_s=args["idle_s"],
        metrics=metrics,
    )
    pool.start()
    return pool, metrics


def acquired(metrics: Metrics, source: str) -> float:
    return metrics.registry.get_sample_value("gateway_sse_pool_acquired_total", {"source": source}) or 0.0


async def records(consumer: AsyncConsumer, want: int, timeout_s: float = 15.0) -> list[Message]:
    """``want`` records (or all that came within the timeout), then whatever else arrives in 0.5 s."""
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        out += [m for m in await consumer.consume(500, 0.2) if m.error() is None]
    settle = time.monotonic() + 0.5
    while time.monotonic() < settle:
        out += [m for m in await consumer.consume(500, 0.1) if m.error() is None]
    return out


def where(msgs: list[Message]) -> list[tuple[str | None, int | None, int | None]]:
    return [(m.topic(), m.partition(), m.offset()) for m in msgs]


async def test_a_reused_consumer_delivers_only_its_new_assignment(
    bootstrap: str, new_topic: Callable[..., str], executor: ThreadPoolExecutor
) -> None:
    old, new = new_topic(3), new_topic(2)
    produce(bootstrap, old, ((b"k%d" % i, b"old-%d" % i) for i in range(3000)))
    produce(bootstrap, new, ((b"k%d" % i, b"new-%d" % i) for i in range(400)))
    new_p1 = sum(1 for m in await _all(bootstrap, new, 2, 400, executor) if m.partition() == 1)
    pool, metrics = make_pool(bootstrap, executor)
    try:
        first = await pool.acquire()
        await first.assign([TopicPartition(old, p, 0) for p in range(3)])
        # A few records taken; librdkafka has prefetched the rest and long-polls at the end.
        assert len(await first.consume(10, 5.0)) == 10
        await asyncio.sleep(0.3)
        await pool.release(first)
        # Records arriving for the old assignment while it is idle (the in-flight fetch may get them).
        produce(bootstrap, old, ((b"late", b"late-%d" % i) for i in range(50)))

        # The very next user gets the same consumer at once (max_idle 1, nothing warm): cooling.
        second = await pool.acquire()
        assert acquired(metrics, "pooled") == 1 and acquired(metrics, "new") == 1
        assert await second.consume(1000, 1.0) == [], "records of the old assignment after release"
        await second.assign([TopicPartition(new, 1, 0)])
        got = await records(second, new_p1)
        assert where(got) == [(new, 1, i) for i in range(new_p1)]
        assert all(m.value().startswith(b"new-") for m in got)  # type: ignore[union-attr]
        await pool.release(second)

        # Same topic and partition as the first user, at another position.
        third = await pool.acquire()
        assert acquired(metrics, "pooled") == 2 and acquired(metrics, "new") == 1
        await third.assign([TopicPartition(old, 0, 5)])
        old_p0 = [m for m in await _all(bootstrap, old, 3, 3050, executor) if m.partition() == 0]
        got = await records(third, len(old_p0) - 5)
        assert where(got) == [(old, 0, m.offset()) for m in old_p0[5:]]
        await pool.release(third)
    finally:
        await pool.close()


async def test_released_consumer_returns_nothing_buffered_even_while_the_old_topic_grows(
    bootstrap: str, new_topic: Callable[..., str], executor: ThreadPoolExecutor
) -> None:
    topic = new_topic(1)
    produce(bootstrap, topic, ((None, b"%d" % i) for i in range(5000)))
    pool, metrics = make_pool(bootstrap, executor)
    try:
        for _ in range(3):
            consumer = await pool.acquire()
            await consumer.assign([TopicPartition(topic, 0, 0)])
            assert len(await consumer.consume(1, 5.0)) == 1
            await pool.release(consumer)
            produce(bootstrap, topic, ((None, b"more") for _ in range(100)))
            again = await pool.acquire()
            assert again is consumer
            # Nothing assigned, nothing delivered: neither the prefetched records nor the new ones.
            assert [m for m in await again.consume(1000, 1.0) if m.error() is None] == []
            await pool.release(again)
        assert acquired(metrics, "new") == 1
    finally:
        await pool.close()


async def test_pool_bounds_warming_expiry_broken_consumers_and_close(
    bootstrap: str, new_topic: Callable[..., str], executor: ThreadPoolExecutor
) -> None:
    pool, metrics = make_pool(bootstrap, executor, max_idle=2, warm=1, idle_s=0.4)
    try:
        # One is warmed in the background.
        deadline = time.monotonic() + 10
        while pool.idle < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert pool.idle == 1
        three = [await pool.acquire() for _ in range(3)]
        assert pool.leased == 3
        # The warm one first; the others new (or warmed again meanwhile).
        assert acquired(metrics, "pooled") >= 1 and acquired(metrics, "pooled") + acquired(metrics, "new") == 3
        # At most max_idle come back into the pool; the warm one (made meanwhile) counts too.
        for c in three:
            await pool.release(c)
        assert pool.idle == 2 and pool.leased == 0
        assert metrics.registry.get_sample_value("gateway_sse_pool_consumers", {"state": "idle"}) == 2
        # A consumer marked broken is closed, not kept: it is never lent again. (Counting idle consumers
        # before and after would race with a warm-up still connecting from the acquires above.)
        c = await pool.acquire()
        c.broken = True
        await pool.release(c)
        with pytest.raises(errors.Unavailable):
            await c.consume(1, 0)  # it was closed
        lent = [await pool.acquire() for _ in range(pool.idle)]
        assert c not in lent
        for other in lent:
            await pool.release(other)
        # Unused for idle_s: closed, and the warm minimum made again.
        old = await pool.acquire()
        await pool.release(old)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                await old.consume(1, 0)  # harmless on an idle consumer: nothing is assigned
            except errors.Unavailable:
                break  # closed by the expiry
            await asyncio.sleep(0.05)
        else:
            pytest.fail("an idle consumer was not closed after idle_s")
        while pool.idle != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert pool.idle == 1
        assert metrics.registry.get_sample_value("gateway_sse_pool_consumers", {"state": "idle"}) == 1
    finally:
        await pool.close()
    # After close: nothing is lent, and what comes back is closed.
    assert pool.idle == 0
    with pytest.raises(errors.Unavailable):
        await pool.acquire()


async def _all(
    bootstrap: str, topic: str, partitions: int, expected: int, executor: ThreadPoolExecutor
) -> list[Message]:
    """Every record of ``topic`` as Kafka has it, by partition then offset (read independently)."""
    loop = asyncio.get_running_loop()
    msgs = await loop.run_in_executor(executor, read_all, bootstrap, topic, expected, partitions)
    assert len(msgs) == expected
    return sorted(msgs, key=lambda m: (m.partition(), m.offset()))
