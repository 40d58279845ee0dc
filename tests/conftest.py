"""Shared fixtures: a real Apache Kafka broker (KRaft), topics, the app in-process, and live gateways.

The broker comes from ``localkafka`` (Kafka's own jars from Maven Central) unless
``KAFKA_BOOTSTRAP_SERVERS`` names one to use instead.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from gateway.app import create_app
from gateway.settings import Settings
from localkafka import KafkaCluster
from tests.helpers import AccessLines, GatewayProcess


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with KafkaCluster(nodes=1) as cluster:
        yield cluster.bootstrap_servers


@pytest.fixture(scope="session")
def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(admin: AdminClient, partitions: int = 1, name: str | None = None, **configs: str) -> str:
    name = name or f"t-{uuid.uuid4().hex[:12]}"
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=configs or {})], operation_timeout=10)
    futures[name].result(timeout=15)
    # Wait until metadata shows every partition with a leader, so the first produce does not race it.
    for _ in range(100):
        md = admin.list_topics(name, timeout=5).topics.get(name)
        if (
            md is not None
            and md.error is None
            and len(md.partitions) == partitions
            and all(p.leader >= 0 for p in md.partitions.values())
        ):
            return name
        import time

        time.sleep(0.05)
    raise TimeoutError(f"topic {name} not ready")


@pytest.fixture
def new_topic(admin: AdminClient) -> Callable[..., str]:
    def make(partitions: int = 1, **configs: str) -> str:
        return create_topic(admin, partitions, **configs)

    return make


@pytest.fixture
def topic(new_topic: Callable[..., str]) -> str:
    return new_topic(1)


def settings_for(bootstrap: str, **overrides: object) -> Settings:
    values: dict[str, object] = {"kafka": {"bootstrap.servers": bootstrap}}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def make_client(bootstrap: str) -> Callable[..., object]:
    """An async context manager: the app with its lifespan, behind httpx.ASGITransport."""
    import contextlib

    @contextlib.asynccontextmanager
    async def client(**overrides: object) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings_for(bootstrap, **overrides))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as c:
                yield c

    return client


@pytest.fixture
async def client(make_client: Callable[..., object]) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client() as c:  # type: ignore[attr-defined]
        yield c


@pytest.fixture(scope="session")
def gateway(bootstrap: str) -> Iterator[GatewayProcess]:
    """A live ``python -m gateway`` on a free port, shared by the session."""
    with GatewayProcess(bootstrap) as gw:
        yield gw


@pytest.fixture
def access_log() -> Iterator[AccessLines]:
    """The access log lines written while the test runs."""
    handler = AccessLines()
    log = logging.getLogger("gateway.access")
    log.addHandler(handler)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
