"""Native produce of an NDJSON stream (API.md §1): one result line per input line, in order.

Results are written while the body is still being read, so a client that waits for a line's result
before sending the next is served; records in flight are bounded by ``produce.ndjson_window``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from fastapi import Request

from gateway import errors, records
from gateway.api.errors import error_body
from gateway.kafka.delivery import Batch, Delivered, Outcome
from gateway.kafka.metadata import TopicInfo
from gateway.lifespan import Runtime
from gateway.publish import InOrder

_encode_lines = msgspec.json.Encoder().encode_lines


def outcome_body(out: Outcome) -> Any:
    # Delivered encodes as {"partition","offset","timestamp"}; an error as {"error_code","message"}.
    return out if type(out) is Delivered else error_body(out)  # type: ignore[arg-type]


def _failed(topic: str, errs: list[errors.GatewayError]) -> Batch:
    """A batch of lines that failed before reaching the producer."""
    batch = Batch(topic, list(errs), None)
    batch.refused = list(range(len(errs)))
    return batch


async def _line_groups(request: Request, max_line: int, max_group: int) -> AsyncIterator[list[bytes]]:
    """The body's lines, grouped as they arrive (≤ ``max_group`` per group); a too-long line is refused
    before it is buffered whole."""
    parts: list[bytes] = []  # an unfinished line, kept in pieces so a long line is not copied per chunk
    partial_len = 0
    async for chunk in request.stream():
        if b"\n" not in chunk:
            parts.append(chunk)
            partial_len += len(chunk)
            if partial_len > max_line:
                raise errors.PayloadTooLarge(f"An NDJSON line is over the limit of {max_line} bytes.")
            continue
        if parts:
            parts.append(chunk)
            chunk = b"".join(parts)
            parts = []
        lines = chunk.split(b"\n")
        rest = lines.pop()
        if rest:
            parts.append(rest)
        partial_len = len(rest)
        for start in range(0, len(lines), max_group):
            yield lines[start : start + max_group]
    if parts:
        yield [b"".join(parts)]


async def ndjson_results(
    request: Request, rt: Runtime, info: TopicInfo, formats: records.Formats
) -> AsyncIterator[bytes]:
    """One result line per input line, in order, written as deliveries complete; bounded in flight.

    A reader task turns incoming lines into batches (one per chunk of the body) while this generator
    writes results, so a client that waits for a line's result before sending the next is served.
    """
    limits = rt.settings.produce
    window = limits.ndjson_window
    # A line longer than a record could ever be is refused before it is buffered whole.
    max_line = limits.max_record_bytes * 2 + 65536
    stream: InOrder[None] = InOrder(window)

    async def reader() -> None:
        lineno = 0
        try:
            async for lines in _line_groups(request, max_line, window):
                prepared: list[records.Prepared] = []
                failed: list[tuple[int, errors.GatewayError]] = []
                for line in lines:
                    lineno += 1
                    if not line.strip():
                        continue
                    try:
                        where = f"line {lineno}"
                        rec = records.parse_line(line, formats, where)
                        prepared.extend(records.prepare([rec], formats, limits.max_record_bytes, None, where))
                    except errors.GatewayError as exc:
                        failed.append((len(prepared), exc))
                        prepared.append(records.PLACEHOLDER)
                if not prepared:
                    continue
                await stream.wait_for_room()
                try:
                    batch = rt.publisher.submit(info, prepared, failed=failed)
                except errors.GatewayError as exc:  # 429/503 before anything of this group was produced
                    batch = _failed(info.name, [exc] * len(prepared))
                stream.add(batch, None, len(prepared))
        except errors.GatewayError as exc:  # a line over the limit: say so, then end the stream
            stream.add(_failed(info.name, [exc]), None, 0)

    async for done in stream.run(reader):
        out = []
        for batch, _ in done:
            results = batch.outcomes()
            out.append(_encode_lines([outcome_body(o) for o in results] if batch.failed or batch.refused else results))
        yield b"".join(out)
