"""The reference: confluent-kafka used directly from Python, as a well-written application would.

The native Producer gets the gateway's own producer configuration (``producer_config``: acks=all,
idempotence, linger, partitioner, requests in flight), produces the same key/value bytes, and counts each
record only when its delivery report says it was written, exactly what the gateway waits for before it answers.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

PRODUCE_POLL_EVERY = 1000


def native_producer_config(bootstrap: str, **overrides: str) -> dict[str, Any]:
    # Imported here so ``--gateway-dir`` (put first on sys.path) decides which gateway's config it is.
    from gateway.lifespan import producer_config
    from gateway.settings import Settings

    conf = producer_config(Settings(kafka={"bootstrap.servers": bootstrap}))
    conf.pop("logger", None)
    # The gateway's cap of 2 requests in flight per connection included: measured on 2026-11-28, the native
    # client with librdkafka's own limit (5 with idempotence) was no faster in a tight loop and 40 % slower
    # awaiting batches of 100 (many small requests), so the gateway's choice is the stronger reference.
    conf["client.id"] = "bench-native"
    conf.update(overrides)
    return conf


def create_topic(admin: AdminClient, partitions: int, prefix: str = "bench") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(name, partitions, 1)], operation_timeout=10)[name].result(timeout=15)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=5).topics.get(name)
        if md is None or md.error is not None or len(md.partitions) != partitions:
            time.sleep(0.05)
            continue
        if all(p.leader >= 0 for p in md.partitions.values()):
            return name
        time.sleep(0.05)
    raise TimeoutError(f"topic {name} not ready")


@dataclass
class NativeResult:
    records: int
    failed: int
    seconds: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        """This process's CPU (Python and librdkafka threads) per record."""
        return self.cpu_s / self.records * 1e6 if self.records else float("nan")


def produce(bootstrap: str, topic: str, pairs: Sequence[tuple[bytes | None, bytes]], count: int) -> NativeResult:
    """Produce ``count`` records cycling through ``pairs`` (key, value); wait for every delivery report."""
    producer = Producer(native_producer_config(bootstrap))
    delivered = 0
    failed = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal delivered, failed
        if err is None:
            delivered += 1
        else:
            failed += 1

    # Connect and learn the topic's metadata before the clock starts, as a long-lived app would have.
    producer.list_topics(topic, timeout=10)
    t0, c0 = time.monotonic(), time.process_time()
    n = len(pairs)
    produce_ = producer.produce
    for i in range(count):
        key, value = pairs[i % n]
        while True:
            try:
                produce_(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.005)
        if i % PRODUCE_POLL_EVERY == 0:
            producer.poll(0)
    producer.flush(120)
    elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
    return NativeResult(delivered, failed, elapsed, cpu)


def produce_awaited_batches(
    bootstrap: str, topic: str, pairs: Sequence[tuple[bytes | None, bytes]], clients: int, seconds: float
) -> NativeResult:
    """The gateway's load shape without HTTP: ``clients`` threads, each producing all of ``pairs`` and
    waiting for their delivery reports before the next batch, for ``seconds``; one thread polls.

    A Python service that takes batches from its callers and answers each once Kafka acknowledged it
    does this. It is not the target's reference (``produce``, the client's own ceiling), but says how much
    of the gap is the gateway and how much is the load shape: at most clients * len(pairs) records are
    ever outstanding, so librdkafka's requests are far smaller than in a tight loop.
    """
    producer = Producer(native_producer_config(bootstrap))
    producer.list_topics(topic, timeout=10)
    stop = threading.Event()
    stop_polling = threading.Event()
    counts = [0] * clients
    failed = [0] * clients

    def poller() -> None:
        while not stop_polling.is_set():
            producer.poll(0.05)

    def client(c: int) -> None:
        produce_ = producer.produce
        while not stop.is_set():
            left = [len(pairs)]
            done = threading.Event()

            def on_delivery(err: Any, _msg: Any, left: list[int] = left, done: threading.Event = done) -> None:
                if err is not None:
                    failed[c] += 1
                left[0] -= 1
                if left[0] == 0:
                    done.set()

            for key, value in pairs:
                produce_(topic, value, key, on_delivery=on_delivery)
            if not done.wait(30):
                break
            counts[c] += len(pairs)

    polling = threading.Thread(target=poller, daemon=True)
    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    polling.start()
    t0, c0 = time.monotonic(), time.process_time()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:  # each finishes the batch it is waiting for, which counts
        t.join(35)
    elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
    stop_polling.set()
    polling.join(5)
    producer.flush(30)
    return NativeResult(sum(counts) - sum(failed), sum(failed), elapsed, cpu)


def sequential_latencies(bootstrap: str, topic: str, key: bytes, value: bytes, seconds: float) -> list[float]:
    """One record at a time, each awaited to its delivery report: the floor under a single produce (ms)."""
    producer = Producer(native_producer_config(bootstrap))
    producer.list_topics(topic, timeout=10)
    done: list[float] = []
    out: list[float] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        done.append(time.monotonic())

    producer.produce(topic, value, key, on_delivery=on_delivery)  # connect and warm up
    producer.flush(10)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        done.clear()
        t = time.monotonic()
        producer.produce(topic, value, key, on_delivery=on_delivery)
        while not done:
            producer.poll(0.05)
        out.append((done[0] - t) * 1000)
    producer.flush(10)
    return out


def consume(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 120.0, *, connected: bool = False
) -> NativeResult:
    """Read ``expected`` records from the beginning with assign() (no group), as the gateway's SSE does.

    The clock starts before the consumer is created: what an application that starts a reader sees,
    connection and start-up (~0.5 s here) included. ``connected``: the consumer is created and connected
    first, as a long-lived application's (or the gateway's pooled one) would be; the clock starts at assign().
    """
    t0, c0 = time.monotonic(), time.process_time()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-native-unused",
            "enable.auto.commit": "false",
            "enable.partition.eof": "false",
            "fetch.wait.max.ms": "50",
            # librdkafka pauses fetching for fetch.queue.backoff.ms (default 1 s) once its prefetch queue
            # holds queued.min.messages; a reader draining faster than the fetcher then stalls for a whole
            # second in some runs (105k against 250k+ records/s between identical runs here;
            # `python -m bench.probes consumer-start` shows it).
            # A reader built for throughput sets it low. (The gateway keeps the default: it drains slower
            # than the fetcher, and 10 ms made no difference to it in paired runs.)
            "fetch.queue.backoff.ms": "10",
        }
    )
    if connected:
        consumer.list_topics(topic, timeout=10)
        t0, c0 = time.monotonic(), time.process_time()
    got = 0
    try:
        consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
        deadline = t0 + timeout_s
        while got < expected and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                if msg.error() is None:
                    # Touch what an application would use, as the gateway does for every event.
                    msg.key(), msg.value(), msg.offset()
                    got += 1
        elapsed, cpu = time.monotonic() - t0, time.process_time() - c0
    finally:
        consumer.close()
    return NativeResult(got, expected - got, elapsed, cpu)


def producer(bootstrap: str, **overrides: str) -> Producer:
    return Producer(native_producer_config(bootstrap, **overrides))
