"""Assign-mode SSE streams on pooled consumers (gateway/kafka/pool.py), on a live gateway and a real broker.

The pool is cut to one consumer (nothing warmed, one kept idle), so every stream after the first runs
on the consumer of the stream before it, taken back while its last fetch may still be in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from gateway import cursor
from tests.helpers import GatewayProcess, read_all
from tests.integration.sse_support import Event, metric, produce, stream, take, wait_until

ONE_CONSUMER = {"GATEWAY_SSE__POOL_MAX_IDLE": "1", "GATEWAY_SSE__POOL_WARM": "0"}


def drain(events: Iterator[Event], n: int) -> list[Event]:
    """``n`` events, then whatever else comes before the stream's read timeout (there should be nothing)."""
    got = take(events, n)
    return got + take(events, 10_000, timeout_s=5, partial=True)


def test_a_reused_consumer_never_delivers_records_of_a_previous_stream(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    a, b = new_topic(3), new_topic(2)
    produce(bootstrap, a, ((b"k%d" % i, b'{"from":"a","i":%d}' % i) for i in range(3000)))
    produce(bootstrap, b, ((b"k%d" % i, b'{"from":"b","i":%d}' % i) for i in range(400)))
    b_p1 = sorted(m.offset() for m in read_all(bootstrap, b, 400, 2) if m.partition() == 1)

    with GatewayProcess(bootstrap, env=ONE_CONSUMER) as gw:

        def idle() -> bool:
            return metric(gw.url, "gateway_sse_pool_consumers", state="idle") == 1

        # 1: topic a, every partition, from the beginning; left after 20 events with the rest
        # prefetched and the consumer long-polling at the end of each partition.
        with stream(gw.url, a, {"from": "earliest"}) as events:
            assert len(take(events, 20)) == 20
        wait_until(idle, 10)
        produce(bootstrap, a, ((b"late", b'{"from":"a","late":true}') for _ in range(30)))

        # 2: another topic, one partition; a short read timeout, so silence ends the read.
        with stream(gw.url, b, {"from": "earliest", "partitions": "1"}, read_timeout_s=1.5) as events:
            got = drain(events, len(b_p1))
        assert [(e.data["topic"], e.at) for e in got] == [(b, (1, off)) for off in b_p1]
        assert all(e.data["value"]["from"] == "b" for e in got)
        assert cursor.decode(b, got[-1].id) == {1: b_p1[-1] + 1}
        wait_until(idle, 10)

        # 3: topic a again, at positions of its own: exactly the records after them, nothing else.
        start = {0: 7, 1: 0, 2: 101}
        everything = read_all(bootstrap, a, 3030, 3)
        expected = sorted((m.partition(), m.offset()) for m in everything if m.offset() >= start[m.partition()])
        token = cursor.encode(a, start)
        with stream(gw.url, a, headers={"Last-Event-ID": token}, read_timeout_s=1.5) as events:
            got = drain(events, len(expected))
        assert sorted(e.at for e in got) == expected
        assert len(got) == len(expected), "a record was delivered twice"
        for p in range(3):
            mine = [off for (q, off) in (e.at for e in got) if q == p]
            assert mine == sorted(mine) and mine[0] == start[p]
        assert cursor.decode(a, got[-1].id) == {p: max(o for q, o in expected if q == p) + 1 for p in range(3)}

        # Every stream after the first really ran on the pooled consumer.
        assert metric(gw.url, "gateway_sse_pool_acquired_total", source="new") == 1
        assert metric(gw.url, "gateway_sse_pool_acquired_total", source="pooled") == 2


def test_streams_in_a_row_resume_exactly_on_one_pooled_consumer(bootstrap: str, new_topic: Callable[..., str]) -> None:
    """A client reconnecting again and again with its last id (the consumer changing hands each time)
    gets every record once, in order."""
    topic = new_topic(2)
    produce(bootstrap, topic, ((b"k%d" % i, b'{"i":%d}' % i) for i in range(1200)))
    with GatewayProcess(bootstrap, env=ONE_CONSUMER) as gw:
        seen: list[tuple[int, int]] = []
        last: str | None = None
        for n in (1, 7, 50, 300, 842):
            headers = {"Last-Event-ID": last} if last else {}
            with stream(gw.url, topic, {"from": "earliest"}, headers=headers) as events:
                got = take(events, n)
            seen += [e.at for e in got]
            last = got[-1].id
            wait_until(lambda: metric(gw.url, "gateway_sse_pool_consumers", state="idle") == 1, 10)
        assert len(seen) == 1200 and len(set(seen)) == 1200
        for p in range(2):
            mine = [off for q, off in seen if q == p]
            assert mine == list(range(len(mine)))
        assert metric(gw.url, "gateway_sse_pool_acquired_total", source="pooled") == 4
