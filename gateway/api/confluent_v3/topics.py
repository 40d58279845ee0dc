"""Confluent v3 topics: list, describe, create (or validate only) and delete."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway import errors, records
from gateway.api.admin.client import cluster_admin
from gateway.api.admin.topics import settle_topic
from gateway.api.confluent_v3.links import E_503, E_CLUSTER, JSON, ClusterId, Links, Topic, json_response, links_for
from gateway.api.deps import RuntimeDep
from gateway.api.error_docs import errs
from gateway.auth.principals import principal_of
from gateway.kafka.admin import TopicDetail
from gateway.lifespan import Runtime

router = APIRouter(prefix="/v3", tags=["confluent v3"])


def _topic_json(links: Links, name: str, internal: bool, partitions: int, rf: int) -> dict[str, Any]:
    return {
        "kind": "KafkaTopic",
        "metadata": links.meta("topics", name, crn=f"/topic={name}"),
        "cluster_id": links.cluster_id,
        "topic_name": name,
        "is_internal": internal,
        "replication_factor": rf,
        "partitions_count": partitions,
        "partitions": links.related("topics", name, "partitions"),
        "configs": links.related("topics", name, "configs"),
        "partition_reassignments": links.related("topics", name, "partitions", "-", "reassignment"),
        "authorized_operations": [],
    }


def _detail_json(links: Links, t: TopicDetail) -> dict[str, Any]:
    rf = len(t.partitions[0].replicas) if t.partitions else 0
    return _topic_json(links, t.name, t.internal, len(t.partitions), rf)


async def _topic_summaries(rt: Runtime) -> list[tuple[str, bool, int, int]]:
    # One metadata request for every topic's partition count and replication factor; ClusterAdmin
    # (gateway.kafka.admin) has no bulk describe, and describing topic by topic is N round trips.
    md = await asyncio.get_running_loop().run_in_executor(
        rt.executor, lambda: rt.admin.list_topics(timeout=rt.settings.request_timeout_s)
    )
    out = []
    for name, t in sorted(md.topics.items()):
        if t.error is not None:
            continue
        parts = list(t.partitions.values())
        rf = len(parts[0].replicas) if parts else 0
        out.append((name, name.startswith("__"), len(parts), rf))
    return out


_TOPIC_EXAMPLE = {
    "kind": "KafkaTopic",
    "metadata": {
        "self": "http://gw:8080/v3/clusters/cluster-1/topics/orders",
        "resource_name": "crn:///kafka=cluster-1/topic=orders",
    },
    "cluster_id": "cluster-1",
    "topic_name": "orders",
    "is_internal": False,
    "replication_factor": 3,
    "partitions_count": 6,
    "partitions": {"related": "http://gw:8080/v3/clusters/cluster-1/topics/orders/partitions"},
    "configs": {"related": "http://gw:8080/v3/clusters/cluster-1/topics/orders/configs"},
}


@router.get(
    "/clusters/{cluster_id}/topics",
    summary="Confluent v3: list topics",
    description="The topics the caller may read or write; every topic with the admin scope (or with authentication off).",
    responses={
        200: {"content": {JSON: {"example": {"kind": "KafkaTopicList", "data": [_TOPIC_EXAMPLE]}}}},
        **errs(E_CLUSTER, E_503),
    },
)
async def list_topics(request: Request, rt: RuntimeDep, cluster_id: ClusterId) -> Response:
    links = await links_for(request, rt, cluster_id)
    scopes = principal_of(request).scopes
    data = [_topic_json(links, *t) for t in await _topic_summaries(rt) if scopes.can_see(t[0])]
    return json_response(links.listing("KafkaTopicList", data, "topics"))


@router.get(
    "/clusters/{cluster_id}/topics/{topic}",
    summary="Confluent v3: one topic",
    responses={
        200: {"content": {JSON: {"example": _TOPIC_EXAMPLE}}},
        **errs(E_CLUSTER, (404, "Unknown topic (40401)"), E_503),
    },
)
async def get_topic(request: Request, rt: RuntimeDep, cluster_id: ClusterId, topic: Topic) -> Response:
    links = await links_for(request, rt, cluster_id)
    return json_response(_detail_json(links, await cluster_admin(rt).describe_topic(topic)))


class ConfigIn(msgspec.Struct):
    name: str
    value: str | None = None


class CreateTopicBody(msgspec.Struct, forbid_unknown_fields=True):
    topic_name: str
    partitions_count: int | None = None
    replication_factor: int | None = None
    configs: list[ConfigIn] = msgspec.field(default_factory=list)
    validate_only: bool = False


@router.post(
    "/clusters/{cluster_id}/topics",
    summary="Confluent v3: create a topic",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "content": {
                JSON: {
                    "schema": {"type": "object", "required": ["topic_name"]},
                    "example": {
                        "topic_name": "orders",
                        "partitions_count": 6,
                        "replication_factor": 3,
                        "configs": [{"name": "cleanup.policy", "value": "compact"}],
                    },
                }
            }
        }
    },
    responses={
        201: {"content": {JSON: {"example": _TOPIC_EXAMPLE}}},
        **errs(
            (400, "Malformed JSON (40001)"),
            E_CLUSTER,
            (409, "Topic already exists (40901)"),
            (422, "Invalid name, partitions, replication factor or config (42201)"),
            E_503,
        ),
    },
)
async def create_topic(request: Request, rt: RuntimeDep, cluster_id: ClusterId) -> Response:
    links = await links_for(request, rt, cluster_id)
    body: CreateTopicBody = records.decode_request(await request.body(), CreateTopicBody)
    name = body.topic_name
    if not name or len(name) > 249 or not all(c.isascii() and (c.isalnum() or c in "._-") for c in name):
        raise errors.InvalidRecord(f"Invalid topic name '{name}': 1 to 249 of a-z, A-Z, 0-9, '.', '_', '-'.")
    admin = cluster_admin(rt)
    configs = {c.name: c.value for c in body.configs if c.value is not None}
    if body.validate_only:
        if name in rt.metadata.topics:
            raise errors.Conflict(f"Topic '{name}' already exists.")
        rf = body.replication_factor or 0
        return json_response(_topic_json(links, name, False, body.partitions_count or 0, rf), 201)
    await admin.create_topic(name, body.partitions_count, body.replication_factor, configs)
    await settle_topic(rt, name, True)
    detail = await admin.describe_topic(name)
    return json_response(_detail_json(links, detail), 201)


@router.delete(
    "/clusters/{cluster_id}/topics/{topic}",
    summary="Confluent v3: delete a topic",
    status_code=204,
    responses=errs(E_CLUSTER, (404, "Unknown topic (40401)"), E_503),
)
async def delete_topic(request: Request, rt: RuntimeDep, cluster_id: ClusterId, topic: Topic) -> Response:
    await links_for(request, rt, cluster_id)
    await cluster_admin(rt).delete_topic(topic)
    await settle_topic(rt, topic, False)
    return Response(status_code=204)
