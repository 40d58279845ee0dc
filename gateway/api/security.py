"""Authentication, authorization, quotas and CORS, applied to every request in one place (API.md §6).

``SecurityMiddleware`` is a pure ASGI middleware, so it sees every route however it was added
(routers, mounts, FastAPI's own ``/docs``). It finds the route a request will reach the way
Starlette's router does (``gateway.api.route_table``), classifies it with ``gateway.auth.policy.classify``
(cached per route), and then:

1. an unclassified route is refused (403) for everyone — new routes are closed until classified;
2. an open route passes; any other needs a credential (401 without a valid one);
3. the principal must hold the scope the route class needs for the topic in the path (403); for
   Confluent consumer-instance routes, for every topic the JSON body names (and only the instance's
   creator may use it: ``gateway.api.owners``); a consumer group it would join (the instance's, an SSE
   stream's ``group=``) must match its ``group:`` scopes, if it has any;
4. the principal goes on ``request.state.principal`` (``gateway.auth.principals.principal_of``) and,
   when it has a rate quota, on ``gateway.quotas.current_meter`` for ``MeteredPublisher``; a stream route
   counts against the principal's concurrent-stream quota for as long as its response lasts;
5. a request for a route that answers by itself (``RawRoute``: the produce route) goes straight to it,
   since its route is matched here already; every other request goes on through FastAPI's router.

``access_token`` (SSE only) is removed from the query string before anything downstream sees it.
CORS is Starlette's ``CORSMiddleware`` outside this one, so preflight requests need no credential.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec
from fastapi import Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import errors
from gateway.api.errors import error_response
from gateway.api.owners import ConsumerOwners
from gateway.api.raw_route import VETTED
from gateway.api.route_table import MATCH_CACHE_SIZE, Plan, RouteMatcher
from gateway.auth import Authenticator, bearer
from gateway.auth.policy import Rule, authorize, named_topics
from gateway.auth.principals import ANONYMOUS, Principal
from gateway.metrics import Metrics
from gateway.quotas import Limits, Meter, QuotaBook, current_meter
from gateway.settings import Settings

log = logging.getLogger(__name__)

ACCESS_TOKEN = "access_token"
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="kafka-http-gateway"'}
CORS_ALLOW_HEADERS = (
    "Authorization", "Content-Type", "Accept", "Last-Event-ID", "Idempotency-Key", "Prefer", "X-Request-ID",
)  # fmt: skip
CORS_EXPOSE_HEADERS = ("Retry-After", "X-Request-ID", "Idempotency-Replayed", "WWW-Authenticate")
CORS_MAX_AGE_S = 600


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics, authenticator: Authenticator) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.authenticator = authenticator
        self.quotas = QuotaBook(settings.quotas, metrics)
        self.routes = RouteMatcher()
        self._warned: set[str] = set()
        # Confluent consumer instances live at most instance_timeout_s unused and max_instances at once, so
        # every live instance is among the last few max_instances records: four times that never forgets one.
        self.owners = ConsumerOwners(4 * settings.confluent.max_instances)

    # -- the request ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token_q = _take_access_token(scope) if b"access_token" in scope.get("query_string", b"") else None
        plan = self.routes.match(scope)
        if plan is None:
            await self.app(scope, receive, send)  # the router answers 404 / 405; ``vetted`` guards the rest
            return
        try:
            if plan.unclassified:
                self._deny_unclassified(scope)
            if plan.open:
                scope[VETTED] = True
                await self._forward(plan, scope, receive, send)
                return
            token = bearer(_header(scope, b"authorization"))
            if token is None and plan.stream:
                token = token_q
            principal = self._authenticate(token)
            scope.setdefault("state", {})["principal"] = principal
            # Auth mode none: the anonymous principal may do everything, so there is nothing to check.
            if principal is not ANONYMOUS:
                topics: tuple[list[str], bool] = ([], False)
                group = None
                if plan.consumer is not None:
                    receive, topics = await self._body_topics(receive)
                    send = self.owners.guard(scope, send, *plan.consumer, principal)
                    group = plan.consumer[1].get("group")
                elif plan.stream:
                    group = _query_value(scope, "group")
                for rule, params in plan.matches:
                    self._authorize(rule, principal, params, *topics, group)
            limits = self.quotas.limits_for(principal.limits)
        except errors.GatewayError as exc:
            await self._refuse(exc, scope, receive, send)
            return
        scope[VETTED] = True
        if limits.unlimited:
            await self._forward(plan, scope, receive, send)
            return
        await self._metered(plan, scope, receive, send, principal, limits)

    async def _forward(self, plan: Plan, scope: Scope, receive: Receive, send: Send) -> None:
        # A route that can answer by itself skips FastAPI's router (gateway/api/raw_route.py).
        if plan.direct is not None:
            route, params = plan.direct
            await route.serve(scope, receive, send, dict(params))
        else:
            await self.app(scope, receive, send)

    async def _metered(
        self, plan: Plan, scope: Scope, receive: Receive, send: Send, principal: Principal, limits: Limits
    ) -> None:
        book = self.quotas
        streaming = plan.stream and limits.max_streams is not None
        if streaming:
            try:
                book.open_stream(principal.name, limits)
            except errors.GatewayError as exc:
                await self._refuse(exc, scope, receive, send)
                return
        reset = current_meter.set(Meter(book, principal.name, limits))
        try:
            await self._forward(plan, scope, receive, send)
        finally:
            current_meter.reset(reset)
            if streaming:
                book.close_stream(principal.name, limits)

    def _authenticate(self, token: str | None) -> Principal:
        try:
            return self.authenticator.authenticate(token)
        except errors.Unauthenticated:
            self.metrics.auth_failures.labels("missing" if token is None else "invalid").inc()
            raise

    def _authorize(self, rule: Rule, principal: Principal, params: dict[str, Any], *args: Any) -> None:
        try:
            authorize(rule, principal, params, *args)
        except errors.Forbidden:
            self.metrics.auth_failures.labels("forbidden").inc()
            raise

    def _deny_unclassified(self, scope: Scope) -> None:
        key = f"{scope['method']} {scope['path']}"
        if len(self._warned) < MATCH_CACHE_SIZE and key not in self._warned:
            self._warned.add(key)
            log.error("%s reaches a route not classified in gateway.auth.policy.RULES; refused", key)
        self.metrics.auth_failures.labels("unclassified").inc()
        raise errors.Forbidden("This route is not open to any principal.")

    async def _body_topics(self, receive: Receive) -> tuple[Receive, tuple[list[str], bool]]:
        """Read the (small) JSON body and the topics it names; hand the body on unchanged."""
        limit = self.settings.auth.max_inspected_body_bytes
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise errors.PayloadTooLarge(f"Body is over the limit of {limit} bytes.")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        topics: tuple[list[str], bool] = ([], False)
        if body.strip():
            try:
                topics = named_topics(msgspec.json.decode(body))
            except (msgspec.DecodeError, UnicodeDecodeError):
                raise errors.BadRequest("Malformed JSON body.") from None
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, topics

    async def _refuse(self, exc: errors.GatewayError, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(exc)
        if isinstance(exc, errors.Unauthenticated):
            response.headers.update(WWW_AUTHENTICATE)
        await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _query_value(scope: Scope, name: str) -> str | None:
    """The last value of one query parameter (as the route's own parsing would take it), or ``None``."""
    query = scope.get("query_string", b"")
    if name.encode() not in query:
        return None
    values = [value for key, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if key == name]
    return values[-1] if values and values[-1] else None


def _take_access_token(scope: Scope) -> str | None:
    """Remove ``access_token`` from the query string (so no log or handler sees it); return its value."""
    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    token = None
    kept = []
    for key, value in pairs:
        if key == ACCESS_TOKEN:
            token = value
        else:
            kept.append((key, value))
    scope["query_string"] = urlencode(kept).encode("latin-1")
    return token or None


async def vetted(request: Request) -> None:
    """App-level dependency, the backstop: a handler runs only for requests the middleware passed.

    Should FastAPI ever route a request to a route the middleware's table does not know, the
    request is refused here instead of reaching the handler unchecked.
    """
    if not request.scope.get(VETTED):
        raise errors.Forbidden("This route is not open to any principal.")


def install(app: Any, settings: Settings, metrics: Metrics) -> None:
    """Add security, then CORS outside it (preflights need no credential; refusals carry CORS headers)."""
    if settings.auth.mode == "none" and not _is_loopback(settings.host):
        log.warning(
            "SECURITY: GATEWAY_AUTH__MODE=none while listening on %s: anyone who can reach this port may "
            "read, write and delete every topic. Set GATEWAY_AUTH__MODE=api-key or jwt.",
            settings.host,
        )
    # Built here, not lazily with the middleware stack, so /readyz can ask it too (app.state).
    app.state.authenticator = authenticator = Authenticator(settings.auth)
    app.add_middleware(SecurityMiddleware, settings=settings, metrics=metrics, authenticator=authenticator)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "PUT", "PATCH"],
            allow_headers=list(CORS_ALLOW_HEADERS),
            expose_headers=list(CORS_EXPOSE_HEADERS),
            # Credentials are bearer tokens, never cookies: no Access-Control-Allow-Credentials.
            allow_credentials=False,
            max_age=CORS_MAX_AGE_S,
        )
