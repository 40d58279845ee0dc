"""Fan-out: streams at ``latest`` share one Kafka consumer per process; a slow one is evicted, not waited for."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.helpers import GatewayProcess
from tests.integration.sse_support import Event, metric, produce, stream, take, wait_until


def test_latest_subscribers_share_one_consumer_and_see_the_same_events(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    with GatewayProcess(bootstrap) as gw:
        shared = lambda: metric(gw.url, "gateway_sse_shared_consumers")  # noqa: E731
        assert shared() == 0
        with stream(gw.url, topic) as a, stream(gw.url, topic) as b, stream(gw.url, topic) as c:
            assert shared() == 1
            assert metric(gw.url, "gateway_sse_streams", mode="shared") == 3
            with stream(gw.url, topic, {"format": "string"}) as d:
                assert shared() == 2
                produce(bootstrap, topic, [(f"k{i}".encode(), b'{"i": %d}' % i) for i in range(200)])
                got = [take(s, 200) for s in (a, b, c, d)]
            assert got[0] == got[1] == got[2]
            assert sorted(e.data["value"]["i"] for e in got[0]) == list(range(200))
            # The other feed reads the same records, though its polls may interleave partitions differently.
            assert sorted(e.at for e in got[3]) == sorted(e.at for e in got[0])
            assert all(isinstance(e.data["value"], str) for e in got[3])
            assert metric(gw.url, "gateway_sse_events_sent_total", mode="shared") == 800
        # The feed's consumer closes when its last subscriber leaves.
        wait_until(lambda: shared() == 0, 10)
        assert metric(gw.url, "gateway_sse_streams", mode="shared") == 0


def test_a_latest_subscriber_resumes_exactly_with_its_last_id(bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(3)
    with GatewayProcess(bootstrap) as gw:
        with stream(gw.url, topic) as events:
            produce(bootstrap, topic, [(f"k{i}".encode(), b"%d" % i) for i in range(100)])
            first = take(events, 40)
        produce(bootstrap, topic, [(f"k{i}".encode(), b"%d" % i) for i in range(100, 150)])
        with stream(gw.url, topic, headers={"Last-Event-ID": first[-1].id}) as events:
            rest = take(events, 110)
    values = [e.data["value"] for e in first + rest]
    assert sorted(values) == list(range(150)) and len(values) == 150


def _slow_client(url: str, topic: str) -> socket.socket:
    """An SSE client that never reads: a tiny receive buffer, so the server's writes soon block."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET /topics/{topic}/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n".encode()
    )
    return sock


def _read_while_producing(
    fast: Any, bootstrap: str, topic: str, value: bytes, n: int, per_batch: int
) -> tuple[list[Event], threading.Thread]:
    """Read ``n`` events from ``fast`` on a thread while producing them in paced batches, so the reading
    client (Python parsing large events on a busy 2-core host) keeps up. Join the thread, then check."""
    received: list[Event] = []
    reader = threading.Thread(target=lambda: received.extend(take(fast, n, timeout_s=60)))
    reader.start()
    for _ in range(n // per_batch):
        produce(bootstrap, topic, [(b"k", value)] * per_batch)
        time.sleep(0.05)
    return received, reader


def test_a_slow_subscriber_is_evicted_and_the_others_keep_their_pace(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(1)
    env = {"GATEWAY_SSE__SUBSCRIBER_BUFFER": "500", "GATEWAY_SSE__BATCH_MAX_RECORDS": "100"}
    n = 4000
    payload = b'{"pad": "' + b"x" * 2000 + b'"}'
    with GatewayProcess(bootstrap, env=env) as gw:
        slow = _slow_client(gw.url, topic)
        try:
            with stream(gw.url, topic) as fast:
                wait_until(lambda: metric(gw.url, "gateway_sse_streams", mode="shared") == 2, 10)
                assert metric(gw.url, "gateway_sse_shared_consumers") == 1
                received, reader = _read_while_producing(fast, bootstrap, topic, payload, n, 250)
                reader.join(70)
                # The fast subscriber got everything while the slow one was not reading at all.
                assert [e.data["offset"] for e in received] == list(range(n))
                assert metric(gw.url, "gateway_sse_slow_subscriber_evictions_total") == 1
            # Now the slow client reads: whatever was already in flight, then the error, then the end.
            slow.settimeout(10)
            data = b""
            while chunk := slow.recv(1 << 20):
                data += chunk
        finally:
            slow.close()
        tail = data.rstrip(b"\r\n0").split(b"\n\n")[-1]
        assert b"event: error" in tail and b"slow consumer" in tail, tail[-300:]
        assert metric(gw.url, "gateway_sse_streams", mode="shared") == 0


def test_the_shared_consumer_never_waits_for_a_stalled_client(bootstrap: str, new_topic: Callable[..., str]) -> None:
    """A stalled subscriber does not delay a live one: both subscribed, only one reads, records keep coming."""
    topic = new_topic(1)
    env = {"GATEWAY_SSE__SUBSCRIBER_BUFFER": "300", "GATEWAY_SSE__BATCH_MAX_RECORDS": "50"}
    with GatewayProcess(bootstrap, env=env) as gw:
        slow = _slow_client(gw.url, topic)
        try:
            with stream(gw.url, topic) as fast:
                wait_until(lambda: metric(gw.url, "gateway_sse_streams", mode="shared") == 2, 10)
                received, reader = _read_while_producing(fast, bootstrap, topic, b'"' + b"y" * 4000 + b'"', 2000, 100)
                reader.join(70)
                assert [e.event for e in received] == ["record"] * 2000
                # A live record after the flood still arrives promptly (no timing assertion: it arrives).
                produce(bootstrap, topic, [(b"late", b'"hello"')])
                (late,) = take(fast, 1)
                assert late.data["key"] == "late"
        finally:
            slow.close()
        time.sleep(0.1)


def test_a_write_stuck_past_the_send_timeout_ends_that_stream_and_no_other(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """A client that stops reading, with a buffer too large to evict it, is cut off by the send timeout."""
    topic = new_topic(1)
    env = {
        "GATEWAY_SSE__SEND_TIMEOUT_S": "1",
        "GATEWAY_SSE__SUBSCRIBER_BUFFER": "100000",
        "GATEWAY_SSE__BATCH_MAX_RECORDS": "100",
    }
    n = 4000
    payload = b'{"pad": "' + b"x" * 2000 + b'"}'
    with GatewayProcess(bootstrap, env=env) as gw:
        slow = _slow_client(gw.url, topic)
        try:
            with stream(gw.url, topic, read_timeout_s=30) as fast:
                wait_until(lambda: metric(gw.url, "gateway_sse_streams", mode="shared") == 2, 10)
                received, reader = _read_while_producing(fast, bootstrap, topic, payload, n, 250)
                # The stalled stream is closed (not evicted: its buffer never filled) ...
                wait_until(lambda: metric(gw.url, "gateway_sse_streams", mode="shared") == 1, 20)
                reader.join(70)
                # ... while the reading one got every record.
                assert [e.data["offset"] for e in received] == list(range(n))
                assert metric(gw.url, "gateway_sse_slow_subscriber_evictions_total") == 0
            # The gateway closed the stalled connection: reading it now ends (no more data, then EOF).
            slow.settimeout(10)
            while slow.recv(1 << 20):
                pass
        finally:
            slow.close()
