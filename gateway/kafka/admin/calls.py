"""What every admin operation shares: the call on the Kafka executor, the bounded wait, Kafka's errors as ours.

The AdminClient's calls only enqueue a request and hand back ``concurrent.futures.Future`` objects,
which are awaited through ``asyncio.wrap_future`` so no thread sits blocked while the broker answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from gateway import errors

T = TypeVar("T")

# librdkafka / broker error codes (rdkafka.h, Kafka protocol), named once.
_TOPIC_EXISTS = KafkaError.TOPIC_ALREADY_EXISTS
_UNKNOWN_TOPIC = KafkaError.UNKNOWN_TOPIC_OR_PART
_INVALID = {
    KafkaError.INVALID_REPLICATION_FACTOR,
    KafkaError.INVALID_PARTITIONS,
    KafkaError.INVALID_CONFIG,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.INVALID_REPLICA_ASSIGNMENT,
    KafkaError.POLICY_VIOLATION,
    KafkaError.INVALID_REQUEST,
}
_FORBIDDEN = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}
_GROUP_GONE = {KafkaError.GROUP_ID_NOT_FOUND, KafkaError.GROUP_SUBSCRIBED_TO_TOPIC}


@dataclass(frozen=True)
class Broker:
    id: int
    host: str
    port: int
    rack: str | None = None


def broker_of(node: Any) -> Broker | None:
    if node is None or getattr(node, "id", -1) is None or node.id < 0:
        return None
    return Broker(int(node.id), str(node.host), int(node.port), node.rack or None)


def enum_name(value: Any) -> str:
    """``ConsumerGroupState.STABLE`` -> ``Stable`` (Kafka's own spelling in its tools)."""
    name = str(getattr(value, "name", value))
    return "".join(part.capitalize() for part in name.split("_"))


def kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def to_domain(exc: BaseException, *, topic: str | None = None, group: str | None = None) -> errors.GatewayError:
    """A failed admin call as the gateway's vocabulary; the broker's own reason stays in the message."""
    if isinstance(exc, errors.GatewayError):
        return exc
    err = kafka_error(exc)
    if err is None:
        if isinstance(exc, (ValueError, TypeError)):
            # librdkafka validates arguments client-side (e.g. a replication factor over 10000).
            return errors.InvalidRecord(f"Kafka refused the request: {exc}.")
        if isinstance(exc, TimeoutError):
            return errors.Unavailable("Kafka did not answer the admin request in time.")
        return errors.Unavailable(f"Kafka admin request failed: {exc}.")
    code, reason = err.code(), err.str()
    if code == _TOPIC_EXISTS and topic is not None:
        return errors.Conflict(f"Topic '{topic}' already exists.")
    if code == _UNKNOWN_TOPIC and topic is not None:
        return errors.TopicNotFound(topic)
    if code in _GROUP_GONE and group is not None:
        return errors.ConsumerGroupNotFound(f"Consumer group '{group}' not found.")
    if code in _INVALID:
        return errors.InvalidRecord(f"Kafka refused the request: {reason}")
    if code in _FORBIDDEN:
        return errors.Forbidden(f"Kafka refused the request: {reason}")
    return errors.Unavailable(f"Kafka admin request failed: {reason}")


class AdminCalls:
    """One AdminClient, its blocking parts on ``executor``, every answer awaited within ``timeout_s``."""

    def __init__(self, admin: AdminClient, executor: Executor, timeout_s: float) -> None:
        self._admin = admin
        self._executor = executor
        self._timeout_s = timeout_s

    async def _submit(self, call: Callable[[], T]) -> T:
        """Make the AdminClient call on the Kafka executor (it may block briefly on its queue)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def _result(self, fut: Future[Any]) -> Any:
        # The request itself carries request_timeout; the extra second only guards a lost answer.
        return await asyncio.wait_for(asyncio.wrap_future(fut), self._timeout_s + 1.0)
