"""Confluent REST Proxy v2 consumer instances: named, stateful Kafka consumers that clients drive over HTTP.

A client creates an instance in a group, subscribes it (or assigns partitions), then fetches records,
commits and seeks through further requests. The instance lives in this process only; the registry
owns it, closes it when it has been idle longer than ``instance_timeout_s`` and on shutdown.

Deliberate differences from the Confluent proxy (and Karapace):

- ``max_bytes`` never drops a record. Records that do not fit a response stay buffered in the
  instance and open the next response; a record larger than ``max_bytes`` is returned alone, so a
  fetch always makes progress.
- "Consumed" means "returned to the client": a commit without a body commits the offsets of records
  that were returned, never of records still buffered here, and auto-commit (``auto.commit.enable``)
  only ever sees offsets stored after they were returned (``enable.auto.offset.store=false``).
- Without ``fetch.min.bytes`` a fetch answers as soon as it holds records instead of waiting out its
  whole timeout.

No HTTP here: errors are the gateway's domain errors. Every blocking librdkafka call runs on the
gateway's Kafka executor; the calls of one instance are serialised by its lock, so a close never
overlaps a consume still running in a thread.

This module is the registry; ``config`` validates a creation body, ``instance`` is one instance and
``progress`` its read-ahead buffer and returned offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from concurrent.futures import Executor
from typing import Any

from confluent_kafka import KafkaException

from gateway import errors
from gateway.consumers.config import InstanceConfig, parse_config
from gateway.consumers.instance import ConsumerInstance
from gateway.kafka.consumer import AsyncConsumer
from gateway.settings import ConfluentSettings

__all__ = ["ConsumerInstance", "ConsumerRegistry"]

log = logging.getLogger(__name__)

# The registry looks for idle instances at least this often (more often for short timeouts).
EXPIRY_CHECK_MAX_S = 5.0
CLOSE_TIMEOUT_S = 10.0


class ConsumerRegistry:
    """Every consumer instance of this process, by (group, name); expires idle ones."""

    def __init__(self, base_config: dict[str, Any], settings: ConfluentSettings, executor: Executor) -> None:
        self._base_config = base_config
        self._settings = settings
        self._executor = executor
        self._instances: dict[tuple[str, str], ConsumerInstance] = {}
        self._reserved: set[tuple[str, str]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._instances)

    def _kafka_config(self, group: str, name: str, cfg: InstanceConfig) -> dict[str, Any]:
        conf = dict(self._base_config)
        conf.update(
            {
                "group.id": group,
                "client.id": f"{conf.get('client.id', 'kafka-http-gateway')}-{name}"[:255],
                # Offsets are stored only for records returned to the client (see module docstring).
                "enable.auto.offset.store": "false",
                "enable.auto.commit": "true" if cfg.auto_commit else "false",
            }
        )
        if cfg.auto_offset_reset is not None:
            conf["auto.offset.reset"] = cfg.auto_offset_reset
        return conf

    async def create(self, group: str, body: dict[str, Any]) -> ConsumerInstance:
        if self._closed:
            raise errors.Unavailable("The gateway is shutting down.")
        cfg = parse_config(body, self._settings)
        name = cfg.name or f"rest-consumer-{uuid.uuid4()}"
        key = (group, name)
        if key in self._instances or key in self._reserved:
            raise errors.ConsumerInstanceExists(
                "Consumer with specified consumer ID already exists in the specified consumer group."
            )
        if len(self._instances) + len(self._reserved) >= self._settings.max_instances:
            raise errors.Backpressure("Too many consumer instances on this gateway instance; delete some or retry.")
        self._reserved.add(key)
        try:
            try:
                consumer = await AsyncConsumer.create(self._kafka_config(group, name, cfg), self._executor)
            except KafkaException as exc:
                raise errors.InvalidConsumerConfig(f"Invalid consumer configuration: {exc.args[0].str()}.") from None
            instance = ConsumerInstance(group, name, cfg, consumer, self._executor, self._settings)
            self._instances[key] = instance
            return instance
        finally:
            self._reserved.discard(key)

    def get(self, group: str, name: str) -> ConsumerInstance:
        instance = self._instances.get((group, name))
        if instance is None:
            raise errors.ConsumerInstanceNotFound("Consumer instance not found.")
        instance.touch()
        return instance

    async def delete(self, group: str, name: str) -> None:
        instance = self._instances.pop((group, name), None)
        if instance is None:
            raise errors.ConsumerInstanceNotFound("Consumer instance not found.")
        await asyncio.shield(instance.close())

    async def expire_idle(self) -> int:
        """Close instances idle longer than the timeout; returns how many."""
        cutoff = time.monotonic() - self._settings.instance_timeout_s
        idle = [k for k, i in self._instances.items() if i.last_used < cutoff and not i.busy]
        closing = [self._instances.pop(k) for k in idle]
        for instance in closing:
            log.info(
                "consumer instance %s/%s expired after %.0f s idle",
                instance.group,
                instance.name,
                self._settings.instance_timeout_s,
            )
        await asyncio.gather(*(asyncio.shield(i.close()) for i in closing), return_exceptions=True)
        return len(closing)

    async def run(self) -> None:
        """Expire idle instances forever; cancelled by the lifespan on shutdown."""
        interval = min(EXPIRY_CHECK_MAX_S, max(0.05, self._settings.instance_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire_idle()
            except Exception:  # never let one bad close stop expiry
                log.exception("consumer instance expiry failed")

    async def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Close every instance (bounded in time). Safe to call twice."""
        self._closed = True
        closing = list(self._instances.values())
        self._instances.clear()
        if not closing:
            return
        _done, pending = await asyncio.wait([asyncio.ensure_future(i.close()) for i in closing], timeout=timeout_s)
        if pending:
            log.warning("%d consumer instances did not close within %.0f s", len(pending), timeout_s)
