"""Security through the app and a real broker: the authorization matrix over every route class (API.md §6).

For each route class — native produce, stateless reads, admin, Confluent v2 and v3, consumer
instances — without credentials 401 40101, with the wrong scope or topic 403 40301, allowed 2xx.
SSE, stream quotas and logs are in ``test_security_live.py`` (a live uvicorn), SASL in
``test_security_sasl.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from confluent_kafka.admin import AdminClient

from gateway.auth.api_keys import key_digest, new_key
from tests.conftest import create_topic
from tests.helpers import JwksServer, read_all

pytestmark = pytest.mark.anyio

V2_JSON = "application/vnd.kafka.json.v2+json"
V2 = "application/vnd.kafka.v2+json"
HS_SECRET = b"integration-test-secret-of-at-least-32-bytes"
ISS, AUD = "https://idp.example", "kafka-gateway"


class World:
    """Two topics (``allowed`` and ``other``) and one API key per kind of principal."""

    def __init__(self, admin: AdminClient, tmp: Path) -> None:
        prefix = f"sec-{uuid.uuid4().hex[:8]}"
        self.allowed = create_topic(admin, 1, name=f"{prefix}-allowed")
        self.other = create_topic(admin, 1, name=f"{prefix}-other")
        glob = f"{prefix}-allowed*"
        self.keys = {name: new_key() for name in ("writer", "reader", "admin", "nobody", "team", "limited")}
        self.team_groups = f"{prefix}-team-"
        scopes = {
            "writer": [f"write:{glob}"],
            "reader": [f"read:{glob}"],
            "admin": ["admin"],
            "nobody": [],
            "team": [f"read:{glob}", f"group:{self.team_groups}*"],
            "limited": [f"write:{glob}", f"read:{glob}"],
        }
        entries: list[dict[str, Any]] = [
            {"name": name, "sha256": key_digest(key), "scopes": scopes[name]} for name, key in self.keys.items()
        ]
        entries[-1]["quota"] = {"records_per_s": 3, "bytes_per_s": 1_000_000}
        self.key_file = tmp / "keys.json"
        self.key_file.write_text(json.dumps({"keys": entries}))

    def auth(self, who: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[who]}"} if who else {}


@pytest.fixture(scope="module")
def world(admin: AdminClient, tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(admin, tmp_path_factory.mktemp("keys"))


@pytest.fixture
async def api(make_client: Callable[..., Any], world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(auth={"mode": "api-key", "api_keys_file": str(world.key_file)}) as c:
        yield c


def _error(r: httpx.Response, status: int, code: int) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error_code", "message"} and body["error_code"] == code, body


async def _cluster_id(api: httpx.AsyncClient, world: World) -> str:
    r = await api.get("/v3/clusters", headers=world.auth("nobody"))
    assert r.status_code == 200, r.text
    return str(r.json()["data"][0]["cluster_id"])


# (name, scope kind needed, request builder(topic, cluster_id) -> (method, path, httpx kwargs))
TOPIC_ROUTES: list[tuple[str, str, Callable[[str, str], tuple[str, str, dict[str, Any]]]]] = [
    ("produce", "write", lambda t, c: ("POST", f"/topics/{t}/records", {"json": {"key": "k", "value": 1}})),
    (
        "produce-ndjson",
        "write",
        lambda t, c: (
            "POST",
            f"/topics/{t}/records",
            {"content": b'{"value":1}\n', "headers": {"content-type": "application/x-ndjson"}},
        ),
    ),
    (
        "stateless-read",
        "read",
        lambda t, c: ("GET", f"/topics/{t}/partitions/0/records", {"params": {"offset": 0, "timeout_ms": 0}}),
    ),
    ("offsets", "read", lambda t, c: ("GET", f"/topics/{t}/offsets", {})),
    ("describe-topic", "read", lambda t, c: ("GET", f"/topics/{t}", {})),
    (
        "v2-produce",
        "write",
        lambda t, c: (
            "POST",
            f"/topics/{t}",
            {"content": b'{"records":[{"value":{"a":1}}]}', "headers": {"content-type": V2_JSON, "accept": V2}},
        ),
    ),
    (
        "v2-produce-partition",
        "write",
        lambda t, c: (
            "POST",
            f"/topics/{t}/partitions/0",
            {"content": b'{"records":[{"value":2}]}', "headers": {"content-type": V2_JSON, "accept": V2}},
        ),
    ),
    ("v2-partitions", "read", lambda t, c: ("GET", f"/topics/{t}/partitions", {"headers": {"accept": V2}})),
    ("v2-partition-offsets", "read", lambda t, c: ("GET", f"/topics/{t}/partitions/0/offsets", {})),
    (
        "v3-produce",
        "write",
        lambda t, c: (
            "POST",
            f"/v3/clusters/{c}/topics/{t}/records",
            {"json": {"value": {"type": "JSON", "data": {"a": 1}}}},
        ),
    ),
    ("v3-topic", "read", lambda t, c: ("GET", f"/v3/clusters/{c}/topics/{t}", {})),
]


@pytest.mark.parametrize(("name", "kind", "build"), TOPIC_ROUTES, ids=[r[0] for r in TOPIC_ROUTES])
async def test_topic_routes_need_the_scope_for_that_topic(
    api: httpx.AsyncClient, world: World, name: str, kind: str, build: Callable[..., Any]
) -> None:
    cid = await _cluster_id(api, world)
    right, wrong = ("writer", "reader") if kind == "write" else ("reader", "writer")

    async def call(who: str | None, topic: str, token: str | None = None) -> httpx.Response:
        method, path, kwargs = build(topic, cid)
        headers = dict(kwargs.pop("headers", {}))
        headers.update({"authorization": f"Bearer {token}"} if token else world.auth(who))
        return await api.request(method, path, headers=headers, **kwargs)

    r = await call(None, world.allowed)
    _error(r, 401, 40101)
    assert r.headers["www-authenticate"].startswith("Bearer")
    _error(await call(None, world.allowed, token="kgw_not-a-key"), 401, 40101)
    _error(await call(wrong, world.allowed), 403, 40301)
    _error(await call("nobody", world.allowed), 403, 40301)
    _error(await call("admin", world.allowed), 403, 40301)  # admin alone reads and writes no data
    _error(await call(right, world.other), 403, 40301)
    r = await call(right, world.allowed)
    assert 200 <= r.status_code < 300, r.text


async def test_allowed_produce_really_lands_and_a_refused_one_writes_nothing(
    api: httpx.AsyncClient, world: World, bootstrap: str, admin: AdminClient
) -> None:
    topic = create_topic(admin, 1, name=f"{world.allowed}-land-{uuid.uuid4().hex[:6]}")
    r = await api.post(f"/topics/{topic}/records", json={"value": "ok"}, headers=world.auth("writer"))
    assert r.status_code == 200, r.text
    _error(await api.post(f"/topics/{topic}/records", json={"value": "no"}, headers=world.auth("reader")), 403, 40301)
    _error(await api.post(f"/topics/{topic}/records", json={"value": "no"}), 401, 40101)
    assert [m.value() for m in read_all(bootstrap, topic, 1)] == [b'"ok"']


ADMIN_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/cluster", {}),
    ("GET", "/consumer-groups", {}),
    ("GET", "/v3/clusters/{cid}/consumer-groups", {}),
]


async def test_admin_routes_need_the_admin_scope(api: httpx.AsyncClient, world: World) -> None:
    cid = await _cluster_id(api, world)
    for method, path, kwargs in ADMIN_ROUTES:
        path = path.format(cid=cid)
        _error(await api.request(method, path, **kwargs), 401, 40101)
        for who in ("writer", "reader", "nobody"):
            _error(await api.request(method, path, headers=world.auth(who), **kwargs), 403, 40301)
        r = await api.request(method, path, headers=world.auth("admin"), **kwargs)
        assert r.status_code == 200, (path, r.text)


async def test_topic_create_and_delete_are_admin_only(api: httpx.AsyncClient, world: World, admin: AdminClient) -> None:
    cid = await _cluster_id(api, world)
    name = f"{world.allowed}-created-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "partitions": 1, "replication_factor": 1}
    _error(await api.post("/topics", json=body), 401, 40101)
    _error(await api.post("/topics", json=body, headers=world.auth("writer")), 403, 40301)
    r = await api.post("/topics", json=body, headers=world.auth("admin"))
    assert r.status_code == 201, r.text
    _error(await api.delete(f"/topics/{name}", headers=world.auth("writer")), 403, 40301)
    _error(await api.delete(f"/v3/clusters/{cid}/topics/{name}", headers=world.auth("reader")), 403, 40301)
    assert name in admin.list_topics(timeout=10).topics
    r = await api.delete(f"/topics/{name}", headers=world.auth("admin"))
    assert r.status_code == 204, r.text
    v3 = {"topic_name": name + "-v3", "partitions_count": 1, "replication_factor": 1}
    _error(await api.post(f"/v3/clusters/{cid}/topics", json=v3, headers=world.auth("writer")), 403, 40301)
    r = await api.post(f"/v3/clusters/{cid}/topics", json=v3, headers=world.auth("admin"))
    assert r.status_code == 201, r.text
    r = await api.delete(f"/v3/clusters/{cid}/topics/{name}-v3", headers=world.auth("admin"))
    assert r.status_code == 204, r.text


async def test_listings_need_any_credential(api: httpx.AsyncClient, world: World) -> None:
    for path in ("/topics", "/brokers", "/v3/clusters"):
        _error(await api.get(path), 401, 40101)
        r = await api.get(path, headers=world.auth("nobody"))
        assert r.status_code == 200, (path, r.text)


async def test_topic_listings_show_only_the_topics_a_principal_may_use(api: httpx.AsyncClient, world: World) -> None:
    # As Kafka's own metadata does: a principal sees the topics it may read or write; admin sees all.
    cid = await _cluster_id(api, world)
    ours = {world.allowed, world.other}
    expected = {"reader": {world.allowed}, "writer": {world.allowed}, "nobody": set(), "admin": ours}
    for who, visible in expected.items():
        r = await api.get("/topics", headers=world.auth(who))
        assert r.status_code == 200, r.text
        assert ours & set(r.json()) == visible, who
        r = await api.get("/topics", headers={**world.auth(who), "accept": V2})
        assert ours & set(r.json()) == visible, who
        r = await api.get(f"/v3/clusters/{cid}/topics", headers=world.auth(who))
        assert r.status_code == 200, r.text
        assert ours & {t["topic_name"] for t in r.json()["data"]} == visible, who
    # Nothing else leaks either: a scoped principal's listing holds only names its globs match.
    r = await api.get("/topics", headers=world.auth("reader"))
    assert all(name.startswith(world.allowed) for name in r.json())


async def test_operations_routes_stay_open(api: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/metrics", "/openapi.json", "/docs"):
        r = await api.get(path)
        assert r.status_code == 200, (path, r.text)
    assert (await api.get("/readyz")).status_code in (200, 503)
    _error(await api.get("/no/such/route"), 404, 40400)


async def test_consumer_instances_need_read_on_every_topic_they_name(api: httpx.AsyncClient, world: World) -> None:
    group = f"sec-group-{uuid.uuid4().hex[:8]}"
    base = f"/consumers/{group}/instances/inst-1"
    v2 = {"content-type": V2, "accept": V2}
    create = json.dumps({"name": "inst-1", "format": "json"}).encode()
    _error(await api.post(f"/consumers/{group}", content=create, headers=v2), 401, 40101)
    r = await api.post(f"/consumers/{group}", content=create, headers={**v2, **world.auth("reader")})
    assert r.status_code == 200, r.text
    try:

        async def subscribe(who: str | None, body: dict[str, Any]) -> httpx.Response:
            content = json.dumps(body).encode()
            return await api.post(f"{base}/subscription", content=content, headers={**v2, **world.auth(who)})

        _error(await subscribe(None, {"topics": [world.allowed]}), 401, 40101)
        _error(await subscribe("reader", {"topics": [world.allowed, world.other]}), 403, 40301)
        _error(await subscribe("reader", {"topic_pattern": "sec-.*"}), 403, 40301)
        r = await api.post(f"{base}/subscription", content=b"{not json", headers={**v2, **world.auth("reader")})
        _error(r, 400, 40001)
        r = await subscribe("reader", {"topics": [world.allowed]})
        assert r.status_code == 204, r.text
        assign = {"partitions": [{"topic": world.other, "partition": 0}]}
        r = await api.post(
            f"{base}/assignments", content=json.dumps(assign).encode(), headers={**v2, **world.auth("reader")}
        )
        _error(r, 403, 40301)
        seek = {"offsets": [{"topic": world.other, "partition": 0, "offset": 0}]}
        r = await api.post(
            f"{base}/positions", content=json.dumps(seek).encode(), headers={**v2, **world.auth("reader")}
        )
        _error(r, 403, 40301)
        r = await api.get(f"{base}/subscription", headers={**v2, **world.auth("reader")})
        assert r.status_code == 200 and r.json() == {"topics": [world.allowed]}, r.text
    finally:
        r = await api.delete(base, headers={**v2, **world.auth("reader")})
        assert r.status_code == 204, r.text


async def test_group_scopes_confine_the_consumer_groups_a_principal_may_join(
    api: httpx.AsyncClient, world: World
) -> None:
    v2 = {"content-type": V2, "accept": V2}
    create = json.dumps({"name": "i", "format": "json"}).encode()
    ours, foreign = f"{world.team_groups}a", f"sec-someone-else-{uuid.uuid4().hex[:6]}"
    # Confluent consumer instances: only in the principal's groups.
    r = await api.post(f"/consumers/{foreign}", content=create, headers={**v2, **world.auth("team")})
    _error(r, 403, 40301)
    assert foreign in r.json()["message"]
    r = await api.post(f"/consumers/{ours}", content=create, headers={**v2, **world.auth("team")})
    assert r.status_code == 200, r.text
    r = await api.delete(f"/consumers/{ours}/instances/i", headers={**v2, **world.auth("team")})
    assert r.status_code == 204, r.text
    # SSE in group mode: refused before anything joins the group.
    events = f"/topics/{world.allowed}/events"
    sse = {**world.auth("team"), "accept": "text/event-stream"}
    _error(await api.get(events, params={"group": foreign}, headers=sse), 403, 40301)
    _error(await api.get(events, params={"group": ours}, headers={"accept": "text/event-stream"}), 401, 40101)
    # The last `group` wins, as the route reads it: a permitted first value does not smuggle in another.
    _error(await api.get(f"{events}?group={ours}&group={foreign}", headers=sse), 403, 40301)
    # A principal without group scopes keeps every group.
    r = await api.post(f"/consumers/{foreign}", content=create, headers={**v2, **world.auth("reader")})
    assert r.status_code == 200, r.text
    await api.delete(f"/consumers/{foreign}/instances/i", headers={**v2, **world.auth("reader")})


async def test_a_consumer_instance_belongs_to_its_creator(api: httpx.AsyncClient, world: World) -> None:
    group = f"sec-owner-{uuid.uuid4().hex[:8]}"
    base = f"/consumers/{group}/instances/mine"
    v2 = {"content-type": V2, "accept": V2}
    r = await api.post(
        f"/consumers/{group}", content=b'{"name":"mine","format":"json"}', headers={**v2, **world.auth("reader")}
    )
    assert r.status_code == 200, r.text
    try:
        for method, path in (("GET", "/subscription"), ("GET", "/records"), ("DELETE", "")):
            r = await api.request(method, base + path, headers={**v2, **world.auth("limited")})
            _error(r, 403, 40301)
        r = await api.get(base + "/subscription", headers={**v2, **world.auth("reader")})
        assert r.status_code == 200, r.text
    finally:
        r = await api.delete(base, headers={**v2, **world.auth("reader")})
        assert r.status_code == 204, r.text


# -- JWT -----------------------------------------------------------------------------------------


def _jwt(key: bytes = HS_SECRET, **claims: Any) -> str:
    body: dict[str, Any] = {"sub": "jwt-svc", "iss": ISS, "aud": AUD, "exp": int(time.time()) + 300}
    body.update(claims)
    return jwt.encode(body, key, algorithm="HS256")


@pytest.fixture
def jwt_client(make_client: Callable[..., Any], tmp_path: Path) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    key = tmp_path / "jwt.key"
    key.write_bytes(HS_SECRET)
    settings = {
        "mode": "jwt",
        "jwt_algorithm": "HS256",
        "jwt_key_file": str(key),
        "jwt_issuer": ISS,
        "jwt_audience": AUD,
        "jwt_scope_claim": "scp",
    }
    return make_client(auth=settings)  # type: ignore[no-any-return]


async def test_jwt_mode_checks_signature_expiry_issuer_audience_and_scopes(
    jwt_client: AbstractAsyncContextManager[httpx.AsyncClient], world: World, bootstrap: str
) -> None:
    topic = world.allowed
    good = _jwt(scp=[f"write:{topic}"])
    cases = [
        (_jwt(scp=[f"write:{topic}"], exp=int(time.time()) - 120), 401, "Token expired"),
        (_jwt(b"some-other-secret-that-is-long-enough!", scp=[f"write:{topic}"]), 401, "Invalid token"),
        (_jwt(scp=[f"write:{topic}"], iss="https://evil.example"), 401, "Invalid token"),
        (_jwt(scp=[f"write:{topic}"], aud="someone-else"), 401, "Invalid token"),
        (good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"), 401, "Invalid token"),
        (_jwt(scp=[f"read:{topic}"]), 403, "may not write"),
    ]
    async with jwt_client as c:
        for token, status, text in cases:
            r = await c.post(
                f"/topics/{topic}/records", json={"value": 1}, headers={"authorization": f"Bearer {token}"}
            )
            _error(r, status, status * 100 + 1)
            assert text in r.json()["message"]
            assert token not in r.text
        r = await c.post(f"/topics/{topic}/records", json={"value": "jwt"}, headers={"authorization": f"Bearer {good}"})
        assert r.status_code == 200, r.text
        offset = r.json()["offset"]
    assert any(m.value() == b'"jwt"' and m.offset() == offset for m in read_all(bootstrap, topic, offset + 1))


async def test_jwt_keys_from_an_identity_providers_jwks_url(
    make_client: Callable[..., Any], world: World, bootstrap: str
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    idp = JwksServer()
    try:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        idp.status = 500  # the IdP is down when the gateway starts
        settings = {"mode": "jwt", "jwt_jwks_url": idp.url, "jwt_jwks_refresh_s": 0.2, "jwt_issuer": ISS,
                    "jwt_audience": AUD, "jwt_scope_claim": "scp"}  # fmt: skip
        topic = world.allowed
        claims = {"sub": "idp-svc", "iss": ISS, "aud": AUD, "exp": int(time.time()) + 300, "scp": [f"write:{topic}"]}
        token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "main"})
        auth = {"authorization": f"Bearer {token}"}
        async with make_client(auth=settings) as c:
            r = await c.post(f"/topics/{topic}/records", json={"value": "idp"}, headers=auth)
            _error(r, 503, 50301)
            assert r.headers["retry-after"] == "5" and "signing keys" in r.json()["message"]
            # Not ready either, so an orchestrator sends the traffic to processes that have the keys.
            ready = await c.get("/readyz")
            _error(ready, 503, 50301)
            assert "signing keys" in ready.json()["message"]
            idp.status = 200
            idp.serve(("main", private))
            deadline = time.monotonic() + 5
            while ready.status_code == 503 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                ready = await c.get("/readyz")
            assert ready.status_code == 200, ready.text
            r = await c.post(f"/topics/{topic}/records", json={"value": "idp"}, headers=auth)
            assert r.status_code == 200, r.text
            offset = r.json()["offset"]
    finally:
        idp.close()
    assert any(m.value() == b'"idp"' and m.offset() == offset for m in read_all(bootstrap, topic, offset + 1))


# -- quotas --------------------------------------------------------------------------------------


async def test_record_quota_answers_429_with_retry_after_and_counts_it(
    api: httpx.AsyncClient, world: World, bootstrap: str, admin: AdminClient
) -> None:
    topic = create_topic(admin, 1, name=f"{world.allowed}-quota-{uuid.uuid4().hex[:6]}")
    auth = world.auth("limited")
    _error(await api.post(f"/topics/{topic}/records", json={"value": 0}), 401, 40101)
    r = await api.post(f"/topics/{topic}/records", json={"records": [{"value": i} for i in range(3)]}, headers=auth)
    assert r.status_code == 200, r.text
    r = await api.post(f"/topics/{topic}/records", json={"records": [{"value": 9}, {"value": 10}]}, headers=auth)
    _error(r, 429, 42901)
    assert int(r.headers["retry-after"]) >= 1
    assert "records/s" in r.json()["message"]
    # Other principals have their own buckets (and no quota here).
    r = await api.post(f"/topics/{topic}/records", json={"value": "w"}, headers=world.auth("writer"))
    assert r.status_code == 200, r.text
    metrics = (await api.get("/metrics")).text
    assert 'gateway_quota_rejections_total{kind="records",principal="limited"} 1.0' in metrics
    assert 'gateway_auth_failures_total{reason="missing"}' in metrics
    # The refused batch wrote nothing.
    assert [m.value() for m in read_all(bootstrap, topic, 4)] == [b"0", b"1", b"2", b'"w"']


async def test_byte_quota(make_client: Callable[..., Any], world: World) -> None:
    async with make_client(
        auth={"mode": "api-key", "api_keys_file": str(world.key_file)}, quotas={"bytes_per_s": 100}
    ) as c:
        auth = world.auth("writer")
        r = await c.post(f"/topics/{world.allowed}/records", json={"value": "x" * 150}, headers=auth)
        assert r.status_code == 200, r.text  # a full bucket admits one record larger than the burst ...
        r = await c.post(f"/topics/{world.allowed}/records", json={"value": "y"}, headers=auth)
        _error(r, 429, 42901)  # ... and the debt must be waited off
        assert "bytes/s" in r.json()["message"] and int(r.headers["retry-after"]) >= 1


# -- CORS ----------------------------------------------------------------------------------------


async def test_cors_preflight_for_sse_and_produce_and_headers_on_refusals(
    make_client: Callable[..., Any], world: World
) -> None:
    origin = "https://app.example.com"
    async with make_client(auth={"mode": "api-key", "api_keys_file": str(world.key_file)}, cors_origins=[origin]) as c:
        for method, path, headers in (
            ("GET", f"/topics/{world.allowed}/events", "authorization,last-event-id"),
            ("POST", f"/topics/{world.allowed}/records", "authorization,content-type,idempotency-key"),
        ):
            r = await c.options(
                path,
                headers={
                    "origin": origin,
                    "access-control-request-method": method,
                    "access-control-request-headers": headers,
                },
            )
            assert r.status_code == 200, r.text
            assert r.headers["access-control-allow-origin"] == origin
            assert method in r.headers["access-control-allow-methods"]
            allowed = r.headers["access-control-allow-headers"].lower()
            assert all(h in allowed for h in headers.split(","))
            assert "access-control-allow-credentials" not in r.headers
        r = await c.options(
            f"/topics/{world.allowed}/events",
            headers={"origin": "https://evil.example", "access-control-request-method": "GET"},
        )
        assert r.status_code == 400
        assert "access-control-allow-origin" not in r.headers
        # A refusal is readable by the allowed origin's script (and says when to retry).
        r = await c.post(f"/topics/{world.allowed}/records", json={"value": 1}, headers={"origin": origin})
        _error(r, 401, 40101)
        assert r.headers["access-control-allow-origin"] == origin
        assert "retry-after" in r.headers["access-control-expose-headers"].lower()
