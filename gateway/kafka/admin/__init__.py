"""Cluster administration through the AdminClient: topics, offsets, configs, consumer groups, the cluster.

Every AdminClient call is made on the gateway's Kafka executor; the calls only enqueue a request and
hand back ``concurrent.futures.Future`` objects, which are awaited through ``asyncio.wrap_future`` so no
thread sits blocked while the broker answers. Each request carries ``request_timeout`` (and create /
delete an ``operation_timeout``), so nothing waits longer than the configured request timeout.

Kafka's answers become plain dataclasses here and its errors the gateway's domain errors; the HTTP
shapes belong to ``gateway.api.admin``.

One module a concept: ``calls`` (the executor call, the bounded wait and the error mapping every
operation shares), ``topics``, ``groups`` (consumer groups and their lag); the cluster is here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.kafka.admin.calls import Broker, broker_of, to_domain
from gateway.kafka.admin.groups import GroupAdmin, GroupDetail, GroupListing, GroupMember, GroupOffset
from gateway.kafka.admin.topics import (
    LEADER_RETRY_S,
    TOPIC_NAME_PATTERN,
    PartitionInfo,
    TopicAdmin,
    TopicDetail,
    valid_topic_name,
)

__all__ = [
    "LEADER_RETRY_S",
    "TOPIC_NAME_PATTERN",
    "Broker",
    "ClusterAdmin",
    "ClusterInfo",
    "GroupDetail",
    "GroupListing",
    "GroupMember",
    "GroupOffset",
    "PartitionInfo",
    "TopicDetail",
    "to_domain",
    "valid_topic_name",
]


@dataclass(frozen=True)
class ClusterInfo:
    cluster_id: str | None
    controller: Broker | None
    brokers: list[Broker]


class ClusterAdmin(TopicAdmin, GroupAdmin):
    """Admin operations of one AdminClient; blocking parts on ``executor``, bounded by ``timeout_s``."""

    async def cluster(self) -> ClusterInfo:
        try:
            fut = await self._submit(lambda: self._admin.describe_cluster(request_timeout=self._timeout_s))
            result = await self._result(fut)
        except Exception as exc:
            raise to_domain(exc) from exc
        brokers = sorted((b for n in result.nodes if (b := broker_of(n)) is not None), key=lambda b: b.id)
        return ClusterInfo(cluster_id=result.cluster_id, controller=broker_of(result.controller), brokers=brokers)
