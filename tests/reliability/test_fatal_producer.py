"""A producer librdkafka declares fatally broken: the gateway refuses produce, fails liveness and readiness.

The broker runs Kafka's StandardAuthorizer, and the gateway logs in (SASL SCRAM) as a user that may see
topics but write none. An idempotent producer asks for a producer id as soon as it connects; without Write
on any topic (or the old IdempotentWrite on the cluster) Kafka answers CLUSTER_AUTHORIZATION_FAILED, which
librdkafka treats as fatal: that producer can never send again, only a restart (with rights granted) helps.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from localkafka import KafkaCluster

pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.timeout(180)]

USER = "no-write"
PASSWORD = f"scram-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def guarded_cluster() -> Iterator[KafkaCluster]:
    acl = {
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # Inter-broker and controller traffic and this test's own clients use the PLAINTEXT listener (ANONYMOUS).
        "super.users": "User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }
    with KafkaCluster(nodes=1, sasl_users={USER: PASSWORD}, extra_config=acl) as cluster:
        yield cluster


async def test_a_fatal_producer_error_fails_health_and_refuses_produce(
    guarded_cluster: KafkaCluster, make_client: Callable[..., Any]
) -> None:
    topic = f"fatal-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": guarded_cluster.bootstrap_servers})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    # Describe only, so the gateway's metadata knows the topic and a produce reaches the producer.
    describe = AclBinding(
        ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, f"User:{USER}", "*",
        AclOperation.DESCRIBE, AclPermissionType.ALLOW,
    )  # fmt: skip
    for fut in admin.create_acls([describe]).values():
        fut.result(timeout=30)
    kafka = {
        "bootstrap.servers": guarded_cluster.sasl_bootstrap_servers,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": USER,
        "sasl.password": PASSWORD,
    }
    async with make_client(kafka=kafka, metadata_refresh_s=1) as c:
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
