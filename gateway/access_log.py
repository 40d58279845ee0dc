"""Where the access log's JSON lines go: stderr, a batch of lines per ``write()``.

One line per request, written by a plain ``StreamHandler``, costs a ``write()`` system call per request
on the event loop (7 % of a single-record produce's CPU in bench/'s profile, 64 clients). This handler
collects the lines written on the event loop and writes them together a few milliseconds later: one
system call for every line of that moment, and a line is never later than ``FLUSH_AFTER_S``. Lines
logged off the event loop, and whatever is pending at ``logging.shutdown()`` (uvicorn's normal exit),
are written at once. Only a process killed outright loses its last few milliseconds of lines.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TextIO

ACCESS_LOGGER = "gateway.access"
# A pending line is written at most this late...
FLUSH_AFTER_S = 0.01
# ...or as soon as this many are pending, whichever comes first.
MAX_PENDING_LINES = 512


class BatchedLineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` that writes the lines logged on a running event loop in batches."""

    terminator = "\n"

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        # The loop a flush is scheduled on. Another loop (tests run several, one after another) may
        # have closed before its flush ran: a line logged on a new loop schedules one there.
        self._scheduled_on: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Called by Handler.handle with this handler's lock held.
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._add(line)

    def write_line(self, line: str) -> None:
        """Take a line already formatted, without a ``LogRecord`` (the access log's own fast path)."""
        with self.lock:  # type: ignore[union-attr]
            self._add(line)

    def _add(self, line: str) -> None:
        self._pending.append(line)
        if len(self._pending) >= MAX_PENDING_LINES:
            self._write_pending()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop (start-up, another thread): write now
            self._write_pending()
            return
        if self._scheduled_on is not loop:
            self._scheduled_on = loop
            loop.call_later(FLUSH_AFTER_S, self._flush_later)

    def _flush_later(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._scheduled_on = None
            self._write_pending()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        text = self.terminator.join(self._pending) + self.terminator
        self._pending.clear()
        try:
            self.stream.write(text)
            self.stream.flush()
        except Exception:  # a closed or broken stderr must not fail the request that logged
            self.handleError(logging.makeLogRecord({"msg": "access log write failed"}))

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write_pending()
        super().flush()


class _MessageOnly(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


def direct_handler(log: logging.Logger) -> BatchedLineHandler | None:
    """The handler a line can go to without a ``LogRecord``: the one ``configure`` installed, when it is
    still the logger's only handler and nothing filters (else lines take the ``logging`` way)."""
    handlers = log.handlers
    if len(handlers) != 1 or log.filters:
        return None
    handler = handlers[0]
    if type(handler) is not BatchedLineHandler or handler.filters or handler.level > logging.INFO:
        return None
    return handler


def configure(enabled: bool) -> None:
    """The access logger writes its JSON lines bare to stderr, whatever format the root logger uses."""
    log = logging.getLogger(ACCESS_LOGGER)
    log.propagate = False
    log.setLevel(logging.INFO if enabled else logging.WARNING)
    if not any(getattr(h, "_gateway_access", False) for h in log.handlers):
        handler = BatchedLineHandler(sys.stderr)
        handler.setFormatter(_MessageOnly())
        handler._gateway_access = True  # type: ignore[attr-defined]
        log.addHandler(handler)
