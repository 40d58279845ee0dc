"""Request metrics, JSON access logs, request ids and librdkafka statistics (API.md §5).

``ObservabilityMiddleware`` is a pure ASGI middleware because it sits on every request, produce
included: no ``BaseHTTPMiddleware`` (a task and a stream per request), no Request object. Per
request it reads one header, wraps ``send`` to learn the status and echo ``X-Request-ID``, and
afterwards bumps two pre-labelled series and writes one log line. Labels use the route *template*
(``/topics/{topic}/records``), never the raw path, so clients cannot create series at will.

The access log never holds credentials: headers are not logged at all, and query parameters that
may carry a secret (``access_token`` and friends) are replaced by ``[redacted]``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote

import msgspec

from gateway import access_log, errors
from gateway.access_log import ACCESS_LOGGER, direct_handler
from gateway.kafka.admin import ClusterAdmin
from gateway.metrics import Metrics
from gateway.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

REQUEST_ID_HEADER = b"x-request-id"
# Where the tracing middleware (outside this one) leaves the request's trace id for the access log.
TRACE_ID_SCOPE_KEY = "gateway.trace_id"
# A client's own request id is echoed only if it is short and plain; anything else is replaced.
_CLIENT_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")
# Query parameters that may carry a credential (API.md §6: access_token for EventSource).
SECRET_PARAMS = frozenset({"access_token", "token", "api_key", "apikey", "password", "secret"})
REDACTED = "[redacted]"
UNMATCHED_ROUTE = "unmatched"
# Groups described per lag round, at most (a cluster may hold thousands of idle groups).
MAX_GROUPS_SCANNED = 1000
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})

_encode = msgspec.json.encode


# A random per-process prefix and a counter: unique across processes and restarts, without the
# getrandom() system call per request that ``os.urandom`` costs (1-7 % of a single produce's CPU).
_ID_PREFIX = os.urandom(4).hex()
_id_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFF:08x}"


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _CLIENT_REQUEST_ID.fullmatch(value):
                return bytes(value).decode("ascii")
            break
    return _new_request_id()


def safe_query(query_string: bytes) -> str:
    """The query string with every credential-like parameter's value redacted."""
    if not query_string:
        return ""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    return "&".join(
        f"{quote(k, safe='')}={REDACTED if k.lower() in SECRET_PARAMS else quote(v, safe='')}" for k, v in pairs
    )


def _principal(scope: Scope) -> str | None:
    # Auth (if on) puts the principal on request.state, i.e. scope["state"]["principal"].
    state = scope.get("state")
    if not state:
        return None
    principal = state.get("principal") if isinstance(state, dict) else getattr(state, "principal", None)
    if principal is None:
        return None
    name = getattr(principal, "name", None)
    return str(name if name is not None else principal)


_second: list[Any] = [-1, ""]  # the last whole second formatted, as strftime costs ~5 us a call


def _timestamp(now: float) -> str:
    whole = int(now)
    if whole != _second[0]:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_second[1]}.{int((now - whole) * 1000):03d}Z"


class ObservabilityMiddleware:
    """Metrics by route template and status, one JSON log line, and ``X-Request-ID`` for every request."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.log = logging.getLogger(ACCESS_LOGGER)
        self.access_log = access_log
        # (method, route, status) -> labelled children: .labels() costs more than the observation.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        rid_header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
                if status < 400:  # at the start, not the end: a group stream may last for hours
                    self._note_group(scope)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._done(scope, request_id, status, time.perf_counter() - start)

    def _done(self, scope: Scope, request_id: str, status: int, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED_ROUTE
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        key = (method, template, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self.metrics.http_requests.labels(method, template, str(status)),
                self.metrics.http_duration.labels(method, template, str(status)),
            )
        series[0].inc()
        series[1].observe(elapsed)
        if self.access_log and self.log.isEnabledFor(logging.INFO):
            params = scope.get("path_params") or {}
            line = {
                "ts": _timestamp(time.time()),
                "level": "info",
                "logger": ACCESS_LOGGER,
                "request_id": request_id,
                "principal": _principal(scope),
                "method": scope["method"],
                "route": template,
                "path": scope["path"],
                "query": safe_query(scope.get("query_string", b"")),
                "topic": params.get("topic"),
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "client": (scope.get("client") or (None,))[0],
            }
            trace_id = scope.get(TRACE_ID_SCOPE_KEY)
            if trace_id is not None:  # only with GATEWAY_TRACING__ENABLED: ties the line to its trace
                line["trace_id"] = trace_id
            text = _encode(line).decode()
            handler = direct_handler(self.log)
            if handler is not None:  # the usual case: the finished line goes to its handler, no LogRecord
                handler.write_line(text)
            else:  # handle(makeRecord(...)) rather than info(): no caller look-up (a stack walk)
                self.log.handle(self.log.makeRecord(ACCESS_LOGGER, logging.INFO, __file__, 0, text, (), None))

    def _note_group(self, scope: Scope) -> None:
        """Remember a consumer group a request consumed for (``{group}`` in the route, ``group=`` in
        the query), so its lag is measured; a cheap byte search first keeps this off most requests."""
        params = scope.get("path_params") or {}
        group = params.get("group") if "group" in params else None
        query = scope.get("query_string", b"")
        if group is None and b"group=" in query:
            group = next((v for k, v in parse_qsl(query.decode("latin-1")) if k == "group" and v), None)
        if group:
            self.metrics.note_consumed_group(str(group))


def install(app: Any, settings: Settings, metrics: Metrics) -> None:
    """Add the middleware to a FastAPI/Starlette app (outermost of the app's own middleware)."""
    access_log.configure(settings.access_log)
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, access_log=settings.access_log)


