"""The two response types of an SSE stream (``GET /topics/{topic}/events``, gateway/api/consume.py).

``StreamResponse``: sse-starlette's response around a stream's own generator, with cleanup that always runs.
``FanOutResponse``: a subscriber of a shared feed (gateway/hub.py), written by one small task of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from gateway import sse
from gateway.feed import Subscription
from gateway.hub import Slot, StreamHub
from gateway.lifespan import Runtime

__all__ = ["FanOutResponse", "StreamResponse"]


class StreamResponse(EventSourceResponse):
    """An ``EventSourceResponse`` that always runs its cleanup, even when the body never started
    (client gone before the first send) or the response failed."""

    def __init__(self, *args: Any, cleanup: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cleanup = cleanup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await asyncio.shield(self._cleanup())


class _Nothing:
    """An empty body for the fan-out response: its data come from the subscription, not an iterator."""

    def __aiter__(self) -> _Nothing:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration


_NOTHING = _Nothing()
# sse-starlette makes a lock per response to serialise its ping task with the data; a fan-out
# stream has no ping task, so all of them share this one instead of a 760-byte deque each.
_UNUSED_LOCK = anyio.Lock()
_SHARED_HEADERS: dict[tuple[tuple[bytes, bytes], ...], list[tuple[bytes, bytes]]] = {}


def _body(chunk: bytes) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": True}


class FanOutResponse(EventSourceResponse):
    """A subscriber of a shared feed, written by a task of its own.

    Deliberately not sse-starlette's ``__call__``, which runs an anyio task group of four tasks per
    stream (data, ping, shutdown watcher, disconnect watcher) and a timeout scope per write: about
    25 KB and several wake-ups per idle subscriber, and a timer per write, for thousands of streams
    that all wait on the same feed (bench/RESULTS.md). Here a writer task waits on the subscription's
    buffer and writes whatever it holds in one send, the connection's own task waits for the client
    to leave (sse-starlette's ``_listen_for_disconnect``), and the rest is shared by all subscribers:

    - heartbeats: the hub offers one ``: ping`` comment to every subscriber each ``heartbeat_s``;
    - ``send_timeout``: the hub's watchdog cancels a write stuck longer, raised here as
      sse-starlette's ``SendTimeoutError`` as its own timeout would;
    - shutdown: the process's shutdown watcher (``gateway/api/shutdown.py``, sse-starlette's
      ``AppStatus``) drains the hub, which wakes every subscriber to send its goodbye.

    HEAD is sse-starlette's: headers and no stream.
    """

    def __init__(self, rt: Runtime, sub: Subscription, slot: Slot) -> None:
        cfg = rt.settings.sse
        super().__init__(
            _NOTHING,
            ping=0,
            sep="\n",
            send_timeout=cfg.send_timeout_s,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            client_close_handler_callable=self._hang_up,
        )
        self._send_lock = _UNUSED_LOCK
        # Every fan-out response has the same headers: keep one list for all of them (each start
        # message gets a copy, as a middleware may add to it).
        self.raw_headers = _SHARED_HEADERS.setdefault(tuple(self.raw_headers), self.raw_headers)
        self._hub: StreamHub = rt.hub
        self._sub = sub
        self._slot = slot
        self._retry_ms = cfg.retry_ms
        self._sent = rt.metrics.sse_events.labels("shared")
        self._failed = False

    async def _hang_up(self, message: Message) -> None:
        self._sub.hang_up()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["type"] != "http" or scope["method"].upper() == "HEAD":
                self.raw_headers = list(self.raw_headers)
                await super().__call__(scope, receive, send)
            else:
                await self._run(receive, send)
        finally:
            self._hub.unsubscribe(self._sub)
            self._slot.release()

    async def _run(self, receive: Receive, send: Send) -> None:
        # The connection's task waits deep inside the middleware's await chain, and resuming a task
        # resumes every coroutine of that chain: writing from it would cost some twenty resumptions
        # per wake-up and subscriber. So a task of its own, two calls deep, writes; this one only
        # waits for the client to leave, or for the writer's last message, which completes the
        # response and so ends ``receive()`` as well.
        request = asyncio.current_task()
        assert request is not None
        writer = asyncio.get_running_loop().create_task(self._pump(send, request))
        self._sub.task = writer
        try:
            await self._listen_for_disconnect(receive)
        except asyncio.CancelledError:
            if not self._failed:
                writer.cancel()
                raise
            request.uncancel()  # the writer failed and woke us: its error is raised below
        self._sub.hang_up()
        await writer

    async def _pump(self, send: Send, request: asyncio.Task[Any]) -> None:
        sub, hub = self._sub, self._hub
        try:
            await self._write(
                send, {"type": "http.response.start", "status": self.status_code, "headers": list(self.raw_headers)}
            )
            await self._write(send, _body(sse.prelude(self._retry_ms)))
            while True:
                if sub.chunks:
                    # Everything that arrived since the last write, in one write.
                    chunk, events = sub.take()
                    await self._write(send, _body(chunk))
                    if events:
                        self._sent.inc(events)
                elif sub.error is not None:
                    await self._write(send, _body(sse.error_event(sub.error)))
                    break
                elif sub.gone:
                    break
                elif hub.draining:
                    await self._write(send, _body(sse.goodbye(self._retry_ms)))
                    break
                else:
                    await sub.wait()
            self.active = False
            await self._write(send, {"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            raise
        except BaseException:
            # The connection's task waits for the client, which may never come back: wake it.
            self._failed = True
            request.cancel()
            raise

    async def _write(self, send: Send, message: Message) -> None:
        sub = self._sub
        sub.sending_since = asyncio.get_running_loop().time()
        try:
            await send(message)
        except asyncio.CancelledError:
            if not sub.timed_out:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            raise SendTimeoutError from None
        finally:
            sub.sending_since = 0.0
