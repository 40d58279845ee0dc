"""Cluster administration through the AdminClient: topics, offsets, configs, consumer groups, the cluster.

Every AdminClient call is made on the gateway's Kafka executor; the calls only enqueue a request and
hand back ``concurrent.futures.Future`` objects, which are awaited through ``asyncio.wrap_future`` so no
thread sits blocked while the broker answers. Each request carries ``request_timeout`` (and create /
delete an ``operation_timeout``), so nothing waits longer than the configured request timeout.

Kafka's answers become plain dataclasses here and its errors the gateway's domain errors; the HTTP
shapes belong to ``gateway.api.admin``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import (
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)

# confluent_kafka.admin re-exports these without __all__, which mypy --strict does not count as export.
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec, ResourceType  # type: ignore[attr-defined]

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
_LEADER_MOVING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}
LEADER_RETRY_S = 0.05
_GROUP_GONE = {KafkaError.GROUP_ID_NOT_FOUND, KafkaError.GROUP_SUBSCRIBED_TO_TOPIC}


@dataclass(frozen=True)
class Broker:
    id: int
    host: str
    port: int
    rack: str | None = None


@dataclass
class PartitionInfo:
    partition: int
    leader: int | None
    replicas: list[int]
    isr: list[int]
    earliest_offset: int | None = None
    latest_offset: int | None = None


@dataclass
class TopicDetail:
    name: str
    internal: bool
    partitions: list[PartitionInfo]
    configs: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupListing:
    group_id: str
    state: str
    type: str
    simple: bool


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    client_id: str
    host: str
    group_instance_id: str | None
    assignment: list[tuple[str, int]]


@dataclass(frozen=True)
class GroupOffset:
    topic: str
    partition: int
    committed_offset: int | None
    latest_offset: int | None
    lag: int | None


@dataclass
class GroupDetail:
    group_id: str
    state: str
    type: str
    simple: bool
    protocol: str
    coordinator: Broker | None
    members: list[GroupMember]
    offsets: list[GroupOffset]

    @property
    def total_lag(self) -> int:
        return sum(o.lag for o in self.offsets if o.lag is not None)


@dataclass(frozen=True)
class ClusterInfo:
    cluster_id: str | None
    controller: Broker | None
    brokers: list[Broker]


def _broker(node: Any) -> Broker | None:
    if node is None or getattr(node, "id", -1) is None or node.id < 0:
        return None
    return Broker(int(node.id), str(node.host), int(node.port), node.rack or None)


def _enum_name(value: Any) -> str:
    """``ConsumerGroupState.STABLE`` -> ``Stable`` (Kafka's own spelling in its tools)."""
    name = str(getattr(value, "name", value))
    return "".join(part.capitalize() for part in name.split("_"))


def _kafka_error(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def to_domain(exc: BaseException, *, topic: str | None = None, group: str | None = None) -> errors.GatewayError:
    """A failed admin call as the gateway's vocabulary; the broker's own reason stays in the message."""
    if isinstance(exc, errors.GatewayError):
        return exc
    err = _kafka_error(exc)
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


class ClusterAdmin:
    """Admin operations of one AdminClient; blocking parts on ``executor``, bounded by ``timeout_s``."""

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

    # -- topics ---------------------------------------------------------------------------------

    async def topic_names(self) -> list[str]:
        md = await self._submit(lambda: self._admin.list_topics(timeout=self._timeout_s))
        return sorted(name for name, t in md.topics.items() if t.error is None)

    async def create_topic(
        self, name: str, partitions: int | None, replication_factor: int | None, configs: dict[str, str]
    ) -> None:
        # -1 asks the broker for its defaults (num.partitions, default.replication.factor), KIP-464.
        new = NewTopic(name, partitions or -1, replication_factor or -1, config=configs)
        try:
            futs = await self._submit(
                lambda: self._admin.create_topics(
                    [new], operation_timeout=self._timeout_s, request_timeout=self._timeout_s
                )
            )
            await self._result(futs[name])
        except Exception as exc:
            raise to_domain(exc, topic=name) from exc

    async def delete_topic(self, name: str) -> None:
        try:
            futs = await self._submit(
                lambda: self._admin.delete_topics(
                    [name], operation_timeout=self._timeout_s, request_timeout=self._timeout_s
                )
            )
            await self._result(futs[name])
        except Exception as exc:
            raise to_domain(exc, topic=name) from exc

    async def describe_topic(self, name: str) -> TopicDetail:
        """Partitions (leader, replicas, ISR, earliest and latest offsets) and every config of a topic."""
        try:
            futs = await self._submit(
                lambda: self._admin.describe_topics(TopicCollection([name]), request_timeout=self._timeout_s)
            )
            desc = await self._result(futs[name])
        except Exception as exc:
            raise to_domain(exc, topic=name) from exc
        parts = [
            PartitionInfo(
                partition=int(p.id),
                leader=b.id if (b := _broker(p.leader)) else None,
                replicas=[int(n.id) for n in p.replicas],
                isr=[int(n.id) for n in p.isr],
            )
            for p in sorted(desc.partitions, key=lambda p: p.id)
        ]
        ids = [p.partition for p in parts]
        earliest, latest, configs = await asyncio.gather(
            self.list_offsets(name, ids, "earliest"),
            self.list_offsets(name, ids, "latest"),
            self.topic_configs(name),
        )
        for p in parts:
            p.earliest_offset = earliest.get(p.partition)
            p.latest_offset = latest.get(p.partition)
        return TopicDetail(name=desc.name, internal=bool(desc.is_internal), partitions=parts, configs=configs)

    async def topic_configs(self, name: str) -> dict[str, str | None]:
        """Every config of the topic; a sensitive value is never shown."""
        resource = ConfigResource(ResourceType.TOPIC, name)
        try:
            futs = await self._submit(lambda: self._admin.describe_configs([resource], request_timeout=self._timeout_s))
            entries = await self._result(next(iter(futs.values())))
        except Exception as exc:
            raise to_domain(exc, topic=name) from exc
        return {k: (None if e.is_sensitive else e.value) for k, e in sorted(entries.items())}

    async def list_offsets(self, topic: str, partitions: Iterable[int], spec: str | int) -> dict[int, int | None]:
        """Offsets per partition: ``"earliest"``, ``"latest"``, or the first at or after epoch ms ``spec``.

        ``None`` where Kafka has no such offset (no record at or after the timestamp).
        """
        if spec == "earliest":
            offset_spec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        elif spec == "latest":
            offset_spec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        else:
            offset_spec = OffsetSpec.for_timestamp(int(spec))
        request = {TopicPartition(topic, p): offset_spec for p in partitions}
        if not request:
            return {}
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                futs = await self._submit(lambda: self._admin.list_offsets(request, request_timeout=self._timeout_s))
                results = await asyncio.gather(*(self._result(f) for f in futs.values()))
                break
            except Exception as exc:
                # Right after a topic is created (or a leader moves) a broker may not lead the
                # partition yet; that passes within milliseconds, so ask again until the deadline.
                err = _kafka_error(exc)
                if err is None or err.code() not in _LEADER_MOVING or time.monotonic() >= deadline:
                    raise to_domain(exc, topic=topic) from exc
                await asyncio.sleep(LEADER_RETRY_S)
        return {
            tp.partition: (int(r.offset) if r.offset >= 0 else None) for tp, r in zip(futs.keys(), results, strict=True)
        }

    async def watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(earliest, latest) offsets of one partition.

        Asked through the AdminClient's own connections: on a consumer's connection the request
        would queue behind that consumer's outstanding long-poll fetch (up to fetch.wait.max.ms).
        """
        low, high = await asyncio.gather(
            self.list_offsets(topic, [partition], "earliest"), self.list_offsets(topic, [partition], "latest")
        )
        return low.get(partition) or 0, high.get(partition) or 0

    # -- consumer groups ------------------------------------------------------------------------

    async def list_groups(self) -> list[GroupListing]:
        try:
            fut = await self._submit(lambda: self._admin.list_consumer_groups(request_timeout=self._timeout_s))
            result = await self._result(fut)
        except Exception as exc:
            raise to_domain(exc) from exc
        groups = [
            GroupListing(
                group_id=g.group_id,
                state=_enum_name(g.state),
                type=_enum_name(getattr(g, "type", "classic")).lower(),
                simple=bool(g.is_simple_consumer_group),
            )
            for g in result.valid
        ]
        return sorted(groups, key=lambda g: g.group_id)

    async def groups_with_client(self, groups: list[str], client_prefix: str) -> list[str]:
        """Those of ``groups`` that have a member whose client id starts with ``client_prefix``."""
        if not groups:
            return []
        try:
            futs = await self._submit(
                lambda: self._admin.describe_consumer_groups(groups, request_timeout=self._timeout_s)
            )
        except Exception as exc:
            raise to_domain(exc) from exc
        found = []
        for group, fut in futs.items():
            try:
                desc = await self._result(fut)
            except Exception:  # gone meanwhile: nothing to report for it
                continue
            if any(str(m.client_id).startswith(client_prefix) for m in desc.members):
                found.append(group)
        return sorted(found)

    async def describe_group(self, group: str) -> GroupDetail:
        """State, members and per-partition committed offset and lag; unknown groups are NotFound."""
        try:
            dfuts, ofuts = await self._submit(
                lambda: (
                    self._admin.describe_consumer_groups([group], request_timeout=self._timeout_s),
                    self._admin.list_consumer_group_offsets(
                        [ConsumerGroupTopicPartitions(group)], request_timeout=self._timeout_s
                    ),
                )
            )
            desc, committed = await asyncio.gather(self._result(dfuts[group]), self._result(ofuts[group]))
        except Exception as exc:
            raise to_domain(exc, group=group) from exc
        members = [
            GroupMember(
                member_id=m.member_id,
                client_id=m.client_id,
                host=m.host,
                group_instance_id=m.group_instance_id,
                assignment=sorted(
                    (tp.topic, tp.partition) for tp in (m.assignment.topic_partitions if m.assignment else [])
                ),
            )
            for m in desc.members
        ]
        commits = {(tp.topic, tp.partition): tp.offset for tp in committed.topic_partitions or [] if tp.error is None}
        state = _enum_name(desc.state)
        # Kafka answers "Dead" with no members for a group it never heard of; with no committed
        # offsets either, there is nothing to show.
        if state == "Dead" and not members and not commits:
            raise errors.ConsumerGroupNotFound(f"Consumer group '{group}' not found.")
        wanted = set(commits) | {tp for m in members for tp in m.assignment}
        latest = await self._latest_many(wanted)
        offsets = []
        for topic, partition in sorted(wanted):
            done = commits.get((topic, partition))
            committed_offset = done if done is not None and done >= 0 else None
            end = latest.get((topic, partition))
            lag = max(0, end - committed_offset) if end is not None and committed_offset is not None else None
            offsets.append(GroupOffset(topic, partition, committed_offset, end, lag))
        return GroupDetail(
            group_id=desc.group_id,
            state=state,
            type=_enum_name(getattr(desc, "type", "classic")).lower(),
            simple=bool(desc.is_simple_consumer_group),
            protocol=desc.partition_assignor or "",
            coordinator=_broker(desc.coordinator),
            members=members,
            offsets=offsets,
        )

    async def _latest_many(self, tps: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        """Latest offsets of partitions across topics; a partition Kafka cannot answer for is left out."""
        request = {TopicPartition(t, p): OffsetSpec.latest() for t, p in tps}  # type: ignore[no-untyped-call]
        if not request:
            return {}
        futs = await self._submit(lambda: self._admin.list_offsets(request, request_timeout=self._timeout_s))
        out: dict[tuple[str, int], int | None] = {}
        for tp, fut in futs.items():
            try:
                r = await self._result(fut)
            except Exception:  # a deleted topic: its lag is unknown, the rest still counts
                continue
            out[(tp.topic, tp.partition)] = int(r.offset) if r.offset >= 0 else None
        return out

    # -- cluster --------------------------------------------------------------------------------

    async def cluster(self) -> ClusterInfo:
        try:
            fut = await self._submit(lambda: self._admin.describe_cluster(request_timeout=self._timeout_s))
            result = await self._result(fut)
        except Exception as exc:
            raise to_domain(exc) from exc
        brokers = sorted((b for n in result.nodes if (b := _broker(n)) is not None), key=lambda b: b.id)
        return ClusterInfo(cluster_id=result.cluster_id, controller=_broker(result.controller), brokers=brokers)
