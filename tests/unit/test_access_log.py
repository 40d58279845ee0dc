"""gateway/access_log.py: lines logged on the event loop are written together, none is lost."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from gateway.access_log import FLUSH_AFTER_S, MAX_PENDING_LINES, BatchedLineHandler


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def _logger(stream: CountingStream) -> tuple[logging.Logger, BatchedLineHandler]:
    log = logging.getLogger(f"test.access.{id(stream)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    handler = BatchedLineHandler(stream)
    log.addHandler(handler)
    return log, handler


def test_lines_logged_on_the_loop_are_written_together_and_soon() -> None:
    stream = CountingStream()
    log, _ = _logger(stream)

    async def requests() -> None:
        for i in range(5):
            log.info('{"n":%d}', i)
        assert stream.getvalue() == ""  # not yet: one write for all five
        await asyncio.sleep(FLUSH_AFTER_S * 5)

    asyncio.run(requests())
    assert stream.getvalue() == "".join(f'{{"n":{i}}}\n' for i in range(5))
    assert stream.writes == 1


def test_lines_off_the_loop_are_written_at_once_and_a_full_batch_does_not_wait() -> None:
    stream = CountingStream()
    log, handler = _logger(stream)
    log.info("outside")
    assert stream.getvalue() == "outside\n"

    async def burst() -> None:
        for i in range(MAX_PENDING_LINES + 1):
            log.info("line %d", i)
        assert stream.getvalue().count("\n") == 1 + MAX_PENDING_LINES

    asyncio.run(burst())
    handler.flush()  # what logging.shutdown() does at exit: nothing pending stays behind
    assert stream.getvalue().count("\n") == 1 + MAX_PENDING_LINES + 1


def test_a_loop_closed_before_its_flush_does_not_hold_back_later_lines() -> None:
    stream = CountingStream()
    log, _ = _logger(stream)

    async def log_and_leave() -> None:
        log.info("first")

    async def log_and_wait() -> None:
        log.info("second")
        await asyncio.sleep(FLUSH_AFTER_S * 5)

    asyncio.run(log_and_leave())  # its loop closes before the flush it scheduled
    asyncio.run(log_and_wait())
    assert stream.getvalue() == "first\nsecond\n"


def test_request_lines_reach_the_stream_and_any_handler_an_operator_adds() -> None:
    """The middleware hands its line to the batched handler directly (no LogRecord) only while that
    handler is the logger's only one; with another handler added, both get every line."""
    from starlette.types import Receive, Scope, Send

    from gateway.access_log import ACCESS_LOGGER
    from gateway.metrics import Metrics
    from gateway.observability import ObservabilityMiddleware
    from tests.helpers import AccessLines

    async def ok(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    log = logging.getLogger(ACCESS_LOGGER)
    saved = (log.handlers[:], log.level, log.propagate)
    stream = CountingStream()
    log.handlers = [BatchedLineHandler(stream)]
    log.setLevel(logging.INFO)
    log.propagate = False
    middleware = ObservabilityMiddleware(ok, Metrics())
    extra = AccessLines()

    async def request(request_id: str) -> None:
        scope = {"type": "http", "method": "GET", "path": "/x", "query_string": b"", "client": ("10.0.0.1", 1),
                 "headers": [(b"x-request-id", request_id.encode())]}  # fmt: skip

        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, object]) -> None:
            pass

        await middleware(scope, receive, send)  # type: ignore[arg-type]

    async def requests() -> None:
        await request("alone")
        log.addHandler(extra)
        await request("with-another")
        await asyncio.sleep(FLUSH_AFTER_S * 5)

    try:
        asyncio.run(requests())
    finally:
        log.handlers, log.level, log.propagate = saved
    written = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(x["request_id"], x["status"], x["path"]) for x in written] == [
        ("alone", 204, "/x"),
        ("with-another", 204, "/x"),
    ]
    assert [x["request_id"] for x in extra.parsed()] == ["with-another"]
