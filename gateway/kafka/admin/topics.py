"""Topics through the AdminClient: names, create, delete, describe (partitions, offsets, configs), offsets."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, TopicCollection, TopicPartition

# confluent_kafka.admin re-exports these without __all__, which mypy --strict does not count as export.
from confluent_kafka.admin import ConfigResource, NewTopic, OffsetSpec, ResourceType  # type: ignore[attr-defined]

from gateway.kafka.admin.calls import AdminCalls, broker_of, kafka_error, to_domain

# Leadership in flux (a new topic, a leader moving): passes within milliseconds. The epoch errors are what
# a broker answers while its view of the partition's leader epoch and the client's differ, e.g. a
# ListOffsets right after CreateTopics ("Leader epoch is newer than broker epoch": a 503 in CI once).
_LEADER_MOVING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_LEADER_EPOCH,
    KafkaError.FENCED_LEADER_EPOCH,
}
LEADER_RETRY_S = 0.05
# Topic names as Kafka allows them (also the broker's limit on length; "." and ".." are refused too).
TOPIC_NAME_PATTERN = r"^[a-zA-Z0-9._-]{1,249}$"
_TOPIC_NAME = re.compile(TOPIC_NAME_PATTERN)


def valid_topic_name(name: str) -> bool:
    return _TOPIC_NAME.match(name) is not None and name not in (".", "..")


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


class TopicAdmin(AdminCalls):
    """Topic operations of one AdminClient."""

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
                leader=b.id if (b := broker_of(p.leader)) else None,
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
                err = kafka_error(exc)
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
