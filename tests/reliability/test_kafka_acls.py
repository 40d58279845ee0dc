"""Kafka's own ACLs against the gateway's Kafka user, on a broker running Kafka's StandardAuthorizer.

- A user that may see topics but write none: an idempotent producer asks for a producer id as soon as it
  connects; without Write on any topic (or the old IdempotentWrite on the cluster) Kafka answers
  CLUSTER_AUTHORIZATION_FAILED, which librdkafka treats as fatal: that producer can never send again, only a
  restart (with rights granted) helps. The gateway refuses produce and fails liveness and readiness.
- A user that may write one topic but not another: records for the other are refused with 403 (not a 503
  inviting retries that cannot succeed), and the allowed topic keeps working.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from httpx_sse import connect_sse

from localkafka import KafkaCluster
from tests.helpers import GatewayProcess

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(180)]

USER = "no-write"
PASSWORD = f"scram-{uuid.uuid4().hex}"
ONE_TOPIC_USER = "one-topic"


@pytest.fixture(scope="module")
def guarded_cluster() -> Iterator[KafkaCluster]:
    acl = {
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # Inter-broker and controller traffic and this test's own clients use the PLAINTEXT listener (ANONYMOUS).
        "super.users": "User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }
    users = {USER: PASSWORD, ONE_TOPIC_USER: PASSWORD}
    with KafkaCluster(nodes=1, sasl_users=users, extra_config=acl) as cluster:
        yield cluster


async def test_a_fatal_producer_error_fails_health_and_refuses_produce(
    guarded_cluster: KafkaCluster, make_client: Callable[..., Any]
) -> None:
    topic = f"fatal-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": guarded_cluster.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    # Describe only, so the gateway's metadata knows the topic and a produce reaches the producer.
    _allow(admin, USER, "*", AclOperation.DESCRIBE)
    async with make_client(kafka=_sasl(guarded_cluster, USER), metadata_refresh_s=1) as c:
        deadline = time.monotonic() + 30
        health = await c.get("/healthz")
        while health.status_code == 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            health = await c.get("/healthz")
        assert health.status_code == 503, health.text
        body = health.json()
        assert body["error_code"] == 50302 and "Kafka producer failed for good" in body["message"], body
        assert "authorization" in body["message"].lower(), body
        ready = await c.get("/readyz")
        assert ready.status_code == 503 and "Kafka producer failed" in ready.json()["message"], ready.text
        # Produce is refused up front, never taken into a queue that cannot drain.
        for body_json in ({"value": 1}, {"records": [{"value": 1}, {"value": 2}]}):
            r = await c.post(f"/topics/{topic}/records", json=body_json)
            assert r.status_code == 503, r.text
            assert r.json()["error_code"] == 50301 and "producer failed" in r.json()["message"], r.text
            assert r.headers["retry-after"], r.headers
    # And nothing reached Kafka.
    consumer = Consumer({"bootstrap.servers": guarded_cluster.bootstrap_servers, "group.id": f"check-{topic}"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0)
    finally:
        consumer.close()


async def test_a_topic_the_gateways_user_may_not_write_is_403_and_others_still_work(
    guarded_cluster: KafkaCluster, make_client: Callable[..., Any]
) -> None:
    allowed, denied = f"ok-{uuid.uuid4().hex[:8]}", f"denied-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": guarded_cluster.bootstrap_servers})
    for fut in admin.create_topics([NewTopic(allowed, 1, 1), NewTopic(denied, 1, 1)]).values():
        fut.result(timeout=30)
    _allow(admin, ONE_TOPIC_USER, "*", AclOperation.DESCRIBE)
    _allow(admin, ONE_TOPIC_USER, allowed, AclOperation.WRITE)
    async with make_client(kafka=_sasl(guarded_cluster, ONE_TOPIC_USER), metadata_refresh_s=1) as c:
        r = await c.post(f"/topics/{allowed}/records", json={"value": "fine"})
        assert r.status_code == 200, r.text
        r = await c.post(f"/topics/{denied}/records", json={"value": "no"})
        assert r.status_code == 403 and r.json()["error_code"] == 40301, r.text
        assert "gateway's own user" in r.json()["message"] and "retry-after" not in r.headers, r.text
        # A batch that fails whole for that one cause gets that status, each record saying why.
        r = await c.post(f"/topics/{denied}/records", json={"records": [{"value": 1}, {"value": 2}]})
        assert r.status_code == 403, r.text
        assert [x["error_code"] for x in r.json()["results"]] == [40301, 40301], r.text
        # The producer is not broken by it: the allowed topic goes on working, and health stays green.
        r = await c.post(f"/topics/{allowed}/records", json={"value": "still fine"})
        assert r.status_code == 200 and r.json()["offset"] == 1, r.text
        assert (await c.get("/healthz")).status_code == 200
    consumer = Consumer({"bootstrap.servers": guarded_cluster.bootstrap_servers, "group.id": f"check-{denied}"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition(denied, 0), timeout=10) == (0, 0)
        assert consumer.get_watermark_offsets(TopicPartition(allowed, 0), timeout=10) == (0, 2)
    finally:
        consumer.close()


def test_a_topic_the_gateways_user_may_not_read_is_403_and_ends_a_stream(guarded_cluster: KafkaCluster) -> None:
    topic = f"unreadable-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": guarded_cluster.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    _allow(admin, ONE_TOPIC_USER, "*", AclOperation.DESCRIBE)  # sees every topic, reads none
    producer = Producer({"bootstrap.servers": guarded_cluster.bootstrap_servers})
    producer.produce(topic, b'"there"')
    assert producer.flush(10) == 0
    env = {
        f"GATEWAY_KAFKA__{k.upper().replace('.', '_')}": v for k, v in _sasl(guarded_cluster, ONE_TOPIC_USER).items()
    }
    with GatewayProcess(guarded_cluster.sasl_bootstrap_servers, env=env) as gw, httpx.Client(base_url=gw.url) as http:
        # A stateless read: not an empty page that looks like the end of the partition.
        r = http.get(f"/topics/{topic}/partitions/0/records", params={"offset": 0, "timeout_ms": 2000}, timeout=30)
        assert r.status_code == 403 and r.json()["error_code"] == 40301, r.text
        assert "gateway's own user to read" in r.json()["message"], r.text
        # A stream: one `event: error` saying why, then the end, instead of heartbeats forever.
        with connect_sse(http, "GET", f"/topics/{topic}/events", params={"from": "earliest"}, timeout=30) as source:
            assert source.response.status_code == 200
            events = [e for e in source.iter_sse() if e.data]  # the prelude is a bare `retry:`
        assert [e.event for e in events] == ["error"], events
        assert "gateway's own user to read" in json.loads(events[0].data)["message"], events


def _allow(
    admin: AdminClient, user: str, name: str, operation: AclOperation, kind: ResourceType = ResourceType.TOPIC
) -> None:
    binding = AclBinding(
        kind, name, ResourcePatternType.LITERAL, f"User:{user}", "*", operation, AclPermissionType.ALLOW
    )
    for fut in admin.create_acls([binding]).values():
        fut.result(timeout=30)


def _sasl(cluster: KafkaCluster, user: str) -> dict[str, str]:
    return {
        "bootstrap.servers": cluster.sasl_bootstrap_servers,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": PASSWORD,
    }


def test_confluent_consumers_refused_a_group_or_a_topic_by_kafka_get_403(guarded_cluster: KafkaCluster) -> None:
    admin = AdminClient({"bootstrap.servers": guarded_cluster.bootstrap_servers})
    readable, unreadable = (f"{kind}-{uuid.uuid4().hex[:8]}" for kind in ("readable", "unreadable"))
    for topic in (readable, unreadable):
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
        _allow(admin, ONE_TOPIC_USER, topic, AclOperation.DESCRIBE)
    _allow(admin, ONE_TOPIC_USER, readable, AclOperation.READ)
    allowed_group, denied_group = f"ok-{uuid.uuid4().hex[:8]}", f"denied-{uuid.uuid4().hex[:8]}"
    _allow(admin, ONE_TOPIC_USER, allowed_group, AclOperation.READ, ResourceType.GROUP)
    env = {
        f"GATEWAY_KAFKA__{k.upper().replace('.', '_')}": v for k, v in _sasl(guarded_cluster, ONE_TOPIC_USER).items()
    }
    v2 = "application/vnd.kafka.v2+json"
    with GatewayProcess(guarded_cluster.sasl_bootstrap_servers, env=env) as gw, httpx.Client(base_url=gw.url) as http:

        def first_answer(group: str, topic: str) -> httpx.Response:
            r = http.post(f"/consumers/{group}", json={"name": "c", "format": "binary"}, headers={"content-type": v2})
            assert r.status_code == 200, r.text
            base = f"/consumers/{group}/instances/c"
            r = http.post(f"{base}/subscription", json={"topics": [topic]}, headers={"content-type": v2})
            assert r.status_code == 204, r.text
            deadline = time.monotonic() + 60
            while True:  # an empty page until the group's coordinator has answered
                r = http.get(f"{base}/records", params={"timeout": 1000}, headers={"accept": v2}, timeout=30)
                if r.status_code != 200 or r.json() or time.monotonic() > deadline:
                    return r

        # Before: 503 "Kafka error while fetching" with Retry-After, inviting retries that cannot succeed.
        r = first_answer(denied_group, readable)
        assert r.status_code == 403 and r.json()["error_code"] == 40301, r.text
        assert f"group '{denied_group}'" in r.json()["message"] and "Read on the group" in r.json()["message"], r.text
        r = first_answer(allowed_group, unreadable)
        assert r.status_code == 403 and r.json()["error_code"] == 40301, r.text
        assert f"topic '{unreadable}'" in r.json()["message"], r.text
