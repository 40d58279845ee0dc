"""gateway/access_log.py: lines logged on the event loop are written together, none is lost."""

from __future__ import annotations

import asyncio
import io
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
