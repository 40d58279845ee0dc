"""Shutdown: unready first, a final ``retry:`` on every stream, and the process gone within the grace period."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sse_starlette.sse import AppStatus

from tests.helpers import GatewayProcess
from tests.integration.sse_support import metric, produce, wait_until


class Lines(threading.Thread):
    """Every raw line of one stream, until the server ends it."""

    def __init__(self, url: str, path: str, params: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.path, self.params = url, path, params
        self.lines: list[str] = []
        self.ended_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.url, timeout=30) as http,
                http.stream("GET", self.path, params=self.params) as r,
            ):
                for line in r.iter_lines():
                    self.lines.append(line)
            self.ended_at = time.monotonic()
        except BaseException as exc:  # recorded for the assertion, not swallowed
            self.error = exc


def test_sigterm_sends_every_stream_a_goodbye_and_exits_within_the_grace_period(
    bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(2)
    produce(bootstrap, topic, [(b"k", b"1")] * 10)
    grace = 6
    env = {"GATEWAY_SHUTDOWN_GRACE_S": str(grace), "GATEWAY_SSE__RETRY_MS": "777"}
    gw = GatewayProcess(bootstrap, env=env).start()
    try:
        path = f"/topics/{topic}/events"
        streams = [
            Lines(gw.url, path, {}),  # shared feed at latest
            Lines(gw.url, path, {"from": "earliest"}),  # own assign-mode consumer
            Lines(gw.url, path, {"group": f"g-{uuid.uuid4().hex[:6]}", "from": "earliest"}),
        ]
        for s in streams:
            s.start()
        wait_until(lambda: metric(gw.url, "gateway_sse_streams", mode="shared") == 1, 10)
        wait_until(lambda: sum(ln.startswith("id: ") for ln in streams[1].lines) == 10, 20)
        wait_until(lambda: sum(ln.startswith("id: ") for ln in streams[2].lines) == 10, 30)
        assert gw.process is not None
        sent = time.monotonic()
        gw.process.send_signal(signal.SIGTERM)
        for s in streams:
            s.join(grace + 5)
        code = gw.process.wait(grace + 5)
        exited = time.monotonic() - sent
        # uvicorn re-raises the captured SIGTERM after its orderly shutdown, so the status says "terminated".
        assert code in (0, -signal.SIGTERM)
        assert exited < grace + 2, f"exited after {exited:.1f} s"
        for s in streams:
            assert s.error is None and s.ended_at is not None
            # The last event is the goodbye: a retry line and a comment, then the stream ends.
            tail = [ln for ln in s.lines if ln][-2:]
            assert tail[0] == "retry: 777" and tail[1].startswith(": gateway shutting down"), s.lines[-5:]
        # After the goodbye, this process is no longer a place to reconnect to.
        with pytest.raises(httpx.ConnectError):
            httpx.get(gw.url + "/readyz", timeout=2)
    finally:
        gw.stop()


@pytest.mark.anyio
async def test_shutdown_turns_the_gateway_unready_and_refuses_new_streams(
    make_client: Callable[..., Any], topic: str
) -> None:
    async with make_client() as client:
        assert (await client.get("/readyz")).status_code == 200
        # What sse-starlette's patched uvicorn SIGTERM handler sets when shutdown begins.
        AppStatus.should_exit = True
        try:
            deadline = time.monotonic() + 5
            while (r := await client.get("/readyz")).status_code != 503 and time.monotonic() < deadline:
                await _sleep(0.02)
            assert r.status_code == 503 and "draining" in r.json()["message"]
            r = await client.get(f"/topics/{topic}/events")
            assert r.status_code == 503 and r.json()["error_code"] == 50301 and r.headers["retry-after"]
        finally:
            AppStatus.should_exit = False


async def _sleep(s: float) -> None:
    import asyncio

    await asyncio.sleep(s)
