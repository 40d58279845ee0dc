"""Everything with a lifetime: built in order at start-up, closed in reverse with bounded timeouts.

    executor  ->  admin client + metadata cache (+ refresh task)  ->  producer  ->  streams

Nothing here runs at import; ``create_app`` hands the settings in and routes reach the result
through ``gateway.api.deps``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.admin import AdminClient
from fastapi import FastAPI

from gateway import streams
from gateway.api.shutdown import watch_shutdown
from gateway.consumers import ConsumerRegistry
from gateway.hub import StreamHub
from gateway.kafka.admin import ClusterAdmin
from gateway.kafka.metadata import MetadataCache
from gateway.kafka.pool import ConsumerPool
from gateway.kafka.producer import GatewayProducer
from gateway.kafka.reader import ReaderPool
from gateway.metrics import Metrics
from gateway.observability import track_group_lag, with_stats
from gateway.publish import IdempotencyStore, Publisher, TopicAutoCreate, delivery_metrics
from gateway.quotas import MeteredPublisher
from gateway.settings import Settings
from gateway.tracing import Tracing

log = logging.getLogger(__name__)

PRODUCER_CLOSE_TIMEOUT_S = 10.0
# A metadata answer at start-up lets the first requests skip a round trip; Kafka may still be down.
STARTUP_METADATA_WAIT_S = 3.0


def producer_config(settings: Settings) -> dict[str, Any]:
    conf: dict[str, Any] = settings.kafka_common()
    conf.update(
        {
            # Durability is not configurable away: success means every in-sync replica has it.
            "enable.idempotence": "true",
            "acks": "all",
            # Java-client-compatible key hashing, so the same key lands on the same partition.
            "partitioner": "murmur2_random",
            # 0: a lone request is sent at once (p50 2 ms instead of 8 ms in bench/); under load
            # librdkafka still batches whatever queues while a request is in flight.
            "linger.ms": "0",
            # librdkafka allows 5 with idempotence. With 2, records that arrive while two requests are
            # out go together in the next one: fewer, larger produce requests. Measured (bench/): half
            # the gateway's CPU per record for batches, a fifth less per single-record request, and
            # less broker CPU; a lone request is not delayed (it never waits for a free slot).
            "max.in.flight.requests.per.connection": "2",
            # TCP_NODELAY, as the Java client sets it: with two requests out, Nagle's algorithm could hold
            # the second until the first is acknowledged (up to a delayed-ACK timeout on a real network).
            "socket.nagle.disable": "true",
            "message.timeout.ms": str(settings.produce.delivery_timeout_ms),
            "queue.buffering.max.messages": str(max(100_000, settings.produce.max_in_flight_records * 2)),
            "queue.buffering.max.kbytes": str(max(1_048_576, settings.produce.max_in_flight_bytes // 512)),
            "message.max.bytes": str(max(1_000_000, settings.produce.max_record_bytes + 4096)),
            # Never: an unknown topic is a 404 from cached metadata (API.md §1), not a side effect.
            "allow.auto.create.topics": "false",
        }
    )
    conf.update(settings.kafka_producer)
    # These two are the gateway's promise (API.md §1); an operator override is not honoured.
    conf["enable.idempotence"] = "true"
    conf["acks"] = "all"
    return conf


def consumer_config(settings: Settings, group: str | None = None) -> dict[str, Any]:
    conf: dict[str, Any] = settings.kafka_common()
    conf.update(
        {
            # Assign-mode consumers need a group id for librdkafka but never join or commit.
            "group.id": group or "kafka-http-gateway-unused",
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "enable.partition.eof": "false",
            "fetch.wait.max.ms": "50",
            # Prefetch per consumer: librdkafka's default queue (64 MB) let every stream of a slow
            # client hold ~100 MB (python -m bench.probes stream-memory). With a small queue the
            # fetcher must not pause librdkafka's default 1 s whenever it is full, or a fast stream
            # stalls behind it.
            "queued.max.messages.kbytes": "2048",
            "fetch.queue.backoff.ms": "10",
            "allow.auto.create.topics": "false",
        }
    )
    conf.update(settings.kafka_consumer)
    return conf


@dataclass
class Runtime:
    """The process's long-lived resources, as routes see them."""

    settings: Settings
    executor: ThreadPoolExecutor
    admin: AdminClient
    metadata: MetadataCache
    producer: GatewayProducer
    publisher: Publisher
    idempotency: IdempotencyStore
    metrics: Metrics
    consumers: ConsumerRegistry
    hub: StreamHub
    draining: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # Stateless reads (API.md §2.2); set by ``runtime`` right after construction.
    reads: ReaderPool = field(init=False)
    # Connected consumers lent to assign-mode SSE streams; set by ``runtime`` right after construction.
    pool: ConsumerPool = field(init=False)

    def not_ready_reason(self) -> str | None:
        if self.draining:
            return "gateway is draining for shutdown"
        if self.producer.fatal_error is not None:
            return f"Kafka producer failed: {self.producer.fatal_error}"
        return self.metadata.not_ready_reason()


