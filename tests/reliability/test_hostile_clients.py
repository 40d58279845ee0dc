"""Slow, stalled and abusive HTTP clients do not exhaust the gateway (issue 10).

Bounded in count and time, loopback only.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import create_topic
from tests.helpers import GatewayProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

STALLED_CONNECTIONS = 200
NON_READING_STREAMS = 20


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_stalled_requests_and_non_reading_streams_leave_the_gateway_serving(bootstrap: str, admin: object) -> None:
    topic = create_topic(admin, 1)  # type: ignore[arg-type]
    env = {"GATEWAY_SSE__SEND_TIMEOUT_S": "3"}
    with GatewayProcess(bootstrap, env=env) as gw:
        assert gw.process is not None
        rss_before = rss_bytes(gw.process.pid)
        sockets: list[socket.socket] = []
        try:
            # Half-sent request headers that never complete.
            for _ in range(STALLED_CONNECTIONS):
                s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
                s.sendall(b"POST /topics/" + topic.encode() + b"/records HTTP/1.1\r\nHost: x\r\nContent-Le")
                sockets.append(s)
            # Streams whose readers never read, with a tiny receive buffer, while records pour in.
            for _ in range(NON_READING_STREAMS):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                s.connect(("127.0.0.1", gw.port))
                s.sendall(f"GET /topics/{topic}/events?from=latest HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                sockets.append(s)
            value = {"blob": "x" * 2000}
            with httpx.Client(base_url=gw.url, timeout=10) as http:
                for _ in range(10):
                    batch = {"records": [{"key": "k", "value": value}] * 200}
                    r = http.post(f"/topics/{topic}/records", json=batch)
                    assert r.status_code == 200, r.text
                # Meanwhile other clients are served normally.
                assert http.get("/healthz").status_code == 200
                r = http.post(f"/topics/{topic}/records", json={"key": "ok", "value": 1})
                assert r.status_code == 200, r.text
                time.sleep(4)  # past the send timeout: non-reading streams are dropped
                assert http.get("/readyz").status_code == 200
            rss_after = rss_bytes(gw.process.pid)
            print(
                f"\nrss before={rss_before >> 20} MiB after={rss_after >> 20} MiB with {len(sockets)} hostile sockets"
            )
            # 4 MB of records fanned out to 20 stuck readers must not be buffered without bound.
            assert rss_after - rss_before < 200 * 1024 * 1024
        finally:
            for s in sockets:
                s.close()
        assert gw.process.poll() is None
