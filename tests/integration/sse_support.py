"""Helpers for the SSE tests: produce straight to Kafka, and read events or raw lines from a live stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from confluent_kafka import Producer
from httpx_sse import connect_sse

from tests.helpers import record_events


@dataclass
class Event:
    id: str
    event: str
    data: dict[str, Any]

    @property
    def at(self) -> tuple[int, int]:
        return self.data["partition"], self.data["offset"]


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None] | dict[str, Any]]) -> int:
    """Write records with confluent-kafka directly (any bytes, tombstones); returns how many."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "partitioner": "murmur2_random"})
    n = 0
    for rec in records:
        if isinstance(rec, dict):
            producer.produce(topic, **rec)
        else:
            producer.produce(topic, key=rec[0], value=rec[1])
        n += 1
        if n % 10_000 == 0:
            producer.flush(30)
    assert producer.flush(30) == 0
    return n


@contextmanager
def stream(
    url: str,
    topic: str,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    read_timeout_s: float = 10.0,
) -> Iterator[Iterator[Event]]:
    """Record/tombstone/error events of one SSE connection (a stall longer than the read timeout raises)."""
    with (
        httpx.Client(base_url=url, timeout=httpx.Timeout(read_timeout_s, connect=5.0)) as http,
        connect_sse(http, "GET", f"/topics/{topic}/events", params=params or {}, headers=headers or {}) as source,
    ):
        assert source.response.status_code == 200, source.response.read()

        def events() -> Iterator[Event]:
            for sse in record_events(source):
                yield Event(sse.id, sse.event, json.loads(sse.data))

        yield events()


def take(events: Iterator[Event], n: int, timeout_s: float = 20.0, partial: bool = False) -> list[Event]:
    """Up to ``n`` events; with ``partial`` a read timeout ends the list instead of failing."""
    out: list[Event] = []
    deadline = time.monotonic() + timeout_s
    try:
        for ev in events:
            out.append(ev)
            if len(out) >= n or time.monotonic() > deadline:
                break
    except httpx.ReadTimeout:
        if not partial:
            raise
    return out


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when absent)."""
    text = httpx.get(url + "/metrics", timeout=5).text
    want = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


def wait_until(predicate: Any, timeout_s: float = 20.0, interval_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError("condition not met in time")