@contextlib.asynccontextmanager
async def runtime(settings: Settings, metrics: Metrics, tracing: Tracing | None = None) -> AsyncIterator[Runtime]:
    async with contextlib.AsyncExitStack() as stack:
        executor = ThreadPoolExecutor(max_workers=settings.kafka_threads, thread_name_prefix="kafka")
        stack.callback(executor.shutdown, wait=False, cancel_futures=True)
        if tracing is not None:
            tracing.start()
            # Closed after the producer, so the spans its last delivery reports end are exported too.
            stack.push_async_callback(tracing.aclose)

        loop = asyncio.get_running_loop()
        admin = await loop.run_in_executor(executor, lambda: AdminClient(settings.kafka_common()))
        metadata = MetadataCache(admin, executor, settings.metadata_refresh_s, settings.metadata_max_age_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(metadata.refresh()), STARTUP_METADATA_WAIT_S)

        producer = GatewayProducer(
            with_stats(producer_config(settings), settings, metrics),
            max_in_flight_records=settings.produce.max_in_flight_records,
            max_in_flight_bytes=settings.produce.max_in_flight_bytes,
            retry_after_s=settings.produce.retry_after_s,
            on_delivery=delivery_metrics(metrics),
        )
        stack.push_async_callback(producer.close, executor, PRODUCER_CLOSE_TIMEOUT_S)
        limits = settings.produce
        auto_create = (
            TopicAutoCreate(
                ClusterAdmin(admin, executor, settings.request_timeout_s),
                metadata,
                limits.auto_create_partitions,
                limits.auto_create_replication_factor,
            )
            if limits.auto_create_topics
            else None
        )

        rt = Runtime(
            settings=settings,
            executor=executor,
            admin=admin,
            metadata=metadata,
            producer=producer,
            # Charges per-principal produce quotas (gateway/quotas.py) on every produce path; with tracing
            # on, also makes a span per batch and writes trace headers into its records (gateway/tracing/).
            publisher=(MeteredPublisher if tracing is None else tracing.publisher)(producer, metadata, auto_create),
            idempotency=IdempotencyStore(settings.produce.idempotency_window_s, settings.produce.idempotency_max_keys),
            metrics=metrics,
            consumers=ConsumerRegistry(consumer_config(settings), settings.confluent, executor),
            hub=StreamHub(settings.sse, consumer_config(settings), executor, metrics, metadata),
        )
        rt.pool = ConsumerPool(
            consumer_config(settings),
            executor,
            max_idle=settings.sse.pool_max_idle,
            warm=settings.sse.pool_warm,
            idle_s=settings.sse.pool_idle_s,
            metrics=metrics,
        )
        rt.pool.start()
        # Closed after the hub has begun draining streams; consumers still lent are closed as they come back.
        stack.push_async_callback(rt.pool.close)
        stack.push_async_callback(rt.hub.close)
        # Confluent v2 consumer instances close before the producer and the executor they use.
        stack.push_async_callback(rt.consumers.close)
        rt.tasks.append(asyncio.create_task(rt.consumers.run(), name="consumer-instance-expiry"))
        refresher = asyncio.create_task(metadata.run(), name="metadata-refresh")
        rt.tasks.append(refresher)
        rt.reads = ReaderPool(
            ReaderPool.reader_config(consumer_config(settings)),
            executor,
            settings.reads.pool_size,
            settings.reads.fetch_timeout_s,
            ClusterAdmin(admin, executor, settings.request_timeout_s).watermarks,
            settings.reads.max_wait_s,
        )
        stack.push_async_callback(rt.reads.close)
        if settings.group_lag_interval_s > 0:
            lag = track_group_lag(
                ClusterAdmin(admin, executor, settings.request_timeout_s),
                metrics,
                str(settings.kafka_common().get("client.id", "")),
                settings.group_lag_interval_s,
            )
            rt.tasks.append(asyncio.create_task(lag, name="group-lag"))
        # Turns the gateway unready and ends every stream with a goodbye as soon as SIGTERM arrives.
        rt.tasks.append(asyncio.create_task(watch_shutdown(rt), name="shutdown-watch"))

        async def cancel_tasks() -> None:
            rt.draining = True
            for task in rt.tasks:
                task.cancel()
            await asyncio.gather(*rt.tasks, return_exceptions=True)

        stack.push_async_callback(cancel_tasks)
        log.info("gateway started; kafka %s", settings.kafka_common().get("bootstrap.servers"))
        if not streams.COMPILED:
            log.warning("gateway._frames is not built (pip install the package): SSE streams encode in Python")
        yield rt
        rt.draining = True


def lifespan_for(settings: Settings, metrics: Metrics, tracing: Tracing | None = None) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with runtime(settings, metrics, tracing) as rt:
            app.state.runtime = rt
            yield

    return lifespan
