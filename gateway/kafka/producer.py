"""The process's one long-lived, idempotent Producer and its bridge to asyncio.

Records are produced in batches (one HTTP request, one NDJSON chunk). Each batch has one result list
and at most one asyncio future, not one per record: librdkafka calls the per-record delivery callback
on the dedicated poll thread, which writes that record's result into the batch's list and counts it
down; a batch whose last record is reported is collected, and after each ``poll()`` the thread hands
every completed batch to the event loop with a single ``call_soon_threadsafe``. So a burst of 1,000
acknowledgements costs one loop wake-up, and a 1,000-record request one future. The loop thread only
reads a batch's results after its future resolved, which happens after the poll thread's last write.

``produce()`` itself never blocks: librdkafka only enqueues. The gateway keeps its own count of
records and bytes in flight and refuses work above it up front (``reserve``), so a batch is either
accepted whole or not produced at all; librdkafka's own queue limits are set above ours.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from gateway import errors
from gateway.kafka.delivery import Batch, Delivered, DeliveryHook, Outcome, Prepared, kafka_error_to_domain

__all__ = [
    "Batch",
    "Delivered",
    "DeliveryHook",
    "GatewayProducer",
    "Outcome",
    "Prepared",
    "kafka_error_to_domain",
]

log = logging.getLogger(__name__)

# The poll thread wakes at least this often to notice shutdown; deliveries wake it at once.
POLL_INTERVAL_S = 0.05


class GatewayProducer:
    """One idempotent, ``acks=all`` Producer with a poll thread and batched asyncio completion."""

    def __init__(
        self,
        conf: dict[str, Any],
        *,
        max_in_flight_records: int,
        max_in_flight_bytes: int,
        retry_after_s: int = 1,
        on_delivery: DeliveryHook | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        # A fatal error (e.g. the idempotent producer's sequence broken for good) leaves librdkafka's
        # producer unusable: remember it, refuse new work with 503, and let /healthz fail so the
        # orchestrator restarts the process rather than it answering 503 forever.
        self.fatal_error: str | None = None
        user_error_cb = conf.get("error_cb")

        def on_error(err: KafkaError) -> None:
            if err.fatal():
                self._fail(err)
            if user_error_cb is not None:
                user_error_cb(err)

        self._producer = Producer({**conf, "error_cb": on_error})
        self._max_records = max_in_flight_records
        self._max_bytes = max_in_flight_bytes
        self._retry_after_s = retry_after_s
        self._hook = on_delivery
        self.in_flight_records = 0
        self.in_flight_bytes = 0
        self._completed: list[Batch] = []
        self._stop = threading.Event()
        self._flush_timeout_s = 0.0
        self.undelivered_at_close = 0
        self._closed = False
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-producer-poll", daemon=True)
        self._thread.start()

    # -- poll thread -------------------------------------------------------------------------

    def _on_delivery(self, batch: Batch, index: int, err: KafkaError | None, msg: Message) -> None:
        # Runs on the poll thread, once per record: keep it to a few attribute reads. No asyncio here.
        if err is None:
            # A delivered message always has its partition and offset set.
            batch.results[index] = Delivered(msg.partition(), msg.offset(), msg.timestamp()[1])  # type: ignore[arg-type]
        else:
            batch.results[index] = kafka_error_to_domain(err, batch.topic, msg.partition(), self._retry_after_s)
            batch.failed += 1
            batch.failed_bytes += len(msg.value() or b"") + len(msg.key() or b"")
            names = batch.error_names
            if names is None:
                names = batch.error_names = {}
            name = err.name().lower().lstrip("_")
            names[name] = names.get(name, 0) + 1
        if batch.count_down():
            self._completed.append(batch)

    def _fail(self, err: KafkaError) -> None:
        if self.fatal_error is None:
            self.fatal_error = err.str()
            log.error("fatal Kafka producer error: %s", err.str())

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._producer.poll(POLL_INTERVAL_S)
            except KafkaException as exc:
                # confluent-kafka raises a fatal error from poll() (once) rather than through error_cb.
                # The thread must live on: the failed records' delivery reports still come through here.
                err = exc.args[0]
                if err.fatal():
                    self._fail(err)
                else:
                    log.error("Kafka producer poll failed: %s", err.str())
            self._dispatch()
        # Flushing here, on the only thread that ever serves callbacks, keeps _completed single-writer.
        self.undelivered_at_close = self._producer.flush(self._flush_timeout_s)
        self._dispatch()

    def _dispatch(self) -> None:
        if not self._completed:
            return
        done, self._completed = self._completed, []
        try:
            self._loop.call_soon_threadsafe(self._resolve, done)
        except RuntimeError:  # loop already closed: nobody is waiting any more
            pass

    # -- event loop thread -------------------------------------------------------------------

    def _resolve(self, done: list[Batch]) -> None:
        hook = self._hook
        for batch in done:
            self.in_flight_records -= batch.records
            self.in_flight_bytes -= batch.bytes
            if hook is not None and batch.records:
                hook(
                    batch.topic,
                    batch.records - batch.failed,
                    batch.bytes - batch.failed_bytes,
                    batch.error_names or {},
                )
            fut = batch.future
            if fut is not None and not fut.done():
                fut.set_result(None)

    def reserve(self, records: int, size: int) -> None:
        """Refuse a request up front if it would push the process over its in-flight bounds."""
        if self._closed:
            raise errors.Unavailable("The gateway is shutting down.", self._retry_after_s)
        if self.fatal_error is not None:
            raise errors.Unavailable(f"The gateway's Kafka producer failed: {self.fatal_error}.", self._retry_after_s)
        if self.in_flight_records + records > self._max_records or self.in_flight_bytes + size > self._max_bytes:
            raise errors.Backpressure(
                f"The gateway's producer queue is full ({self.in_flight_records} records in flight); retry shortly.",
                self._retry_after_s,
            )

    def produce_batch(
        self,
        topic: str,
        records: Sequence[Prepared],
        results: list[Outcome | None],
        *,
        wait: bool = True,
    ) -> Batch:
        """Enqueue ``records`` (all but those whose ``results`` slot is already an error).

        The returned batch's future (``wait=True``) resolves once every enqueued record has its
        delivery report: success only after the broker acknowledged with acks=all.
        """
        batch = Batch(topic, results, self._loop.create_future() if wait else None)
        todo: list[int] = []
        refused = batch.refused
        for i, r in enumerate(results):
            if r is None:
                todo.append(i)
            else:
                refused.append(i)
        # Guard count: the batch cannot complete before this thread has handed every record over.
        batch._last = len(todo)
        produce = self._producer.produce
        on_delivery = self._on_delivery
        partial = functools.partial
        produced = size_total = 0
        for i in todo:
            value, key, headers, partition, timestamp, size = records[i]
            try:
                # Positional for speed: (topic, value, key, partition, callback, on_delivery, timestamp,
                # headers). The report goes in ``callback``: a None there would override ``on_delivery``.
                produce(topic, value, key, partition, partial(on_delivery, batch, i), None, timestamp, headers)  # type: ignore[arg-type]
            except BufferError:
                results[i] = errors.Backpressure(
                    "The gateway's producer queue is full; retry shortly.", self._retry_after_s
                )
                refused.append(i)
                continue
            except KafkaException as exc:
                results[i] = kafka_error_to_domain(exc.args[0], topic, partition, self._retry_after_s)
                refused.append(i)
                continue
            produced += 1
            size_total += size
        batch.records = produced
        batch.bytes = size_total
        self.in_flight_records += produced
        self.in_flight_bytes += size_total
        # Records never handed over get no report: count them (and the guard) down here.
        for _ in range(len(todo) - produced + 1):
            if batch.count_down():
                self._resolve([batch])
        return batch

    def queue_length(self) -> int:
        return len(self._producer)

    async def close(self, executor: Executor, timeout_s: float) -> None:
        """Flush what is queued (bounded), stop the poll thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._flush_timeout_s = timeout_s
        self._stop.set()
        await asyncio.get_running_loop().run_in_executor(executor, self._thread.join, timeout_s + 2.0)
        await asyncio.sleep(0)  # let the last _resolve batch run
        if self.undelivered_at_close:
            log.warning("producer closed with %d records not delivered", self.undelivered_at_close)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn("GatewayProducer was never closed", ResourceWarning, stacklevel=1)
