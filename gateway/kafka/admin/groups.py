"""Consumer groups through the AdminClient: the list, and one group's members, committed offsets and lag."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

# confluent_kafka.admin re-exports these without __all__, which mypy --strict does not count as export.
from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

from gateway import errors
from gateway.kafka.admin.calls import AdminCalls, Broker, broker_of, enum_name, to_domain


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


class GroupAdmin(AdminCalls):
    """Consumer-group operations of one AdminClient."""

    async def list_groups(self) -> list[GroupListing]:
        try:
            fut = await self._submit(lambda: self._admin.list_consumer_groups(request_timeout=self._timeout_s))
            result = await self._result(fut)
        except Exception as exc:
            raise to_domain(exc) from exc
        groups = [
            GroupListing(
                group_id=g.group_id,
                state=enum_name(g.state),
                type=enum_name(getattr(g, "type", "classic")).lower(),
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
        state = enum_name(desc.state)
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
            type=enum_name(getattr(desc, "type", "classic")).lower(),
            simple=bool(desc.is_simple_consumer_group),
            protocol=desc.partition_assignor or "",
            coordinator=broker_of(desc.coordinator),
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
