"""Delivery reports as data: a record ready for librdkafka, where Kafka stored it, and a batch's state.

A ``Batch`` is filled in from librdkafka's delivery reports and read once its future resolved (see
``gateway.kafka.producer``). Kafka's errors are translated into the gateway's vocabulary here, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec
from confluent_kafka import KafkaError

from gateway import errors

# librdkafka error codes (see rdkafka.h), named once here.
_ERR_MSG_TIMED_OUT = KafkaError._MSG_TIMED_OUT
_ERR_UNKNOWN_PARTITION = KafkaError._UNKNOWN_PARTITION
_ERR_UNKNOWN_TOPIC = KafkaError._UNKNOWN_TOPIC
_ERR_TOPIC_NOT_FOUND = KafkaError.UNKNOWN_TOPIC_OR_PART
_ERR_TOO_LARGE = KafkaError.MSG_SIZE_TOO_LARGE
_ERR_TOPIC_DENIED = KafkaError.TOPIC_AUTHORIZATION_FAILED
_ERR_PURGED_IN_FLIGHT = KafkaError._PURGE_INFLIGHT
_ERR_PURGED_QUEUED = KafkaError._PURGE_QUEUE

# A key or value as the producer takes it: bytes, text (written as UTF-8), or JSON text still in the
# request body (``msgspec.Raw``, read in place). ``None`` is Kafka's null.
Payload = bytes | str | msgspec.Raw
# A record ready for ``Producer.produce``: value, key, headers, partition (-1: let the partitioner
# choose), timestamp (0: now), size in bytes (key + value + headers). A plain tuple, because one is
# built per record on the hot path.
Prepared = tuple[Payload | None, Payload | None, list[tuple[str, bytes]] | None, int, int, int]


class Delivered(msgspec.Struct):
    """Where Kafka stored one record; encodes straight to the API's result object."""

    partition: int
    offset: int
    timestamp: int


Outcome = Delivered | errors.GatewayError
# What each delivery report means: the error names the metrics count by, and the
# on_delivery hook (records, bytes, {error name: count}) the producer calls per completed batch.
DeliveryHook = Callable[[str, int, int, dict[str, int]], None]


def kafka_error_to_domain(
    err: KafkaError, topic: str, partition: int | None = None, retry_after_s: int = 1
) -> errors.GatewayError:
    """Translate a librdkafka error into the gateway's vocabulary."""
    code = err.code()
    if code == _ERR_MSG_TIMED_OUT:
        # Timed out after being sent is "possibly persisted" in librdkafka's words: say so.
        return errors.Unavailable(
            "Kafka did not acknowledge the record within the delivery timeout; it may or may not have been "
            "written. Retry (with an Idempotency-Key to be safe).",
            retry_after_s,
        )
    if code == _ERR_PURGED_IN_FLIGHT:
        return errors.Unavailable(
            "The gateway shut down before Kafka acknowledged the record; it may or may not have been written. "
            "Retry (with an Idempotency-Key to be safe).",
            retry_after_s,
        )
    if code == _ERR_PURGED_QUEUED:
        return errors.Unavailable("The gateway shut down before sending the record; it was not written.", retry_after_s)
    if code in (_ERR_UNKNOWN_TOPIC, _ERR_TOPIC_NOT_FOUND):
        return errors.TopicNotFound(topic)
    if code == _ERR_UNKNOWN_PARTITION:
        return errors.PartitionNotFound(topic, -1 if partition is None or partition < 0 else partition)
    if code == _ERR_TOO_LARGE:
        return errors.PayloadTooLarge("Record is larger than Kafka accepts (max.message.bytes).")
    if code == _ERR_TOPIC_DENIED:
        # Not the caller's scopes (checked before this): Kafka's ACLs for the gateway's own user. A retry
        # cannot help, so no 503 with Retry-After.
        return errors.KafkaDenied("write", topic, err.str())
    return errors.Unavailable(f"Kafka did not accept the record: {err.str()}.", retry_after_s)


class Batch:
    """Delivery state of records produced together.

    ``results[i]`` is record i's ``Delivered`` or error once ``future`` (if any) has resolved.
    Everything here is read and written on the event loop's thread.
    """

    __slots__ = (
        "bytes",
        "error_names",
        "failed",
        "failed_bytes",
        "future",
        "records",
        "refused",
        "reports",
        "results",
        "topic",
    )

    def __init__(self, topic: str, results: list[Outcome | None], future: asyncio.Future[None] | None) -> None:
        self.topic = topic
        self.results = results
        self.future = future
        self.records = 0  # produced (handed to librdkafka)
        self.bytes = 0
        self.failed = 0  # delivery reports with an error
        self.failed_bytes = 0
        self.error_names: dict[str, int] | None = None
        # Slots that failed before reaching librdkafka.
        self.refused: list[int] = []
        # The delivery reports once all came back (``gateway.kafka._rdkafka.Reports``), kept as C data:
        # ``outcomes()`` turns them into ``Delivered`` objects, ``results_json()`` into the answer directly.
        self.reports: Any = None

    def outcomes(self) -> list[Outcome]:
        """Results in input order; only valid once the batch completed."""
        if self.reports is not None:
            self.reports.fill(self.results)
        return self.results  # type: ignore[return-value]

    def results_json(self) -> bytes | None:
        """``{"results": [...]}`` as the produce route answers it when every record was delivered (else
        ``None``): written from the reports without a ``Delivered`` object per record."""
        if self.failed or self.refused or self.reports is None:
            return None
        return self.reports.json(len(self.results))  # type: ignore[no-any-return]
