"""The fan-out subscriber's bounded buffer: when a subscriber is evicted, and what it is told."""

from __future__ import annotations

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
    assert sub.pending == 0 and sub.chunks == [] and sub.ready.is_set()


async def test_the_same_chunk_object_reaches_every_subscriber() -> None:
    chunk = b"id: x\nevent: record\ndata: {}\n\n"
    subs = [Subscription(feed=None, limit=5) for _ in range(3)]  # type: ignore[arg-type]
    for s in subs:
        s.offer(chunk, 1)
    assert all(s.take()[0] is chunk for s in subs)
