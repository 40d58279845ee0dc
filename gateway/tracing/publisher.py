"""A PRODUCER span per published batch, and its W3C trace context in the batch's record headers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway import errors
from gateway.kafka.metadata import TopicInfo
from gateway.kafka.producer import Batch, Prepared
from gateway.quotas import MeteredPublisher

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from gateway.tracing.provider import Tracing

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"


def _traceparent(span: Span) -> list[tuple[str, bytes]] | None:
    ctx = span.get_span_context()
    if not ctx.is_valid:  # OTEL_SDK_DISABLED and the like: nothing to propagate
        return None
    headers = [(TRACEPARENT, b"00-%032x-%016x-%02x" % (ctx.trace_id, ctx.span_id, ctx.trace_flags))]
    state = ctx.trace_state.to_header()
    if state:
        headers.append((TRACESTATE, state.encode()))
    return headers


def with_trace_headers(records: Sequence[Prepared], trace_headers: list[tuple[str, bytes]]) -> list[Prepared]:
    """Each record with the trace headers appended, unless it has a ``traceparent`` of its own.

    The record's ``size`` stays what the client sent: quotas and limits count the client's bytes.
    The same header list is shared by records without headers; librdkafka copies it on produce.
    """
    has_state = len(trace_headers) > 1
    out: list[Prepared] = []
    append = out.append
    for rec in records:
        headers = rec[2]
        if headers is None:
            append((rec[0], rec[1], trace_headers, rec[3], rec[4], rec[5]))
        elif any(name == TRACEPARENT for name, _ in headers):
            append(rec)
        else:
            extra = trace_headers
            if has_state and any(name == TRACESTATE for name, _ in headers):
                extra = trace_headers[:1]
            append((rec[0], rec[1], headers + extra, rec[3], rec[4], rec[5]))
    return out


class TracedPublisher(MeteredPublisher):
    """The publisher used when tracing is on: a PRODUCER span per batch and trace headers on its records."""

    tracing: Tracing

    def submit(self, topic: TopicInfo, records: Sequence[Prepared], *args: Any, **kwargs: Any) -> Batch:
        tracer = self.tracing.tracer
        if tracer is None:
            return super().submit(topic, records, *args, **kwargs)
        otel = self.tracing.otel
        n = len(records)
        span = tracer.start_span(
            f"send {topic.name}",
            kind=otel.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.name": "send",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic.name,
                "messaging.batch.message_count": n,
            },
        )
        trace_headers = _traceparent(span)
        if trace_headers is not None:
            records = with_trace_headers(records, trace_headers)
        try:
            batch = super().submit(topic, records, *args, **kwargs)
        except errors.GatewayError as exc:  # refused whole: queue full, quota, shutting down
            _fail(span, otel, type(exc).__name__, exc.message)
            span.end()
            raise
        pre_failed = frozenset(i for i, _ in kwargs.get("failed", ()))
        if batch.future is None:  # async produce: nobody waits for the reports, nor does the span
            span.set_attribute("gateway.produce.async", True)
            _finish(span, otel, batch, n, pre_failed)
        else:
            batch.future.add_done_callback(lambda fut: _finish(span, otel, batch, n, pre_failed, fut.cancelled()))
        return batch


def _fail(span: Span, otel: Any, error_type: str, description: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(otel.ERROR, description)


def _finish(
    span: Span, otel: Any, batch: Batch, total: int, pre_failed: frozenset[int], cancelled: bool = False
) -> None:
    """End the produce span; an error if a record failed at the producer or the broker.

    Records that failed validation before the batch (NDJSON lines, ``pre_failed``) are the client's
    error and the request span's story, not a failed send.
    """
    refused = [i for i in batch.refused if i not in pre_failed] if batch.refused else []
    failed = batch.failed + len(refused)
    if failed > 0 and not cancelled:
        # librdkafka's error name, as the delivery-error metric counts them; else the refusal's class.
        names = batch.error_names
        kind = next(iter(names)) if names else type(batch.results[refused[-1]]).__name__
        span.set_attribute("gateway.produce.failed_records", failed)
        _fail(span, otel, kind, f"{failed} of {total} records not delivered")
    span.end()
