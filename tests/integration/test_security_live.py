"""Security on a live gateway process: SSE authorization (header and ``access_token``), the stream quota,
and no secret in logs, metrics or error bodies (the process's real stderr is captured)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from httpx_sse import connect_sse

from gateway.auth.api_keys import key_digest, new_key
from tests.conftest import create_topic
from tests.helpers import GatewayProcess, record_events


class Live:
    def __init__(self, gw: GatewayProcess, keys: dict[str, str], allowed: str, other: str, log: Path) -> None:
        self.gw, self.keys, self.allowed, self.other, self.log = gw, keys, allowed, other, log

    def auth(self, who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[who]}"}


@pytest.fixture(scope="module")
def live(bootstrap: str, admin: AdminClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("live-security")
    prefix = f"live-{uuid.uuid4().hex[:8]}"
    allowed = create_topic(admin, 1, name=f"{prefix}-allowed")
    other = create_topic(admin, 1, name=f"{prefix}-other")
    keys = {name: new_key() for name in ("reader", "writer", "streamer")}
    entries = [
        {
            "name": "reader",
            "sha256": key_digest(keys["reader"]),
            "scopes": [f"read:{prefix}-allowed", f"group:{prefix}-team-*"],
        },
        {"name": "writer", "sha256": key_digest(keys["writer"]), "scopes": [f"write:{prefix}-*"]},
        {
            "name": "streamer",
            "sha256": key_digest(keys["streamer"]),
            "scopes": [f"read:{prefix}-*"],
            "quota": {"max_streams": 1},
        },
    ]
    key_file = tmp / "keys.json"
    key_file.write_text(json.dumps({"keys": entries}))
    log = tmp / "gateway.log"
    env = {
        "GATEWAY_AUTH__MODE": "api-key",
        "GATEWAY_AUTH__API_KEYS_FILE": str(key_file),
        "GATEWAY_LOG_LEVEL": "debug",
        "GATEWAY_SSE__HEARTBEAT_S": "1",
    }
    with GatewayProcess(bootstrap, env=env, log_file=log) as gw:
        yield Live(gw, keys, allowed, other, log)


def _error(r: httpx.Response, status: int, code: int) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error_code"] == code, r.text


def test_sse_needs_read_on_the_topic_with_header_or_access_token(live: Live) -> None:
    with httpx.Client(base_url=live.gw.url, timeout=10) as http:
        events = f"/topics/{live.allowed}/events"
        _error(http.get(events), 401, 40101)
        _error(http.get(events, params={"access_token": "kgw_wrong"}), 401, 40101)
        _error(http.get(events, headers=live.auth("writer")), 403, 40301)
        _error(http.get(f"/topics/{live.other}/events", headers=live.auth("reader")), 403, 40301)
        # access_token is for EventSource only: other routes want the header.
        r = http.post(f"/topics/{live.allowed}/records", params={"access_token": live.keys["writer"]}, json={"v": 0})
        _error(r, 401, 40101)

        r = http.post(
            f"/topics/{live.allowed}/records", json={"key": "k", "value": "hello"}, headers=live.auth("writer")
        )
        assert r.status_code == 200, r.text
        team = live.allowed.replace("-allowed", "-team-a")
        _error(http.get(events, params={"group": "someone-else"}, headers=live.auth("reader")), 403, 40301)
        for params, headers in (
            ({"from": "earliest", "access_token": live.keys["reader"]}, {}),
            ({"from": "earliest"}, live.auth("reader")),
            # In a consumer group its group: scope allows (access_token works there too).
            ({"from": "earliest", "group": team, "access_token": live.keys["reader"]}, {}),
        ):
            with connect_sse(http, "GET", events, params=params, headers=headers) as source:
                assert source.response.status_code == 200
                first = next(record_events(source))
                assert first.event == "record" and json.loads(first.data)["value"] == "hello"


def test_stream_quota_refuses_a_second_concurrent_stream(live: Live) -> None:
    with httpx.Client(base_url=live.gw.url, timeout=10) as http:
        events = f"/topics/{live.allowed}/events"
        with connect_sse(http, "GET", events, headers=live.auth("streamer")) as source:
            assert source.response.status_code == 200
            # Keep the iterator: a dropped one is finalized at once and closes the connection.
            opened = source.iter_sse()
            next(opened)  # the stream is open (its retry: line)
            r = http.get(f"/topics/{live.other}/events", headers=live.auth("streamer"), timeout=3)
            _error(r, 429, 42901)
            assert int(r.headers["retry-after"]) >= 1
            # Another principal is not affected.
            with connect_sse(http, "GET", events, headers=live.auth("reader")) as other:
                assert other.response.status_code == 200
        # Once the first stream is closed, the quota has room again (the server notices the close).
        deadline = time.monotonic() + 15
        while True:
            with http.stream("GET", events, headers=live.auth("streamer")) as r:
                if r.status_code == 200:
                    break
                assert r.status_code == 429
            assert time.monotonic() < deadline, "the closed stream was never released"
            time.sleep(0.2)
        metrics = http.get("/metrics").text
        assert 'gateway_quota_rejections_total{kind="streams",principal="streamer"}' in metrics


def test_no_secret_in_logs_metrics_or_error_bodies(live: Live) -> None:
    with httpx.Client(base_url=live.gw.url, timeout=10) as http:
        guessed = "kgw_" + "guessed-secret-token-value"
        bodies = [
            http.get(f"/topics/{live.allowed}/events", params={"access_token": guessed}).text,
            http.post(
                f"/topics/{live.allowed}/records", json={"value": 1}, headers={"authorization": f"Bearer {guessed}"}
            ).text,
            http.get(f"/topics/{live.other}/events", params={"access_token": live.keys["reader"]}).text,
            http.get(f"/topics/{live.allowed}/offsets", headers=live.auth("writer")).text,
        ]
        with connect_sse(
            http, "GET", f"/topics/{live.allowed}/events", params={"access_token": live.keys["reader"]}
        ) as source:
            assert source.response.status_code == 200
        metrics = http.get("/metrics").text
    time.sleep(0.5)  # let the access log lines reach the file
    logs = live.log.read_text()
    assert '"principal":"reader"' in logs and '"principal":"writer"' in logs, "access log not captured"
    secrets = [guessed, *live.keys.values()]
    for secret in secrets:
        assert secret not in logs
        assert secret not in metrics
        for body in bodies:
            assert secret not in body
    assert "access_token" not in logs or "[redacted]" in logs
