"""The fan-out subscriber's bounded buffer: when a subscriber is evicted, what it is told, and
when its stream wakes up."""

from __future__ import annotations

import asyncio

import pytest

from gateway.hub import Subscription

pytestmark = pytest.mark.anyio


async def test_a_subscriber_that_keeps_up_is_never_evicted_even_by_a_big_poll() -> None:
    sub = Subscription(feed=None, limit=10)  # type: ignore[arg-type]
    assert sub.offer(b"x" * 50, 50)  # an empty buffer takes a whole poll, however large
    assert sub.take() == (b"x" * 50, 50)
    assert sub.offer(b"a", 4) and sub.offer(b"b", 6)
    assert sub.take() == (b"ab", 10) and sub.error is None


async def test_a_subscriber_over_its_limit_is_evicted_and_its_buffer_freed() -> None:
    sub = Subscription(feed=None, limit=10)  # type: ignore[arg-type]
    assert sub.offer(b"a", 8)
    assert not sub.offer(b"b", 3)
    assert sub.error is not None and sub.error.startswith("slow consumer")
    # Nothing of the buffer is left to write: the stream's next write is the error.
    assert sub.take() == (b"", 0)
    await asyncio.wait_for(sub.wait(), 1)  # and a waiting stream is not left waiting


async def test_the_same_chunk_object_reaches_every_subscriber() -> None:
    chunk = b"id: x\nevent: record\ndata: {}\n\n"
    subs = [Subscription(feed=None, limit=5) for _ in range(3)]  # type: ignore[arg-type]
    for s in subs:
        s.offer(chunk, 1)
    assert all(s.take()[0] is chunk for s in subs)


async def test_a_waiting_stream_wakes_once_for_everything_offered_meanwhile() -> None:
    sub = Subscription(feed=None, limit=100)  # type: ignore[arg-type]
    waiting = asyncio.ensure_future(sub.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    sub.offer(b"a", 1)
    sub.offer(b"b", 2)
    await asyncio.wait_for(waiting, 1)
    # The events that arrived together go out as one write.
    assert sub.take() == (b"ab", 3)


async def test_a_hang_up_frees_the_buffer_and_ends_the_wait() -> None:
    sub = Subscription(feed=None, limit=100)  # type: ignore[arg-type]
    sub.offer(b"a", 1)
    assert sub.take() == (b"a", 1)
    waiting = asyncio.ensure_future(sub.wait())
    await asyncio.sleep(0)
    sub.hang_up()
    await asyncio.wait_for(waiting, 1)
    assert sub.gone and sub.take() == (b"", 0)
