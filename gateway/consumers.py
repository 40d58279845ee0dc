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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as KafkaTopicPartition

from gateway import errors
from gateway.kafka.consumer import AsyncConsumer
from gateway.settings import ConfluentSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

Format = Literal["binary", "json"]
FORMATS: tuple[Format, ...] = ("binary", "json")
# Embedded formats of the Confluent proxy that need a schema registry; named in the error message.
SCHEMA_FORMATS = ("avro", "jsonschema", "protobuf")
OFFSET_RESETS = ("earliest", "latest", "none")
# The registry looks for idle instances at least this often (more often for short timeouts).
EXPIRY_CHECK_MAX_S = 5.0
CLOSE_TIMEOUT_S = 10.0

TP = tuple[str, int]

# librdkafka errors that a fetch reports to the client instead of logging and skipping.
_FATAL_FETCH_ERRORS = {
    KafkaError._FATAL,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
}
_BENIGN_FETCH_ERRORS = {KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}
# Kafka unreachable: librdkafka reconnects by itself; the fetch just finds nothing. Logged at debug,
# since every poll of every instance would repeat it (readiness already reports the outage).
_TRANSIENT_FETCH_ERRORS = {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN}


@dataclass(frozen=True)
class InstanceConfig:
    """What ``POST /consumers/{group}`` asked for, validated."""

    name: str | None
    format: Format
    auto_offset_reset: str | None
    auto_commit: bool
    # -1: answer as soon as records are held; otherwise wait until more than this many bytes.
    fetch_min_bytes: int
    request_timeout_ms: int


def _text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise errors.InvalidConsumerConfig(f"Invalid consumer configuration: '{what}' must be a string.")
    return str(value).strip()


def _int(value: Any, what: str) -> int | None:
    text = _text(value, what)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise errors.InvalidConsumerConfig(
            f"Invalid consumer configuration: '{what}' must be an integer; got '{text}'."
        ) from None


def parse_config(body: dict[str, Any], settings: ConfluentSettings) -> InstanceConfig:
    """The creation body (``name``, ``format``, ``auto.offset.reset``, ...) -> an ``InstanceConfig``."""
    known = {"name", "id", "format", "auto.offset.reset", "auto.commit.enable", "fetch.min.bytes"}
    known.add("consumer.request.timeout.ms")
    unknown = sorted(set(body) - known)
    if unknown:
        raise errors.InvalidConsumerConfig(f"Invalid consumer configuration: unknown field(s) {', '.join(unknown)}.")
    # The deprecated 'id' wins over 'name', as in the Confluent proxy.
    name = _text(body.get("id"), "id") or _text(body.get("name"), "name") or None
    if name is not None and (len(name) > 255 or "/" in name):
        raise errors.InvalidConsumerConfig(
            "Invalid consumer configuration: 'name' must be 1 to 255 characters, no '/'."
        )
    fmt = (_text(body.get("format"), "format") or "binary").lower()
    if fmt in SCHEMA_FORMATS:
        raise errors.InvalidConsumerConfig(
            f"Invalid consumer configuration: format '{fmt}' needs a schema registry, which this gateway "
            "does not support; use 'binary' or 'json'."
        )
    if fmt not in FORMATS:
        raise errors.InvalidConsumerConfig(
            f"Invalid consumer configuration: format must be binary or json; got '{fmt}'."
        )
    reset = _text(body.get("auto.offset.reset"), "auto.offset.reset")
    reset = {"smallest": "earliest", "largest": "latest"}.get(reset or "", reset)
    if reset is not None and reset not in OFFSET_RESETS:
        raise errors.InvalidConsumerConfig(
            f"Invalid consumer configuration: auto.offset.reset must be earliest, latest or none; got '{reset}'."
        )
    commit = (_text(body.get("auto.commit.enable"), "auto.commit.enable") or "false").lower()
    if commit not in ("true", "false"):
        raise errors.InvalidConsumerConfig(
            f"Invalid consumer configuration: auto.commit.enable must be true or false; got '{commit}'."
        )
    min_bytes = _int(body.get("fetch.min.bytes"), "fetch.min.bytes")
    timeout_ms = _int(body.get("consumer.request.timeout.ms"), "consumer.request.timeout.ms")
    if timeout_ms is not None and timeout_ms <= 0:
        raise errors.InvalidConsumerConfig("Invalid consumer configuration: consumer.request.timeout.ms must be > 0.")
    return InstanceConfig(
        name=name,
        format="json" if fmt == "json" else "binary",
        auto_offset_reset=reset,
        auto_commit=commit == "true",
        fetch_min_bytes=-1 if min_bytes is None or min_bytes < 0 else min_bytes,
        request_timeout_ms=min(timeout_ms or settings.request_timeout_ms, settings.max_request_timeout_ms),
    )


