"""The process's one long-lived, idempotent producer and its bridge to asyncio.

Records are produced in batches (one HTTP request, one NDJSON chunk). Each batch has one result list
and at most one asyncio future, not one per record. The producer is ``gateway.kafka._rdkafka``: the
librdkafka that confluent-kafka bundles, driven from Cython so that delivery reports are handled in C
(each record's partition, offset and timestamp written into its batch's array) and only a finished
batch comes back to Python. librdkafka signals a pipe when reports (or errors, logs, statistics) are
waiting; the event loop watches the pipe and serves them on its own thread. No poll thread, no per-record
callback into Python, no GIL handed between threads per report: a burst of 1,000 acknowledgements costs
one wake-up, and a 1,000-record request one future.

``produce()`` itself never blocks: librdkafka only enqueues. The gateway keeps its own count of
records and bytes in flight and refuses work above it up front (``reserve``), so a batch is either
accepted whole or not produced at all; librdkafka's own queue limits are set above ours.
"""

from __future__ import annotations

import asyncio
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

# First: gateway.kafka._rdkafka links to the librdkafka this import loads (same soname).
from confluent_kafka import KafkaError

from gateway import errors
from gateway.kafka import _rdkafka
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

# How long close() waits for the reports of records it gave up on (they answer their requests 503).
PURGE_WAIT_S = 1.0


class GatewayProducer:
    """One idempotent, ``acks=all`` producer whose delivery reports resolve whole batches on the event loop."""

    def __init__(
        self,
        conf: dict[str, Any],
        *,
        max_in_flight_records: int,
        max_in_flight_bytes: int,
        retry_after_s: int = 1,
        on_delivery: DeliveryHook | None = None,
    ) -> None:
        if "error_cb" in conf:
            raise ValueError("GatewayProducer handles librdkafka's errors itself; no error_cb")
        self._loop = asyncio.get_running_loop()
        # A fatal error (e.g. the idempotent producer's sequence broken for good) leaves librdkafka's
        # producer unusable: remember it, refuse new work with 503, and let /healthz fail so the
        # orchestrator restarts the process rather than it answering 503 forever.
        self.fatal_error: str | None = None
        self._max_records = max_in_flight_records
        self._max_bytes = max_in_flight_bytes
        self._retry_after_s = retry_after_s
        self._hook = on_delivery
        self.in_flight_records = 0
        self.in_flight_bytes = 0
        self.undelivered_at_close = 0
        self._closed = False
        self._idle = asyncio.Event()  # set whenever nothing is in flight (close() waits for it)
        # librdkafka writes a byte here when events start waiting; non-blocking on both ends.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self._producer = _rdkafka.Producer(
                {**conf, "error_cb": self._on_error}, self._wake_w, self._resolve, self._on_failure, Delivered
            )
        except BaseException:
            os.close(self._wake_r)
            os.close(self._wake_w)
            raise
        self._loop.add_reader(self._wake_r, self._serve)
        # The pipe is only written when librdkafka's queue turns non-empty: serve whatever it queued
        # (start-up logs) before the pipe was set up, or nothing would ever wake us.
        self._loop.call_soon(self._serve)

    # -- librdkafka's events, served on the event loop --------------------------------------------

    def _serve(self) -> None:
        # One read empties the pipe (a byte per wake-up); were it not empty, the loop would call again.
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:  # served already, by the start-up call or close()
            pass
        self._producer.serve()

    def _on_error(self, code: int, name: str, text: str, fatal: bool) -> None:
        # Other errors (a broker down, a connection refused) are transient: librdkafka retries and logs them.
        if fatal and self.fatal_error is None:
            self.fatal_error = f"{name}: {text}"
            log.error("fatal Kafka producer error: %s", self.fatal_error)

    def _on_failure(self, batch: Batch, index: int, code: int, partition: int, size: int) -> None:
        err = KafkaError(code)
        batch.results[index] = kafka_error_to_domain(err, batch.topic, partition, self._retry_after_s)
        batch.failed += 1
        batch.failed_bytes += size
        names = batch.error_names
        if names is None:
            names = batch.error_names = {}
        name = err.name().lower().lstrip("_")
        names[name] = names.get(name, 0) + 1

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
        if not self.in_flight_records:
            self._idle.set()

    # -- producing ---------------------------------------------------------------------------------

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
        # Slots already final (bad partition, NDJSON lines that failed): usually none, found in C then.
        batch.refused = (
            [] if results.count(None) == len(results) else [i for i, r in enumerate(results) if r is not None]
        )
        produced, size, refused = self._producer.produce(topic, batch, results, records)
        for i, code in refused:
            if code == KafkaError._QUEUE_FULL:
                results[i] = errors.Backpressure(
                    "The gateway's producer queue is full; retry shortly.", self._retry_after_s
                )
            else:
                results[i] = kafka_error_to_domain(KafkaError(code), topic, records[i][3], self._retry_after_s)
            batch.refused.append(i)
        batch.records = produced
        batch.bytes = size
        self.in_flight_records += produced
        self.in_flight_bytes += size
        if not produced:  # nothing will be reported
            self._resolve([batch])
        return batch

    def queue_length(self) -> int:
        return int(self._producer.queue_length())

    async def _until_idle(self, timeout_s: float) -> None:
        if self.in_flight_records:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except TimeoutError:
                pass

    async def close(self, executor: Executor, timeout_s: float) -> None:
        """Wait (bounded) for what is in flight, give up on the rest, free librdkafka. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._until_idle(timeout_s)  # reports arrive through _serve meanwhile
        self.undelivered_at_close = self._producer.queue_length()
        if self.undelivered_at_close:
            log.warning("producer closed with %d records not delivered", self.undelivered_at_close)
            # Their requests get an error answer rather than waiting forever.
            self._producer.purge()
            await self._until_idle(PURGE_WAIT_S)
        self._serve()
        self._loop.remove_reader(self._wake_r)
        await self._loop.run_in_executor(executor, self._producer.destroy)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            warnings.warn("GatewayProducer was never closed", ResourceWarning, stacklevel=1)
