"""Confluent v3 clusters: ``GET /v3/clusters`` (always one) and ``GET /v3/clusters/{cluster_id}``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.api.admin.client import cluster_admin
from gateway.api.confluent_v3.links import (
    E_503,
    E_CLUSTER,
    JSON,
    ClusterId,
    Links,
    cluster_id_of,
    json_response,
    links_for,
)
from gateway.api.deps import RuntimeDep
from gateway.api.error_docs import errs
from gateway.lifespan import Runtime

router = APIRouter(prefix="/v3", tags=["confluent v3"])


async def _cluster_json(links: Links, rt: Runtime) -> dict[str, Any]:
    info = await cluster_admin(rt).cluster()
    return {
        "kind": "KafkaCluster",
        "metadata": links.meta(),
        "cluster_id": links.cluster_id,
        "controller": links.related("brokers", str(info.controller.id)) if info.controller else None,
        "acls": links.related("acls"),
        "brokers": links.related("brokers"),
        "broker_configs": links.related("broker-configs"),
        "consumer_groups": links.related("consumer-groups"),
        "topics": links.related("topics"),
        "partition_reassignments": links.related("topics", "-", "partitions", "-", "reassignment"),
    }


_CLUSTER_EXAMPLE = {
    "kind": "KafkaCluster",
    "metadata": {"self": "http://gw:8080/v3/clusters/cluster-1", "resource_name": "crn:///kafka=cluster-1"},
    "cluster_id": "cluster-1",
    "controller": {"related": "http://gw:8080/v3/clusters/cluster-1/brokers/1"},
    "topics": {"related": "http://gw:8080/v3/clusters/cluster-1/topics"},
}


@router.get(
    "/clusters",
    summary="Confluent v3: the Kafka cluster (one)",
    responses={
        200: {"content": {JSON: {"example": {"kind": "KafkaClusterList", "data": [_CLUSTER_EXAMPLE]}}}},
        **errs(E_503),
    },
)
async def list_clusters(request: Request, rt: RuntimeDep) -> Response:
    links = Links(request, rt, await cluster_id_of(rt))
    data = [await _cluster_json(links, rt)]
    return json_response(
        {"kind": "KafkaClusterList", "metadata": {"self": links.base + "/clusters", "next": None}, "data": data}
    )


@router.get(
    "/clusters/{cluster_id}",
    summary="Confluent v3: one cluster",
    responses={200: {"content": {JSON: {"example": _CLUSTER_EXAMPLE}}}, **errs(E_CLUSTER, E_503)},
)
async def get_cluster(request: Request, rt: RuntimeDep, cluster_id: ClusterId) -> Response:
    links = await links_for(request, rt, cluster_id)
    return json_response(await _cluster_json(links, rt))