def _tp(msg: Message) -> TP:
    return msg.topic() or "", msg.partition() or 0


def record_size(msg: Message) -> int:
    """What ``max_bytes`` counts: the unencoded key and value bytes, as the Confluent proxy does."""
    key, value = msg.key(), msg.value()
    return (len(key) if key else 0) + (len(value) if value else 0)


async def _uncancelled(fut: asyncio.Future[Any]) -> None:
    while not fut.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([fut])


class ConsumerInstance:
    """One named consumer of a group: its Kafka consumer, its buffer and what it returned."""

    def __init__(
        self,
        group: str,
        name: str,
        config: InstanceConfig,
        consumer: AsyncConsumer,
        executor: Executor,
        settings: ConfluentSettings,
    ) -> None:
        self.group = group
        self.name = name
        self.config = config
        self._consumer = consumer
        self._executor = executor
        self._settings = settings
        self._lock = asyncio.Lock()
        self._closed = False
        # Fetched from Kafka but not yet returned to the client, in fetch order.
        self._buffer: deque[Message] = deque()
        # Next offset after the last record returned to the client, per partition.
        self._returned: dict[TP, int] = {}
        self._mode: Literal["none", "subscribe", "assign"] = "none"
        self._topics: list[str] = []
        self._pattern: str | None = None
        # Appended by librdkafka's revoke callback on an executor thread, drained on the loop.
        self._revoked: list[list[KafkaTopicPartition]] = []
        self.last_used = time.monotonic()

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def touch(self) -> None:
        self.last_used = time.monotonic()

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call on the Kafka executor; a cancelled caller still waits for the thread."""
        fut = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            await _uncancelled(fut)
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise errors.ConsumerInstanceNotFound("Consumer instance not found.")

    def _on_revoke(self, _consumer: Any, partitions: list[KafkaTopicPartition]) -> None:
        # librdkafka thread: only record; the loop forgets the partitions' returned offsets.
        self._revoked.append(list(partitions))

    def _drain_revoked(self) -> set[TP]:
        """Partitions the group took away since the last call; their offsets are no longer ours to commit.

        Records of theirs already fetched stay buffered and are still returned: the new owner reads
        them again from the committed offset (a duplicate, as at-least-once allows). Dropping them
        instead could drop records fetched after the partition came back in the same fetch, and a
        batch does not say which of its records came before a rebalance.
        """
        gone: set[TP] = set()
        while self._revoked:
            gone.update((tp.topic, tp.partition) for tp in self._revoked.pop(0))
        for tp in gone:
            self._returned.pop(tp, None)
        return gone

    def _resume_offset(self, tp: TP) -> int:
        """Where a partition should continue after re-assignment: its first record not yet returned."""
        for m in self._buffer:
            if _tp(m) == tp:
                return int(m.offset() or 0)
        return self._returned.get(tp, OFFSET_INVALID)

    async def _assignment(self) -> list[TP]:
        parts = await self._blocking(self._consumer.raw.assignment)
        return sorted((tp.topic, tp.partition) for tp in parts)

    # -- subscription and assignment ------------------------------------------------------------

    async def subscribe(self, topics: Sequence[str] | None, pattern: str | None) -> None:
        async with self._lock:
            self._check_open()
            if self._mode == "assign":
                raise errors.ConsumerStateConflict(
                    "Subscription to topics, partitions and pattern are mutually exclusive: "
                    "this instance has manually assigned partitions."
                )
            if topics and pattern:
                raise errors.ConsumerStateConflict("Give either 'topics' or 'topic_pattern', not both.")
            if not topics and not pattern:
                raise errors.InvalidRecord("A subscription needs 'topics' (a non-empty list) or 'topic_pattern'.")
            # librdkafka reads a name starting with '^' as a regex; the Confluent proxy matches
            # the Java pattern against the whole topic name, hence the anchors.
            names = list(topics) if topics else [f"^({pattern})$"]
            try:
                await self._consumer.subscribe(names, on_revoke=self._on_revoke)
            except KafkaException as exc:
                raise errors.InvalidRecord(f"Kafka refused the subscription: {exc.args[0].str()}.") from None
            self._mode = "subscribe"
            self._topics = list(topics or [])
            self._pattern = pattern
            self.touch()

    async def subscription(self) -> list[str]:
        async with self._lock:
            self._check_open()
            self.touch()
            if self._mode != "subscribe":
                return []
            if self._pattern is None:
                return list(self._topics)
            # The topics the pattern currently matches, as far as this member is assigned them.
            return sorted({t for t, _ in await self._assignment()})

    async def unsubscribe(self) -> None:
        async with self._lock:
            self._check_open()
            if self._mode == "subscribe":
                await self._blocking(self._consumer.raw.unsubscribe)
                self._buffer.clear()
                self._returned.clear()
                self._revoked.clear()
                self._mode = "none"
                self._topics, self._pattern = [], None
            self.touch()

    async def assign(self, partitions: Sequence[TP]) -> None:
        async with self._lock:
            self._check_open()
            if self._mode == "subscribe":
                raise errors.ConsumerStateConflict(
                    "Subscription to topics, partitions and pattern are mutually exclusive: "
                    "this instance is subscribed."
                )
            await self._reassign(list(dict.fromkeys(partitions)), {})
            self.touch()

    async def _reassign(self, wanted: list[TP], new_offsets: dict[TP, int]) -> None:
        """(Re)assign ``wanted``; partitions kept continue where the client is, not where Kafka is."""
        tps = [KafkaTopicPartition(t, p, new_offsets.get((t, p), self._resume_offset((t, p)))) for t, p in wanted]
        await self._consumer.assign(tps)
        # librdkafka refetches from each partition's new start: nothing buffered is still valid.
        self._buffer.clear()
        keep = set(wanted)
        self._returned = {tp: o for tp, o in self._returned.items() if tp in keep}
        self._mode = "assign" if wanted else "none"

    async def assignment(self) -> list[TP]:
        async with self._lock:
            self._check_open()
            self.touch()
            return await self._assignment()

    # -- positions ------------------------------------------------------------------------------

    async def seek(self, offsets: Iterable[tuple[str, int, int]]) -> None:
        """Next fetch of each partition starts at the offset (or OFFSET_BEGINNING / OFFSET_END)."""
        wanted = {(t, p): o for t, p, o in offsets}
        async with self._lock:
            self._check_open()
            self._drain_revoked()
            assigned = set(await self._assignment())
            missing = sorted(set(wanted) - assigned)
            if missing:
                names = ", ".join(f"{t}-{p}" for t, p in missing)
                raise errors.ConsumerStateConflict(f"Illegal state: No current assignment for partition(s) {names}.")
            if self._mode == "assign":
                # Re-assigning at the new offsets works even before the first fetch, where
                # librdkafka's seek() would find no fetcher yet.
                await self._reassign(sorted(assigned), wanted)
            else:
                for (t, p), o in wanted.items():
                    try:
                        await self._blocking(self._consumer.raw.seek, KafkaTopicPartition(t, p, o))
                    except KafkaException as exc:
                        raise errors.ConsumerStateConflict(f"Illegal state: {exc.args[0].str()}.") from None
                self._buffer = deque(m for m in self._buffer if _tp(m) not in wanted)
            self.touch()

    async def seek_to(self, partitions: Iterable[TP], end: bool) -> None:
        """Seek to each partition's first offset, or to its end (the next record written)."""
        # Resolved to absolute offsets here: librdkafka's logical OFFSET_END seek did not reliably
        # deliver a record written right after it, and the watermarks are what Java resolves to.
        targets = []
        for t, p in dict.fromkeys(partitions):
            try:
                low, high = await self._consumer.watermarks(t, p)
            except KafkaException as exc:
                raise errors.Unavailable(f"Kafka did not answer for offsets of {t}-{p}: {exc.args[0].str()}.") from None
            targets.append((t, p, high if end else low))
        await self.seek(targets)

    # -- offsets --------------------------------------------------------------------------------

    async def commit(self, offsets: Sequence[tuple[str, int, int, str | None]] | None) -> None:
        """Commit the given offsets (as the Confluent proxy: the next record is ``offset + 1``), or
        without any, every record returned to the client so far."""
        async with self._lock:
            self._check_open()
            self._drain_revoked()
            if offsets is None:
                tps = [KafkaTopicPartition(t, p, o) for (t, p), o in sorted(self._returned.items())]
            else:
                tps = [
                    KafkaTopicPartition(t, p, o + 1, metadata=m) if m is not None else KafkaTopicPartition(t, p, o + 1)
                    for t, p, o, m in offsets
                ]
            if tps:
                try:
                    await self._consumer.commit(tps)
                except KafkaException as exc:
                    raise errors.Unavailable(f"Kafka did not accept the commit: {exc.args[0].str()}.") from None
            self.touch()

    async def committed(self, partitions: Sequence[TP] | None) -> list[tuple[str, int, int, str]]:
        """Last committed offsets (by anyone in the group); partitions without one are left out."""
        async with self._lock:
            self._check_open()
            wanted = list(partitions) if partitions is not None else await self._assignment()
            self.touch()
            if not wanted:
                return []
            try:
                found = await self._consumer.committed([KafkaTopicPartition(t, p) for t, p in wanted])
            except KafkaException as exc:
                raise errors.Unavailable(f"Kafka did not answer for committed offsets: {exc.args[0].str()}.") from None
            return [
                (tp.topic, tp.partition, int(tp.offset), tp.metadata or "")
                for tp in found
                if tp.error is None and tp.offset >= 0
            ]

    # -- records --------------------------------------------------------------------------------

    async def fetch(self, timeout_ms: int | None, max_bytes: int | None) -> list[Message]:
        """Records for one response: at most ``max_bytes`` of keys and values, but at least one record
        when any is available; the rest stays buffered for the next fetch."""
        cfg = self._settings
        wait_ms = self.config.request_timeout_ms
        if timeout_ms is not None and timeout_ms > 0:
            # As in the Confluent proxy, the request may only shorten the instance's wait.
            wait_ms = min(timeout_ms, wait_ms)
        limit = (
            cfg.max_response_bytes if max_bytes is None or max_bytes <= 0 else min(max_bytes, cfg.max_response_bytes)
        )
        min_bytes = self.config.fetch_min_bytes
        async with self._lock:
            self._check_open()
            self.touch()
            deadline = time.monotonic() + wait_ms / 1000
            out: list[Message] = []
            size = 0
            revoked: set[TP] = set()
            while True:
                revoked |= self._drain_revoked()
                full = False
                while self._buffer:
                    s = record_size(self._buffer[0])
                    if out and size + s > limit:
                        full = True
                        break
                    out.append(self._buffer.popleft())
                    size += s
                if full or size >= limit or (out and (min_bytes < 0 or size > min_bytes)):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._mode == "none":
                    break
                msgs = await self._consumer.consume(cfg.fetch_batch_records, min(remaining, cfg.poll_slice_s))
                for m in msgs:
                    err = m.error()
                    if err is None:
                        self._buffer.append(m)
                    elif err.code() in _FATAL_FETCH_ERRORS or err.fatal():
                        raise errors.Unavailable(f"Kafka error while fetching: {err.str()}.")
                    elif err.code() in _TRANSIENT_FETCH_ERRORS:
                        log.debug("consumer %s/%s: %s", self.group, self.name, err.str())
                    elif err.code() not in _BENIGN_FETCH_ERRORS:
                        log.warning("consumer %s/%s: %s", self.group, self.name, err.str())
            revoked |= self._drain_revoked()
            stored: dict[TP, int] = {}
            for m in out:
                stored[_tp(m)] = int(m.offset() or 0) + 1
            if revoked:
                # Offsets of partitions owned by another member now are not ours to commit.
                assigned = set(await self._assignment())
                stored = {tp: o for tp, o in stored.items() if tp in assigned}
            self._returned.update(stored)
            if stored and self.config.auto_commit:
                # Auto-commit commits stored offsets only: exactly the records returned so far.
                tps = [KafkaTopicPartition(t, p, o) for (t, p), o in stored.items()]
                with contextlib.suppress(KafkaException):
                    await self._blocking(lambda: self._consumer.raw.store_offsets(offsets=tps))
            self.touch()
            return out

    # -- lifetime -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close once (leaves the group); waits for a running call first. Safe to call twice."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            self._buffer.clear()
        await self._consumer.close()


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
