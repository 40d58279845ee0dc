"""SSE streams on a live uvicorn against a real broker: parameters, events, errors and exact resume (API.md §2.1)."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from gateway import cursor
from tests.helpers import GatewayProcess
from tests.integration.sse_support import Event, produce, stream, take


def test_first_bytes_are_retry_and_a_comment_then_heartbeats(bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(1)
    env = {"GATEWAY_SSE__HEARTBEAT_S": "0.3", "GATEWAY_SSE__RETRY_MS": "1500"}
    with (
        GatewayProcess(bootstrap, env=env) as gw,
        httpx.Client(base_url=gw.url, timeout=10) as http,
        http.stream("GET", f"/topics/{topic}/events") as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        lines = r.iter_lines()
        assert next(lines) == "retry: 1500"
        assert next(lines).startswith(":")
        # Nothing is produced: only comment heartbeats follow.
        seen = [next(lines) for _ in range(4)]
        assert [ln for ln in seen if ln] and all(ln.startswith(": ping") for ln in seen if ln), seen


def test_records_tombstones_and_undecodable_values_keep_the_stream_going(
    gateway: GatewayProcess, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(1)
    produce(
        bootstrap,
        topic,
        [
            {"key": b"k1", "value": b'{"n": 1}', "headers": [("h", b"v")]},
            (b"k2", None),
            (b"k3", b"\xff\xfe not json"),
            (b"\xff", b'"fine"'),
            (None, b"[1,2]"),
        ],
    )
    with stream(gateway.url, topic, {"from": "earliest"}) as events:
        got = take(events, 5)
    assert [e.event for e in got] == ["record", "tombstone", "record", "record", "record"]
    assert got[0].data == {
        "topic": topic,
        "partition": 0,
        "offset": 0,
        "timestamp": got[0].data["timestamp"],
        "key": "k1",
        "value": {"n": 1},
        "headers": {"h": "v"},
    }
    assert got[1].data["value"] is None and got[1].data["key"] == "k2"
    bad = got[2].data
    assert "value" not in bad and base64.b64decode(bad["value_b64"]) == b"\xff\xfe not json"
    assert "JSON" in bad["decode_error"]
    assert got[3].data["key_b64"] == base64.b64encode(b"\xff").decode() and got[3].data["value"] == "fine"
    assert got[4].data["key"] is None and got[4].data["value"] == [1, 2]
    # Each id is the cursor after its record.
    assert [cursor.decode(topic, e.id) for e in got] == [{0: i + 1} for i in range(5)]


def test_formats_key_filter_and_json_field_filter(
    gateway: GatewayProcess, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    produce(
        bootstrap,
        topic,
        [
            (f"u{i % 3}".encode(), json.dumps({"i": i, "o": {"tier": "gold" if i % 4 == 0 else "x"}}).encode())
            for i in range(40)
        ],
    )
    with stream(gateway.url, topic, {"from": "earliest", "key": "u1"}) as events:
        got = take(events, 13)
    assert len(got) == 13 and {e.data["key"] for e in got} == {"u1"}
    assert sorted(e.data["value"]["i"] for e in got) == [i for i in range(40) if i % 3 == 1]

    with stream(gateway.url, topic, {"from": "earliest", "filter": "o.tier=gold"}) as events:
        got = take(events, 10)
    assert sorted(e.data["value"]["i"] for e in got) == list(range(0, 40, 4))

    with stream(gateway.url, topic, {"from": "earliest", "filter": "i=7", "format": "string"}) as events:
        (one,) = take(events, 1)
    assert one.data["key"] == "u1" and json.loads(one.data["value"]) == {"i": 7, "o": {"tier": "x"}}

    produce(bootstrap, topic, [{"key": b"p1", "value": b'{"i": 99}', "partition": 1}])
    with stream(gateway.url, topic, {"from": "earliest", "value_format": "binary", "partitions": "1"}) as events:
        first = take(events, 1)[0]
    assert first.data["partition"] == 1 and json.loads(base64.b64decode(first.data["value"]))["i"] >= 0
    assert cursor.decode(topic, first.id).keys() == {1}


def test_from_a_time_starts_at_the_first_record_at_or_after_it(
    gateway: GatewayProcess, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(1)
    produce(bootstrap, topic, [{"value": b"1", "timestamp": 1_700_000_000_000 + i * 1000} for i in range(10)])
    rfc = datetime.fromtimestamp(1_700_000_005, UTC).isoformat().replace("+00:00", "Z")
    for start in ("1700000005000", rfc):
        with stream(gateway.url, topic, {"from": start}) as events:
            first = take(events, 1)[0]
        assert first.data["offset"] == 5 and first.data["timestamp"] == 1_700_000_005_000


def test_errors_before_the_stream_starts_use_the_error_table(gateway: GatewayProcess, topic: str) -> None:
    other = cursor.encode("another-topic", {0: 3})
    cases = [
        ("/topics/no-such-topic-xyz/events", {}, {}, 404, 40401),
        (f"/topics/{topic}/events", {"partitions": "5"}, {}, 404, 40402),
        (f"/topics/{topic}/events", {"partitions": "a,b"}, {}, 400, 40001),
        (f"/topics/{topic}/events", {"from": "yesterday"}, {}, 400, 40001),
        (f"/topics/{topic}/events", {"format": "xml"}, {}, 400, 40001),
        (f"/topics/{topic}/events", {"filter": "novalue"}, {}, 400, 40001),
        (f"/topics/{topic}/events", {"last_event_id": "not-a-cursor!"}, {}, 400, 40001),
        (f"/topics/{topic}/events", {}, {"Last-Event-ID": other}, 400, 40001),
        (f"/topics/{topic}/events", {"group": "g", "partitions": "0"}, {}, 400, 40001),
    ]
    with httpx.Client(base_url=gateway.url, timeout=10) as http:
        for path, params, headers, status, code in cases:
            r = http.get(path, params=params, headers=headers)
            assert r.status_code == status, (params, r.text)
            assert r.json() == {"error_code": code, "message": r.json()["message"]} and r.json()["message"]


def test_stream_cap_is_429_before_the_stream_starts(bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(1)
    with (
        GatewayProcess(bootstrap, env={"GATEWAY_SSE__MAX_STREAMS": "2"}) as gw,
        stream(gw.url, topic, {"from": "earliest"}),
        stream(gw.url, topic),
    ):
        r = httpx.get(f"{gw.url}/topics/{topic}/events", timeout=10)
        assert r.status_code == 429 and r.json()["error_code"] == 42901
        assert r.headers["retry-after"]
    # Closed streams give their places back.
    with GatewayProcess(bootstrap, env={"GATEWAY_SSE__MAX_STREAMS": "1"}) as gw:
        for _ in range(3):
            with stream(gw.url, topic, {"from": "earliest"}):
                pass
            time.sleep(0.3)
        with stream(gw.url, topic):
            pass


def test_exact_resume_across_reconnects_and_a_second_process(bootstrap: str, new_topic: Callable[..., str]) -> None:
    """Many short connections, alternating between two gateway processes, each resuming with the last id
    (header or query parameter) while records keep arriving: every record exactly once, in partition order."""
    topic = new_topic(3)
    total = 3000
    produce(bootstrap, topic, [(f"k{i}".encode(), json.dumps({"i": i}).encode()) for i in range(total // 2)])
    rng = random.Random(7)
    seen: list[Event] = []
    with GatewayProcess(bootstrap) as a, GatewayProcess(bootstrap) as b:
        last: str | None = None
        produced_rest = False
        hop = 0
        while len(seen) < total and hop < 200:
            gw = (a, b)[hop % 2]
            params = {"from": "earliest"}
            headers = {}
            if last is not None:
                if hop % 3 == 0:
                    params["last_event_id"] = last
                else:
                    headers["Last-Event-ID"] = last
            with stream(gw.url, topic, params, headers, read_timeout_s=1.5) as events:
                got = take(events, rng.randint(1, 400), timeout_s=10, partial=True)
            seen.extend(got)
            if got:
                last = got[-1].id
            if not produced_rest and len(seen) > total // 4:
                produce(
                    bootstrap,
                    topic,
                    [(f"k{i}".encode(), json.dumps({"i": i}).encode()) for i in range(total // 2, total)],
                )
                produced_rest = True
            hop += 1
    keys = [e.at for e in seen]
    assert len(keys) == len(set(keys)), "a record was repeated"
    assert sorted(e.data["value"]["i"] for e in seen) == list(range(total)), "a record was lost"
    for p in range(3):
        offsets = [off for part, off in keys if part == p]
        assert offsets == list(range(len(offsets))), f"partition {p} out of order"
    assert hop > 10


@pytest.mark.parametrize("partitions", [1, 4])
def test_cursor_names_every_partition_of_the_stream(
    gateway: GatewayProcess, bootstrap: str, new_topic: Callable[..., str], partitions: int
) -> None:
    topic = new_topic(partitions)
    produce(bootstrap, topic, [{"value": b"1", "partition": 0}])
    with stream(gateway.url, topic, {"from": "earliest"}) as events:
        (ev,) = take(events, 1)
    assert cursor.decode(topic, ev.id) == {p: (1 if p == 0 else 0) for p in range(partitions)}


@pytest.mark.parametrize(
    "params",
    [{"from": "earliest"}, {"from": "latest"}, {"group": "g-deleted"}],
    ids=["assign", "shared-feed", "group"],
)
def test_a_deleted_topic_ends_its_streams_with_an_error_event(
    bootstrap: str, admin: AdminClient, new_topic: Callable[..., str], params: dict[str, str]
) -> None:
    # librdkafka's consumer waits silently for a deleted topic; the gateway notices it in its metadata
    # and ends the stream, so an EventSource reconnects and gets the 404 instead of waiting forever.
    topic = new_topic(2)
    # Heartbeats (15 s) slower than the client's read timeout (10 s): a stream left open fails the test.
    env = {"GATEWAY_METADATA_REFRESH_S": "0.5"}
    with GatewayProcess(bootstrap, env=env) as gw, stream(gw.url, topic, params) as events:
        if params.get("from") != "earliest":
            # Wait until the stream is live (a shared feed or a group member starts at the end).
            time.sleep(3)
        produce(bootstrap, topic, [(b"k", b'{"n": 1}')])
        first = take(events, 1)
        assert [e.event for e in first] == ["record"]
        admin.delete_topics([topic])[topic].result(30)
        deleted_at = time.monotonic()
        rest = take(events, 1, timeout_s=30)
        assert [e.event for e in rest] == ["error"]
        assert rest[0].data == {"message": f"Topic '{topic}' was deleted; the stream ends."}
        assert time.monotonic() - deleted_at < 15
        # The stream is over: the server closed it.
        assert take(events, 1, timeout_s=5, partial=True) == []
        assert httpx.get(f"{gw.url}/topics/{topic}/events", timeout=5).status_code == 404
