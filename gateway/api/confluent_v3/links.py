"""What every v3 resource route shares: the cluster in its path, absolute links, and the JSON answer."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import Path, Request
from fastapi.responses import Response

from gateway import errors
from gateway.api.admin.client import cluster_admin
from gateway.kafka.admin import ClusterAdmin
from gateway.lifespan import Runtime

JSON = "application/json"
encode = msgspec.json.encode

E_CLUSTER = (404, "Unknown cluster id (40400)")
E_503 = (503, "Kafka unreachable (50301); see Retry-After")

ClusterId = Annotated[str, Path(description="Kafka cluster id (GET /v3/clusters)", max_length=255)]
Topic = Annotated[str, Path(max_length=249)]


class Links:
    """Absolute URLs of v3 resources for one request."""

    def __init__(self, request: Request, rt: Runtime, cluster_id: str) -> None:
        self.base = (rt.settings.advertised_url or str(request.base_url)).rstrip("/") + "/v3"
        self.cluster_id = cluster_id

    def url(self, *parts: str) -> str:
        return "/".join([self.base, "clusters", self.cluster_id, *parts]).rstrip("/")

    def meta(self, *parts: str, crn: str = "") -> dict[str, Any]:
        return {"self": self.url(*parts), "resource_name": f"crn:///kafka={self.cluster_id}{crn}"}

    def related(self, *parts: str) -> dict[str, str]:
        return {"related": self.url(*parts)}

    def listing(self, kind: str, data: list[Any], *parts: str) -> dict[str, Any]:
        return {"kind": kind, "metadata": {"self": self.url(*parts), "next": None}, "data": data}


async def cluster_id_of(rt: Runtime, admin: ClusterAdmin | None = None) -> str:
    if rt.metadata.cluster_id:
        return rt.metadata.cluster_id
    info = await (admin or cluster_admin(rt)).cluster()
    if not info.cluster_id:
        raise errors.Unavailable("Kafka did not tell its cluster id.")
    return info.cluster_id


async def links_for(request: Request, rt: Runtime, cluster_id: str) -> Links:
    """Links of the cluster in the path, or 404 40400 when it is not the one Kafka names."""
    known = await cluster_id_of(rt)
    if cluster_id != known:
        raise errors.NotFound(f"Cluster {cluster_id} cannot be found.")
    return Links(request, rt, known)


def json_response(content: Any, status: int = 200) -> Response:
    return Response(encode(content), status, media_type=JSON)