# -- lag of the groups the gateway consumes for ------------------------------------------------


async def track_group_lag(admin: ClusterAdmin, metrics: Metrics, client_prefix: str, interval_s: float) -> None:
    """Every ``interval_s``, set ``gateway_consumer_group_lag`` for the groups the gateway consumes for.

    Those are the groups named by requests this process served (``Metrics.consumed_groups``, noted
    by the middleware) and every group with a live member whose ``client.id`` starts with the
    gateway's (its consumers carry it), whichever instance that member lives on. Runs until
    cancelled by the lifespan; a failed round is logged and retried at the next interval.
    """
    log = logging.getLogger(__name__)
    if not client_prefix:  # without a client id every group would look like the gateway's
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            listed = await admin.list_groups()
            candidates = [g.group_id for g in listed if g.state not in ("Empty", "Dead")][:MAX_GROUPS_SCANNED]
            groups = set(await admin.groups_with_client(candidates, client_prefix)) | metrics.consumed_groups
        except errors.GatewayError as exc:
            log.warning("could not list consumer groups for their lag: %s", exc.message)
            groups = set(metrics.consumed_groups)
        for group in sorted(groups):
            try:
                detail = await admin.describe_group(group)
            except errors.ConsumerGroupNotFound:
                continue
            except errors.GatewayError as exc:
                log.warning("could not measure the lag of group %r: %s", group, exc.message)
                continue
            metrics.observe_group_lag(group, detail.total_lag)


# -- librdkafka statistics --------------------------------------------------------------------


def stats_callback(metrics: Metrics) -> Callable[[str], None]:
    """A ``stats_cb`` that copies selected librdkafka statistics into gauges.

    librdkafka calls it where the producer is served (the event loop's thread), every
    ``statistics.interval.ms``.
    """
    g = metrics.kafka_stats
    log = logging.getLogger(__name__)

    def on_stats(text: str) -> None:
        try:
            stats = msgspec.json.decode(text)
            g["producer_queue_messages"].set(stats.get("msg_cnt", 0))
            g["producer_queue_bytes"].set(stats.get("msg_size", 0))
            g["producer_tx_messages"].set(stats.get("txmsgs", 0))
            g["producer_tx_bytes"].set(stats.get("txmsg_bytes", 0))
            for b in stats.get("brokers", {}).values():
                if b.get("nodeid", -1) < 0:  # bootstrap placeholders, not brokers
                    continue
                name = str(b.get("nodename") or b.get("name"))
                rtt = b.get("rtt") or {}
                g["broker_up"].labels(name).set(1 if b.get("state") == "UP" else 0)
                g["broker_rtt_avg_seconds"].labels(name).set(rtt.get("avg", 0) / 1e6)
                g["broker_rtt_p99_seconds"].labels(name).set(rtt.get("p99", 0) / 1e6)
                g["broker_outbuf_requests"].labels(name).set(b.get("outbuf_cnt", 0))
                g["broker_waitresp_requests"].labels(name).set(b.get("waitresp_cnt", 0))
                g["broker_tx_errors"].labels(name).set(b.get("txerrs", 0))
                g["broker_req_timeouts"].labels(name).set(b.get("req_timeouts", 0))
        except Exception:  # never let a statistics hiccup break serving the producer
            log.warning("could not read librdkafka statistics", exc_info=True)

    return on_stats


def with_stats(conf: dict[str, Any], settings: Settings, metrics: Metrics) -> dict[str, Any]:
    """Producer configuration with statistics on (unless the operator set the interval already)."""
    conf = dict(conf)
    if "statistics.interval.ms" not in conf and settings.kafka_stats_interval_ms > 0:
        conf["statistics.interval.ms"] = str(settings.kafka_stats_interval_ms)
    if int(conf.get("statistics.interval.ms", 0)) > 0:
        conf["stats_cb"] = stats_callback(metrics)
    return conf
