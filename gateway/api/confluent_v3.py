"""Confluent REST Proxy API v3 (API.md §3): clusters, topics, consumer groups and lags, and produce.

Shapes follow Confluent's v3 OpenAPI (``kind``, ``metadata.self``, ``related`` links, lists as
``{"kind": "...List", "metadata": {...}, "data": [...]}``). Links are absolute, built from the
advertised URL when set. Errors keep the gateway's ``{"error_code", "message"}`` with its 5-digit
codes; a produce report that succeeded has ``error_code`` 200, as in Confluent's.

``POST .../records`` takes one JSON record, or many concatenated (``{...}{...}``, any whitespace
between) on one chunked request: the answer is then a stream of one report per record, in order,
written as deliveries complete (the native NDJSON produce machinery).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from gateway import codec, errors, records
from gateway.api.confluent_v2 import cluster_admin
from gateway.api.deps import RuntimeDep
from gateway.api.errors import error_body, error_response
from gateway.api.produce import DuplexStreamingResponse
from gateway.kafka.admin import ClusterAdmin, GroupDetail, TopicDetail
from gateway.kafka.metadata import TopicInfo
from gateway.kafka.producer import Batch, Outcome, Prepared
from gateway.lifespan import Runtime
from gateway.publish import InOrder, Publisher

router = APIRouter(prefix="/v3", tags=["confluent v3"])

JSON = "application/json"
_encode = msgspec.json.encode
# After create/delete, how long to wait for the metadata cache to show it, so the next request does.
METADATA_SETTLE_S = 3.0
_ERR = {"content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _errs(*codes: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": text, **_ERR} for status, text in codes}


_E_CLUSTER = (404, "Unknown cluster id (40400)")
_E_503 = (503, "Kafka unreachable (50301); see Retry-After")


# -- links ---------------------------------------------------------------------------------------


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


async def _cluster_id(rt: Runtime, admin: ClusterAdmin | None = None) -> str:
    if rt.metadata.cluster_id:
        return rt.metadata.cluster_id
    info = await (admin or cluster_admin(rt)).cluster()
    if not info.cluster_id:
        raise errors.Unavailable("Kafka did not tell its cluster id.")
    return info.cluster_id


async def _links(request: Request, rt: Runtime, cluster_id: str) -> Links:
    known = await _cluster_id(rt)
    if cluster_id != known:
        raise errors.NotFound(f"Cluster {cluster_id} cannot be found.")
    return Links(request, rt, known)


def _json(content: Any, status: int = 200) -> Response:
    return Response(_encode(content), status, media_type=JSON)


ClusterId = Annotated[str, Path(description="Kafka cluster id (GET /v3/clusters)", max_length=255)]
Topic = Annotated[str, Path(max_length=249)]
Group = Annotated[str, Path(max_length=255)]


# -- clusters ------------------------------------------------------------------------------------


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
        **_errs(_E_503),
    },
)
async def list_clusters(request: Request, rt: RuntimeDep) -> Response:
    links = Links(request, rt, await _cluster_id(rt))
    data = [await _cluster_json(links, rt)]
    return _json(
        {"kind": "KafkaClusterList", "metadata": {"self": links.base + "/clusters", "next": None}, "data": data}
    )


@router.get(
    "/clusters/{cluster_id}",
    summary="Confluent v3: one cluster",
    responses={200: {"content": {JSON: {"example": _CLUSTER_EXAMPLE}}}, **_errs(_E_CLUSTER, _E_503)},
)
async def get_cluster(request: Request, rt: RuntimeDep, cluster_id: ClusterId) -> Response:
    links = await _links(request, rt, cluster_id)
    return _json(await _cluster_json(links, rt))


# -- topics --------------------------------------------------------------------------------------


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
    responses={
        200: {"content": {JSON: {"example": {"kind": "KafkaTopicList", "data": [_TOPIC_EXAMPLE]}}}},
        **_errs(_E_CLUSTER, _E_503),
    },
)
async def list_topics(request: Request, rt: RuntimeDep, cluster_id: ClusterId) -> Response:
    links = await _links(request, rt, cluster_id)
    data = [_topic_json(links, *t) for t in await _topic_summaries(rt)]
    return _json(links.listing("KafkaTopicList", data, "topics"))


@router.get(
    "/clusters/{cluster_id}/topics/{topic}",
    summary="Confluent v3: one topic",
    responses={
        200: {"content": {JSON: {"example": _TOPIC_EXAMPLE}}},
        **_errs(_E_CLUSTER, (404, "Unknown topic (40401)"), _E_503),
    },
)
async def get_topic(request: Request, rt: RuntimeDep, cluster_id: ClusterId, topic: Topic) -> Response:
    links = await _links(request, rt, cluster_id)
    return _json(_detail_json(links, await cluster_admin(rt).describe_topic(topic)))


class ConfigIn(msgspec.Struct):
    name: str
    value: str | None = None


class CreateTopicBody(msgspec.Struct, forbid_unknown_fields=True):
    topic_name: str
    partitions_count: int | None = None
    replication_factor: int | None = None
    configs: list[ConfigIn] = msgspec.field(default_factory=list)
    validate_only: bool = False


async def _settle(rt: Runtime, name: str, present: bool) -> None:
    """Wait (bounded) until the metadata cache agrees, so the very next request sees the change."""
    deadline = time.monotonic() + METADATA_SETTLE_S
    while time.monotonic() < deadline:
        await rt.metadata.refresh()
        if (name in rt.metadata.topics) == present:
            return
        await asyncio.sleep(0.05)


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
        **_errs(
            (400, "Malformed JSON (40001)"),
            _E_CLUSTER,
            (409, "Topic already exists (40901)"),
            (422, "Invalid name, partitions, replication factor or config (42201)"),
            _E_503,
        ),
    },
)
async def create_topic(request: Request, rt: RuntimeDep, cluster_id: ClusterId) -> Response:
    links = await _links(request, rt, cluster_id)
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
        return _json(_topic_json(links, name, False, body.partitions_count or 0, rf), 201)
    await admin.create_topic(name, body.partitions_count, body.replication_factor, configs)
    await _settle(rt, name, True)
    detail = await admin.describe_topic(name)
    return _json(_detail_json(links, detail), 201)


@router.delete(
    "/clusters/{cluster_id}/topics/{topic}",
    summary="Confluent v3: delete a topic",
    status_code=204,
    responses=_errs(_E_CLUSTER, (404, "Unknown topic (40401)"), _E_503),
)
async def delete_topic(request: Request, rt: RuntimeDep, cluster_id: ClusterId, topic: Topic) -> Response:
    await _links(request, rt, cluster_id)
    await cluster_admin(rt).delete_topic(topic)
    await _settle(rt, topic, False)
    return Response(status_code=204)


# -- consumer groups -----------------------------------------------------------------------------


def _state(state: str) -> str:
    # Confluent spells states in capitals ("STABLE", "PREPARING_REBALANCE").
    out = "".join("_" + c if c.isupper() and i else c for i, c in enumerate(state))
    return out.upper()


def _group_json(
    links: Links, g: GroupDetail | Any, assignor: str = "", coordinator: int | None = None
) -> dict[str, Any]:
    gid = g.group_id
    return {
        "kind": "KafkaConsumerGroup",
        "metadata": links.meta("consumer-groups", gid, crn=f"/consumer-group={gid}"),
        "cluster_id": links.cluster_id,
        "consumer_group_id": gid,
        "is_simple": g.simple,
        "partition_assignor": assignor,
        "state": _state(g.state),
        "type": g.type.upper(),
        "coordinator": links.related("brokers", str(coordinator)) if coordinator is not None else None,
        "consumers": links.related("consumer-groups", gid, "consumers"),
        "lag_summary": links.related("consumer-groups", gid, "lag-summary"),
    }


_GROUP_EXAMPLE = {
    "kind": "KafkaConsumerGroup",
    "cluster_id": "cluster-1",
    "consumer_group_id": "billing",
    "is_simple": False,
    "partition_assignor": "range",
    "state": "STABLE",
    "type": "CLASSIC",
}


@router.get(
    "/clusters/{cluster_id}/consumer-groups",
    summary="Confluent v3: list consumer groups",
    responses={
        200: {"content": {JSON: {"example": {"kind": "KafkaConsumerGroupList", "data": [_GROUP_EXAMPLE]}}}},
        **_errs(_E_CLUSTER, _E_503),
    },
)
async def list_groups(request: Request, rt: RuntimeDep, cluster_id: ClusterId) -> Response:
    links = await _links(request, rt, cluster_id)
    groups = await cluster_admin(rt).list_groups()
    return _json(links.listing("KafkaConsumerGroupList", [_group_json(links, g) for g in groups], "consumer-groups"))


@router.get(
    "/clusters/{cluster_id}/consumer-groups/{group}",
    summary="Confluent v3: one consumer group",
    responses={
        200: {"content": {JSON: {"example": _GROUP_EXAMPLE}}},
        **_errs(_E_CLUSTER, (404, "Unknown group (40404)"), _E_503),
    },
)
async def get_group(request: Request, rt: RuntimeDep, cluster_id: ClusterId, group: Group) -> Response:
    links = await _links(request, rt, cluster_id)
    g = await cluster_admin(rt).describe_group(group)
    return _json(_group_json(links, g, g.protocol, g.coordinator.id if g.coordinator else None))


def _lags(links: Links, g: GroupDetail) -> list[dict[str, Any]]:
    owner = {tp: m for m in g.members for tp in m.assignment}
    out = []
    for o in g.offsets:
        m = owner.get((o.topic, o.partition))
        out.append(
            {
                "kind": "KafkaConsumerLag",
                "metadata": links.meta(
                    "consumer-groups",
                    g.group_id,
                    "lags",
                    o.topic,
                    "partitions",
                    str(o.partition),
                    crn=f"/consumer-group={g.group_id}/lag={o.topic}/partition={o.partition}",
                ),
                "cluster_id": links.cluster_id,
                "consumer_group_id": g.group_id,
                "topic_name": o.topic,
                "partition_id": o.partition,
                "current_offset": o.committed_offset if o.committed_offset is not None else -1,
                "log_end_offset": o.latest_offset if o.latest_offset is not None else -1,
                "lag": o.lag if o.lag is not None else 0,
                "consumer_id": m.member_id if m else "",
                "instance_id": m.group_instance_id if m else None,
                "client_id": m.client_id if m else "",
            }
        )
    return out


@router.get(
    "/clusters/{cluster_id}/consumer-groups/{group}/lags",
    summary="Confluent v3: lag of every partition the group reads",
    responses={
        200: {
            "content": {
                JSON: {
                    "example": {
                        "kind": "KafkaConsumerLagList",
                        "data": [
                            {
                                "consumer_group_id": "billing",
                                "topic_name": "orders",
                                "partition_id": 0,
                                "current_offset": 40,
                                "log_end_offset": 42,
                                "lag": 2,
                                "consumer_id": "rdkafka-1b2c",
                            }
                        ],
                    }
                }
            }
        },
        **_errs(_E_CLUSTER, (404, "Unknown group (40404)"), _E_503),
    },
)
async def group_lags(request: Request, rt: RuntimeDep, cluster_id: ClusterId, group: Group) -> Response:
    links = await _links(request, rt, cluster_id)
    g = await cluster_admin(rt).describe_group(group)
    return _json(links.listing("KafkaConsumerLagList", _lags(links, g), "consumer-groups", group, "lags"))


@router.get(
    "/clusters/{cluster_id}/consumer-groups/{group}/lag-summary",
    summary="Confluent v3: total and largest lag of a group",
    responses={
        200: {
            "content": {
                JSON: {
                    "example": {
                        "kind": "KafkaConsumerGroupLagSummary",
                        "consumer_group_id": "billing",
                        "max_lag_topic_name": "orders",
                        "max_lag_partition_id": 0,
                        "max_lag": 2,
                        "total_lag": 3,
                    }
                }
            }
        },
        **_errs(_E_CLUSTER, (404, "Unknown group (40404)"), _E_503),
    },
)
async def group_lag_summary(request: Request, rt: RuntimeDep, cluster_id: ClusterId, group: Group) -> Response:
    links = await _links(request, rt, cluster_id)
    g = await cluster_admin(rt).describe_group(group)
    lags = _lags(links, g)
    top = max(lags, key=lambda x: x["lag"], default=None)
    summary: dict[str, Any] = {
        "kind": "KafkaConsumerGroupLagSummary",
        "metadata": links.meta("consumer-groups", group, "lag-summary", crn=f"/consumer-group={group}/lag-summary"),
        "cluster_id": links.cluster_id,
        "consumer_group_id": group,
        "max_lag_consumer_id": top["consumer_id"] if top else "",
        "max_lag_instance_id": top["instance_id"] if top else None,
        "max_lag_client_id": top["client_id"] if top else "",
        "max_lag_topic_name": top["topic_name"] if top else "",
        "max_lag_partition_id": top["partition_id"] if top else 0,
        "max_lag": top["lag"] if top else 0,
        "total_lag": sum(x["lag"] for x in lags),
    }
    if top:
        summary["max_lag_partition"] = links.related(
            "topics", top["topic_name"], "partitions", str(top["partition_id"])
        )
    return _json(summary)


# -- produce -------------------------------------------------------------------------------------

DataType = Literal["BINARY", "JSON", "STRING"]


class DataIn(msgspec.Struct, forbid_unknown_fields=True):
    type: DataType | None = None
    # msgspec's Raw cannot sit in a union with None: a missing or null data is Raw(b"null").
    data: msgspec.Raw = records.NULL
    # Schema-registry fields of Confluent's request; refused below with a clear message.
    subject: str | None = None
    schema_id: int | None = None
    schema_version: int | None = None
    schema: str | None = None
    subject_name_strategy: str | None = None


class HeaderIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    value: str | None = None


class RecordV3(msgspec.Struct, forbid_unknown_fields=True):
    partition_id: int | None = None
    headers: list[HeaderIn] = msgspec.field(default_factory=list)
    key: DataIn | None = None
    value: DataIn | None = None
    timestamp: str | int | None = None


_decode_record = msgspec.json.Decoder(RecordV3).decode


def _data(d: DataIn | None, what: str) -> tuple[bytes | None, str | None]:
    """A v3 key or value -> Kafka bytes and the type to report (None when absent)."""
    if d is None:
        return None, None
    if d.schema is not None or d.schema_id is not None or d.subject is not None or d.schema_version is not None:
        raise errors.InvalidRecord(f"{what}: schemas need a schema registry, which this gateway does not support.")
    kind = d.type or "JSON"
    raw = bytes(d.data)
    if raw == b"null":
        return None, kind
    if kind == "JSON":
        return codec.encode(raw, "json", what), kind
    try:
        text = msgspec.json.decode(raw, type=str)
    except msgspec.ValidationError:
        raise errors.InvalidRecord(f"{what}: data of type {kind} must be a JSON string.") from None
    if kind == "STRING":
        return text.encode(), kind
    try:
        return base64.b64decode(text, validate=True), kind
    except (binascii.Error, ValueError):
        raise errors.InvalidRecord(f"{what}: data of type BINARY is not valid base64.") from None


def _prepare(rec: RecordV3, max_record_bytes: int, where: str) -> tuple[Prepared, dict[str, Any]]:
    """Validate one v3 record; returns it for Kafka and the key/value part of its report."""
    try:
        key, key_type = _data(rec.key, "key")
        value, value_type = _data(rec.value, "value")
        headers: list[tuple[str, bytes]] | None = None
        if rec.headers:
            headers = []
            for h in rec.headers:
                try:
                    headers.append((h.name, base64.b64decode(h.value or "", validate=True)))
                except (binascii.Error, ValueError):
                    raise errors.InvalidRecord(f"header '{h.name}': value is not valid base64.") from None
        if rec.partition_id is not None and rec.partition_id < 0:
            raise errors.InvalidRecord("'partition_id' must be 0 or more.")
        ts = 0 if rec.timestamp is None else records.timestamp_ms(rec.timestamp)
        if rec.timestamp is not None and not 0 < ts <= records.MAX_TIMESTAMP_MS:
            raise errors.InvalidRecord(f"timestamp must be from epoch ms 1 to {records.MAX_TIMESTAMP_MS}.")
    except errors.GatewayError as exc:
        exc.message = f"{where}: {exc.message}"
        raise
    size = (len(key) if key else 0) + (len(value) if value else 0) + sum(len(n) + len(v) for n, v in headers or [])
    if size > max_record_bytes:
        raise errors.PayloadTooLarge(f"{where}: {size} bytes is over the limit of {max_record_bytes} bytes per record.")
    report: dict[str, Any] = {}
    if key_type is not None:
        report["key"] = {"type": key_type, "size": len(key or b"")}
    if value_type is not None:
        report["value"] = {"type": value_type, "size": len(value or b"")}
    partition = -1 if rec.partition_id is None else rec.partition_id
    return (value, key, headers, partition, ts, size), report


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _report(cluster_id: str, topic: str, out: Outcome, kv: dict[str, Any]) -> dict[str, Any]:
    if isinstance(out, errors.GatewayError):
        return error_body(out)
    return {
        "error_code": 200,
        "cluster_id": cluster_id,
        "topic_name": topic,
        "partition_id": out.partition,
        "offset": out.offset,
        "timestamp": _iso(out.timestamp),
        **kv,
    }


class ConcatenatedJson:
    """Splits a byte stream of concatenated JSON values (``{..}{..}`` or one per line) into values.

    ``json.JSONDecoder.raw_decode`` (C-accelerated) finds where each value ends; an incomplete value
    at the end of the buffer waits for more bytes. Bytes that cannot start a value are reported once
    the stream ends or the buffer grows past ``max_value`` (a concatenated stream has no way to
    resynchronise after a malformed value, so the stream ends there).
    """

    def __init__(self, max_value: int) -> None:
        self._decoder = json.JSONDecoder()
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""
        self._max = max_value

    def feed(self, chunk: bytes, final: bool = False) -> tuple[list[str], errors.GatewayError | None]:
        """Complete values so far, and the error that ends the stream (if any)."""
        self._buf += self._utf8.decode(chunk, final)
        out: list[str] = []
        pos = 0
        buf = self._buf
        n = len(buf)
        while True:
            while pos < n and buf[pos] in " \t\r\n":
                pos += 1
            if pos >= n:
                break
            try:
                _, end = self._decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if final or n - pos > self._max:
                    self._buf = ""
                    return out, errors.BadRequest(f"Malformed JSON: {exc.msg}; the stream ends here.")
                break
            out.append(buf[pos:end])
            pos = end
        self._buf = buf[pos:]
        return out, None


@router.post(
    "/clusters/{cluster_id}/topics/{topic}/records",
    summary="Confluent v3: produce one record, or a stream of concatenated records",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {"type": "object"},
                    "example": {
                        "partition_id": 0,
                        "headers": [{"name": "source", "value": "d2Vi"}],
                        "key": {"type": "STRING", "data": "user-1"},
                        "value": {"type": "JSON", "data": {"clicked": "buy"}},
                        "timestamp": "2026-11-27T12:00:00Z",
                    },
                }
            },
        }
    },
    responses={
        200: {
            "description": "The delivery report (`error_code` 200). On a chunked request: one report per record, "
            "in order, concatenated; a failed record's report is `{error_code, message}` and the stream goes on.",
            "content": {
                JSON: {
                    "example": {
                        "error_code": 200,
                        "cluster_id": "cluster-1",
                        "topic_name": "orders",
                        "partition_id": 0,
                        "offset": 42,
                        "timestamp": "2026-11-27T12:00:00.000Z",
                        "key": {"type": "STRING", "size": 6},
                        "value": {"type": "JSON", "size": 17},
                    }
                }
            },
        },
        **_errs(
            (400, "Malformed JSON (40001)"),
            _E_CLUSTER,
            (404, "Unknown topic (40401) or partition (40402)"),
            (413, "Record over the limits (41301)"),
            (415, "Content-Type is not application/json (41501)"),
            (422, "Record breaks the schema (42201)"),
            (429, "Producer queue full (42901)"),
            _E_503,
        ),
    },
)
async def produce(request: Request, rt: RuntimeDep, cluster_id: ClusterId, topic: Topic) -> Response:
    media = (request.headers.get("content-type") or JSON).split(";", 1)[0].strip().lower()
    if media != JSON:
        raise errors.UnsupportedMediaType(f"Content-Type must be {JSON}; got '{media}'.")
    await _links(request, rt, cluster_id)
    info = await rt.publisher.topic(topic)
    limits = rt.settings.produce
    max_value = limits.max_record_bytes * 2 + 65536
    if "chunked" in (request.headers.get("transfer-encoding") or "").lower():
        return DuplexStreamingResponse(_stream(request, rt, cluster_id, info, max_value), media_type=JSON)
    body = await request.body()
    if len(body) > limits.max_body_bytes:
        raise errors.PayloadTooLarge(f"Body is over the limit of {limits.max_body_bytes} bytes.")
    texts, error = ConcatenatedJson(max_value).feed(body, final=True)
    if error is not None:
        raise error
    if len(texts) != 1:
        raise errors.BadRequest(
            "Send one record per request, or many on a chunked request (Transfer-Encoding: chunked)."
        )
    rec, kv = _prepare(_decode_one(texts[0], "record"), limits.max_record_bytes, "record")
    (out,) = await Publisher.outcomes(rt.publisher.submit(info, [rec]))
    if isinstance(out, errors.GatewayError):
        return error_response(out)
    return _json(_report(cluster_id, info.name, out, kv))


def _decode_one(text: str, where: str) -> RecordV3:
    try:
        return _decode_record(text)
    except msgspec.ValidationError as exc:
        raise errors.InvalidRecord(f"{where}: Invalid record: {str(exc).replace('`$.', '`')}.") from None
    except msgspec.DecodeError as exc:
        raise errors.BadRequest(f"{where}: Malformed JSON: {exc}.") from None


async def _stream(
    request: Request, rt: Runtime, cluster_id: str, info: TopicInfo, max_value: int
) -> AsyncIterator[bytes]:
    """One report per record, in order, written as deliveries complete; bounded in flight.

    As in the native NDJSON produce: a reader task turns each chunk of the body into one producer
    batch while this generator writes reports, so a client that waits for a report before sending
    the next record is served, and at most ``ndjson_window`` records are in flight.
    """
    limits = rt.settings.produce
    window = limits.ndjson_window
    stream: InOrder[list[dict[str, Any]]] = InOrder(window)
    count = 0

    async def submit(texts: list[str]) -> None:
        nonlocal count
        for start in range(0, len(texts), window):
            prepared: list[Prepared] = []
            failed: list[tuple[int, errors.GatewayError]] = []
            kvs: list[dict[str, Any]] = []
            for text in texts[start : start + window]:
                count += 1
                where = f"record {count}"
                try:
                    rec, kv = _prepare(_decode_one(text, where), limits.max_record_bytes, where)
                except errors.GatewayError as exc:
                    failed.append((len(prepared), exc))
                    rec, kv = records.PLACEHOLDER, {}
                prepared.append(rec)
                kvs.append(kv)
            await stream.wait_for_room()
            try:
                batch = rt.publisher.submit(info, prepared, failed=failed)
            except errors.GatewayError as exc:  # 429/503 before anything of this group was produced
                batch = Batch(info.name, [exc] * len(prepared), None)
            stream.add(batch, kvs, len(kvs))

    async def reader() -> None:
        splitter = ConcatenatedJson(max_value)
        try:
            async for chunk in request.stream():
                texts, error = splitter.feed(chunk)
                await submit(texts)
                if error is not None:
                    raise error
            texts, error = splitter.feed(b"", final=True)
            await submit(texts)
            if error is not None:
                raise error
        except errors.GatewayError as exc:  # a malformed stream: report it, then end
            stream.add(Batch(info.name, [exc], None), [{}], 1)

    async for done in stream.run(reader):
        out = []
        for batch, kvs in done:
            for o, kv in zip(batch.outcomes(), kvs, strict=True):
                out.append(_encode(_report(cluster_id, info.name, o, kv)) + b"\n")
        yield b"".join(out)
