"""The process's one long-lived, idempotent Producer and its bridge to asyncio.

librdkafka calls delivery callbacks on whichever thread calls ``poll()``; here that is one dedicated
poll thread. Callbacks only append to a list; after each ``poll()`` the thread hands the whole batch to
the event loop with a single ``call_soon_threadsafe``, so futures are resolved on the loop thread and
a burst of 1,000 acknowledgements costs one wake-up, not 1,000.

``produce()`` itself never blocks: librdkafka only enqueues. The gateway keeps its own count of
records and bytes in flight and refuses work above it up front (``reserve``), so a batch is either
accepted whole or not produced at all; librdkafka's own queue limits sit above ours.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from gateway import errors

log = logging.getLogger(__name__)

# librdkafka error codes (see rdkafka.h), named once here.
_ERR_MSG_TIMED_OUT = KafkaError._MSG_TIMED_OUT
_ERR_UNKNOWN_PARTITION = KafkaError._UNKNOWN_PARTITION
_ERR_UNKNOWN_TOPIC = KafkaError._UNKNOWN_TOPIC
_ERR_TOPIC_NOT_FOUND = KafkaError.UNKNOWN_TOPIC_OR_PART
_ERR_TOO_LARGE = KafkaError.MSG_SIZE_TOO_LARGE


class Delivered(NamedTuple):
    partition: int
    offset: int
    timestamp: int


def kafka_error_to_domain(err: KafkaError, topic: str, partition: int | None = None) -> errors.GatewayError:
    """Translate a librdkafka error into the gateway's vocabulary."""
    code = err.code()
    if code == _ERR_MSG_TIMED_OUT:
        return errors.Unavailable("Delivery to Kafka timed out; the record was not written.")
    if code in (_ERR_UNKNOWN_TOPIC, _ERR_TOPIC_NOT_FOUND):
        return errors.TopicNotFound(topic)
    if code == _ERR_UNKNOWN_PARTITION:
        return errors.PartitionNotFound(topic, -1 if partition is None else partition)
    if code == _ERR_TOO_LARGE:
        return errors.PayloadTooLarge("Record is larger than Kafka accepts (message.max.bytes).")
    return errors.Unavailable(f"Kafka did not accept the record: {err.str()}.")


class GatewayProducer:
    """One idempotent, ``acks=all`` Producer with a poll thread and asyncio delivery futures."""

    def __init__(
        self,
        conf: dict[str, Any],
        *,
        max_in_flight_records: int,
        max_in_flight_bytes: int,
        retry_after_s: int = 1,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(conf)
        self._max_records = max_in_flight_records
        self._max_bytes = max_in_flight_bytes
        self._retry_after_s = retry_after_s
        self.in_flight_records = 0
        self.in_flight_bytes = 0
        self._reports: list[tuple[asyncio.Future[Delivered], int, KafkaError | None, Message]] = []
        self._stop = threading.Event()
        self._flush_timeout_s = 0.0
        self.undelivered_at_close = 0
        self._closed = False
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-producer-poll", daemon=True)
        self._thread.start()

    # -- poll thread -------------------------------------------------------------------------

    def _on_delivery(self, fut: asyncio.Future[Delivered], size: int, err: KafkaError | None, msg: Message) -> None:
        # Runs on the poll thread: no asyncio calls here, only collect.
        self._reports.append((fut, size, err, msg))

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)
            self._dispatch()
        # Flushing here, on the only thread that ever serves callbacks, keeps _reports single-writer.
        self.undelivered_at_close = self._producer.flush(self._flush_timeout_s)
        self._dispatch()

    def _dispatch(self) -> None:
        if not self._reports:
            return
        batch, self._reports = self._reports, []
        try:
            self._loop.call_soon_threadsafe(self._resolve, batch)
        except RuntimeError:  # loop already closed: nobody is waiting any more
            pass

    # -- event loop thread -------------------------------------------------------------------

    def _resolve(self, batch: list[tuple[asyncio.Future[Delivered], int, KafkaError | None, Message]]) -> None:
        for fut, size, err, msg in batch:
            self.in_flight_records -= 1
            self.in_flight_bytes -= size
            if fut.done():
                continue
            if err is not None:
                fut.set_exception(kafka_error_to_domain(err, msg.topic() or "", msg.partition()))
            else:
                # A delivered message always has its partition and offset set.
                fut.set_result(Delivered(msg.partition() or 0, msg.offset() or 0, msg.timestamp()[1]))

    def reserve(self, records: int, size: int) -> None:
        """Refuse a request up front if it would push the process over its in-flight bounds."""
        if self._closed:
            raise errors.Unavailable("The gateway is shutting down.", self._retry_after_s)
        if self.in_flight_records + records > self._max_records or self.in_flight_bytes + size > self._max_bytes:
            raise errors.Backpressure("The gateway's producer queue is full; retry shortly.", self._retry_after_s)

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        *,
        partition: int | None = None,
        timestamp: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Delivered]:
        """Enqueue one record; the future resolves once the broker acknowledged it (acks=all)."""
        fut: asyncio.Future[Delivered] = self._loop.create_future()
        size = (len(value) if value else 0) + (len(key) if key else 0)
        kwargs: dict[str, Any] = {}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        if headers:
            kwargs["headers"] = headers
        try:
            self._producer.produce(
                topic, value, key, on_delivery=functools.partial(self._on_delivery, fut, size), **kwargs
            )
        except BufferError as exc:
            raise errors.Backpressure(
                "The gateway's producer queue is full; retry shortly.", self._retry_after_s
            ) from exc
        except KafkaException as exc:
            raise kafka_error_to_domain(exc.args[0], topic, partition) from exc
        self.in_flight_records += 1
        self.in_flight_bytes += size
        return fut

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
