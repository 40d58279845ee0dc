"""A real browser: headless Chromium's ``EventSource`` receives events and resumes with its own
``Last-Event-ID`` after the gateway drops the connection (API.md §2.1).

The page is the gateway's own origin (``/healthz`` opened in a tab), so the stream is same-origin and
needs no CORS; the script runs through the Chrome DevTools Protocol over a websocket.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from localkafka import free_port
from tests.conftest import create_topic
from tests.helpers import GatewayProcess
from tests.integration.sse_support import produce

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="chromium is not installed (CI installs it)"
)


class Page:
    """One browser tab driven over CDP: evaluate JavaScript and get JSON back."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == self.next_id:
                assert "error" not in msg, msg
                result: dict[str, Any] = msg["result"]
                return result

    def js(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in res, res
        return res["result"].get("value")


@pytest.fixture
def page() -> Iterator[Page]:
    assert CHROMIUM is not None, "CI must install chromium"
    port = free_port()
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "--remote-debugging-address=127.0.0.1",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ws_url = None
        deadline = time.monotonic() + 30
        while ws_url is None and time.monotonic() < deadline:
            try:
                targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                ws_url = next((t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page"), None)
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert ws_url, "chromium did not start"
        with connect(ws_url, max_size=None, open_timeout=10) as ws:
            yield Page(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(profile, ignore_errors=True)


def _wait_js(page: Page, expression: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.js(expression)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{expression} stayed false; page state: {page.js('JSON.stringify(window.state)')}")


def test_eventsource_receives_events_and_resumes_after_the_gateway_restarts(
    page: Page, bootstrap: str, admin: Any
) -> None:
    topic = create_topic(admin, 2)
    produce(bootstrap, topic, [(f"k{i}".encode(), json.dumps({"i": i}).encode()) for i in range(6)])
    env = {"GATEWAY_SSE__RETRY_MS": "300", "GATEWAY_SHUTDOWN_GRACE_S": "3"}
    gw = GatewayProcess(bootstrap, env=env).start()
    try:
        page.call("Page.enable")
        page.call("Page.navigate", url=gw.url + "/healthz")
        _wait_js(page, "document.readyState === 'complete' && location.pathname === '/healthz'")
        page.js(
            """
            window.state = {events: [], opens: 0, errors: 0};
            window.es = new EventSource('/topics/' + TOPIC + '/events?from=earliest');
            es.onopen = () => state.opens++;
            es.onerror = () => state.errors++;
            es.addEventListener('record', (e) => state.events.push({id: e.lastEventId, ...JSON.parse(e.data)}));
            true
            """.replace("TOPIC", json.dumps(topic))
        )
        _wait_js(page, "state.events.length === 6")

        # The server goes away (goodbye on SIGTERM) and comes back on the same address, while records keep coming.
        port = gw.port
        gw.stop()
        produce(bootstrap, topic, [(f"k{i}".encode(), json.dumps({"i": i}).encode()) for i in range(6, 12)])
        gw = GatewayProcess(bootstrap, env=env, port=port).start()
        _wait_js(page, "state.events.length >= 12")
        time.sleep(0.5)  # a repeat would arrive now
        state = page.js("JSON.stringify({state, readyState: es.readyState})")
    finally:
        gw.stop()
    got = json.loads(state)
    values = [e["value"]["i"] for e in got["state"]["events"]]
    # The reconnect carried the browser's own Last-Event-ID: from=earliest was not applied again.
    assert sorted(values) == list(range(12)) and len(values) == 12, values
    assert got["state"]["opens"] >= 2 and got["readyState"] == 1
    assert all(e["id"] for e in got["state"]["events"])
