"""The runtime's AdminClient as the admin operations of one request (native, Confluent v2 and v3 routes)."""

from __future__ import annotations

from gateway.kafka.admin import ClusterAdmin
from gateway.lifespan import Runtime


def cluster_admin(rt: Runtime) -> ClusterAdmin:
    return ClusterAdmin(rt.admin, rt.executor, rt.settings.request_timeout_s)
