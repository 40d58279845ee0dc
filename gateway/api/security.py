"""Authentication, authorization, quotas and CORS, applied to every request in one place (API.md §6).

``SecurityMiddleware`` is a pure ASGI middleware, so it sees every route however it was added
(routers, mounts, FastAPI's own ``/docs``). It finds the route a request will reach the way
Starlette's router does, classifies it with ``gateway.auth.classify`` (cached per route), and then:

1. an unclassified route is refused (403) for everyone — new routes are closed until classified;
2. an open route passes; any other needs a credential (401 without a valid one);
3. the principal must hold the scope the route class needs for the topic in the path (403); for
   Confluent consumer-instance routes, for every topic the JSON body names;
4. the principal goes on ``request.state.principal`` (``gateway.auth.principal_of``) and, when it has
   a rate quota, on ``gateway.quotas.current_meter`` for ``MeteredPublisher``; a stream route
   counts against the principal's concurrent-stream quota for as long as its response lasts.

``access_token`` (SSE only) is removed from the query string before anything downstream sees it.
CORS is Starlette's ``CORSMiddleware`` outside this one, so preflight requests need no credential.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec
from fastapi import Request, Response
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.convertors import Convertor
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, compile_path

from gateway import auth, errors
from gateway.api.errors import error_response
from gateway.metrics import Metrics
from gateway.quotas import Limits, Meter, QuotaBook, current_meter
from gateway.settings import Settings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ACCESS_TOKEN = "access_token"
# (method, path) -> matched route and its path parameters; bounded, cleared when full.
MATCH_CACHE_SIZE = 4096
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="kafka-http-gateway"'}
CORS_ALLOW_HEADERS = (
    "Authorization", "Content-Type", "Accept", "Last-Event-ID", "Idempotency-Key", "Prefer", "X-Request-ID",
)  # fmt: skip
CORS_EXPOSE_HEADERS = ("Retry-After", "X-Request-ID", "Idempotency-Replayed", "WWW-Authenticate")
CORS_MAX_AGE_S = 600
# Set on the scope once this middleware has let a request through to a route it knows (see ``vetted``).
VETTED = "gateway.security.vetted"
_NO_PLAN = object()


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the routes matching one (method, path) require, worked out once and cached."""

    matches: tuple[tuple[auth.Rule, dict[str, Any]], ...]
    unclassified: bool
    open: bool
    stream: bool
    # The consumer-instance rule and its path parameters, if the request reaches one.
    consumer: tuple[auth.Rule, dict[str, Any]] | None

    @classmethod
    def of(cls, found: list[tuple[auth.Rule | None, dict[str, Any]]]) -> _Plan:
        known = tuple((rule, params) for rule, params in found if rule is not None)
        consumer = next(((r, p) for r, p in known if r.access is auth.Access.CONSUMER), None)
        return cls(
            matches=known,
            unclassified=len(known) < len(found),
            open=all(rule.access is auth.Access.OPEN for rule, _ in known),
            stream=any(rule.stream for rule, _ in known),
            consumer=consumer,
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.authenticator = auth.Authenticator(settings.auth)
        self.quotas = QuotaBook(settings.quotas, metrics)
        self._entries: list[_Entry] | None = None
        self._matches: dict[tuple[str, str], _Plan | None] = {}
        self._warned: set[str] = set()
        # Confluent consumer instances live at most instance_timeout_s unused and max_instances at once, so
        # every live instance is among the last few max_instances records: four times that never forgets one.
        self.owners = ConsumerOwners(4 * settings.confluent.max_instances)

    # -- routing ----------------------------------------------------------------------------

    def _table(self, app: Any) -> list[_Entry]:
        if self._entries is None:
            self._entries = route_table(app)
        return self._entries

    def _match(self, scope: Scope) -> _Plan | None:
        """What every route the request fully matches (method included) requires; None: no route.

        Usually one route. Should two templates ever match, each one's rule must allow the request,
        so the route the router really picks is always covered.
        """
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        key = (method, scope["path"])
        plan = self._matches.get(key, _NO_PLAN)
        if plan is not _NO_PLAN:
            return plan  # type: ignore[return-value]
        found: list[tuple[auth.Rule | None, dict[str, Any]]] = []
        for entry in self._table(scope["app"]):
            m = entry.regex.match(scope["path"])
            if m is None or (entry.rules is not None and method not in entry.rules):
                continue
            params = {k: entry.convertors[k].convert(v) for k, v in m.groupdict().items()}
            rule = entry.rules[method] if entry.rules is not None else auth.classify(method, entry.path, entry.tags)
            found.append((rule, params))
        plan = _Plan.of(found) if found else None
        if len(self._matches) >= MATCH_CACHE_SIZE:
            self._matches.clear()
        self._matches[key] = plan
        return plan

    # -- the request ------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token_q = _take_access_token(scope) if b"access_token" in scope.get("query_string", b"") else None
        plan = self._match(scope)
        if plan is None:
            await self.app(scope, receive, send)  # the router answers 404 / 405; ``vetted`` guards the rest
            return
        try:
            if plan.unclassified:
                self._deny_unclassified(scope)
            if plan.open:
                scope[VETTED] = True
                await self.app(scope, receive, send)
                return
            token = auth.bearer(_header(scope, b"authorization"))
            if token is None and plan.stream:
                token = token_q
            principal = self._authenticate(token)
            scope.setdefault("state", {})["principal"] = principal
            # Auth mode none: the anonymous principal may do everything, so there is nothing to check.
            if principal is not auth.ANONYMOUS:
                topics: tuple[list[str], bool] = ([], False)
                if plan.consumer is not None:
                    receive, topics = await self._body_topics(receive)
                    send = self.owners.guard(scope, send, *plan.consumer, principal)
                for rule, params in plan.matches:
                    self._authorize(rule, principal, params, *topics)
            limits = self.quotas.limits_for(principal.limits)
        except errors.GatewayError as exc:
            await self._refuse(exc, scope, receive, send)
            return
        scope[VETTED] = True
        if limits.unlimited:
            await self.app(scope, receive, send)
            return
        await self._metered(scope, receive, send, plan.stream, principal, limits)

    async def _metered(
        self, scope: Scope, receive: Receive, send: Send, stream: bool, principal: auth.Principal, limits: Limits
    ) -> None:
        book = self.quotas
        streaming = stream and limits.max_streams is not None
        if streaming:
            try:
                book.open_stream(principal.name, limits)
            except errors.GatewayError as exc:
                await self._refuse(exc, scope, receive, send)
                return
        reset = current_meter.set(Meter(book, principal.name, limits))
        try:
            await self.app(scope, receive, send)
        finally:
            current_meter.reset(reset)
            if streaming:
                book.close_stream(principal.name, limits)

    def _authenticate(self, token: str | None) -> auth.Principal:
        try:
            return self.authenticator.authenticate(token)
        except errors.Unauthenticated:
            self.metrics.auth_failures.labels("missing" if token is None else "invalid").inc()
            raise

    def _authorize(self, rule: auth.Rule, principal: auth.Principal, params: dict[str, Any], *args: Any) -> None:
        try:
            auth.authorize(rule, principal, params, *args)
        except errors.Forbidden:
            self.metrics.auth_failures.labels("forbidden").inc()
            raise

    def _deny_unclassified(self, scope: Scope) -> None:
        key = f"{scope['method']} {scope['path']}"
        if len(self._warned) < MATCH_CACHE_SIZE and key not in self._warned:
            self._warned.add(key)
            log.error("%s reaches a route not classified in gateway.auth.RULES; refused", key)
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
                topics = auth.named_topics(msgspec.json.decode(body))
            except msgspec.DecodeError:
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


class ConsumerOwners:
    """Each Confluent consumer instance belongs to the principal that created it (on this process).

    Recorded from the creation's answer (``instance_id``), checked before every request to the
    instance, forgotten when it is deleted or answers 404 (expired). Kept here, beside the other
    checks, so the consumer code needs no knowledge of principals.
    """

    def __init__(self, bound: int) -> None:
        self._bound = bound
        self._owners: OrderedDict[tuple[str, str], str] = OrderedDict()

    def guard(
        self, scope: Scope, send: Send, rule: auth.Rule, params: dict[str, Any], principal: auth.Principal
    ) -> Send:
        values = [str(v) for v in params.values()]
        if not rule.owned:
            if scope["method"] != "POST" or len(values) != 1:
                return send
            return self._on_create(values[0], principal.name, send)
        key = (values[0], values[1])
        owner = self._owners.get(key)
        if owner is not None:
            self._owners.move_to_end(key)
            if owner != principal.name:
                raise errors.Forbidden("This consumer instance belongs to another principal.")
        deleting = scope["method"] == "DELETE" and len(values) == 2

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 404 or (deleting and status == 204):
                    self._owners.pop(key, None)
            await send(message)

        return watch

    def _on_create(self, group: str, who: str, send: Send) -> Send:
        status = 0
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 200:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._record(group, b"".join(chunks), who)
            await send(message)

        return capture

    def _record(self, group: str, body: bytes, who: str) -> None:
        try:
            instance = msgspec.json.decode(body).get("instance_id")
        except (msgspec.DecodeError, AttributeError):
            return
        if isinstance(instance, str):
            self._owners[(group, instance)] = who
            self._owners.move_to_end((group, instance))
            while len(self._owners) > self._bound:
                self._owners.popitem(last=False)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


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


@dataclass(frozen=True, slots=True)
class _Entry:
    regex: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]
    # Rule per method; ``None`` for mounts, which take every method (classified per request).
    rules: dict[str, auth.Rule | None] | None
    path: str = ""
    tags: tuple[str, ...] = ()


def route_table(app: Any) -> list[_Entry]:
    """Every route the app serves, as the router sees it (include prefixes applied), with its rules."""
    table = []
    for ctx in iter_route_contexts(app.routes):
        path = ctx.path or ""
        tags = getattr(ctx, "tags", None) or ()
        if isinstance(ctx.original_route, Mount):
            regex, _, convertors = compile_path(path.rstrip("/") + "/{path:path}")
            table.append(_Entry(regex, convertors, None, path, tuple(tags)))
            continue
        regex, _, convertors = compile_path(path)
        methods = {"GET" if m == "HEAD" else m for m in (ctx.methods or ())}
        table.append(_Entry(regex, convertors, {m: auth.classify(m, path, tags) for m in methods}))
    return table


class RawRoute(APIRoute):
    """A route whose endpoint is ``async def f(request: Request) -> Response``, called directly.

    FastAPI's own handler solves dependencies and serialises per request even for such an endpoint;
    on the produce route that cost as much CPU as the produce itself (bench/RESULTS.md). This handler
    skips it, so it runs the ``vetted`` backstop itself. The route is still an ``APIRoute``: OpenAPI,
    the security table and the route template in metrics see it as before.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            if not request.scope.get(VETTED):
                raise errors.Forbidden("This route is not open to any principal.")
            response: Response = await endpoint(request)
            return response

        return handler


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
    app.add_middleware(SecurityMiddleware, settings=settings, metrics=metrics)
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


# -- OpenAPI -------------------------------------------------------------------------------------

_ERR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_DOC_RESPONSES = {
    "401": ("Missing or invalid credentials (auth on); see WWW-Authenticate", 40101, "Missing credentials."),
    "403": ("The principal lacks the scope this route needs for this topic", 40301, "Principal 'web' may not ..."),
}


def document(schema: dict[str, Any], routes: list[Any]) -> None:
    """Add the bearer scheme, each operation's scope requirement, and its 401/403/429 answers."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key or a JWT, per the gateway's auth mode. SSE also takes `access_token`.",
    }
    for route in iter_route_contexts(routes):
        path_ops = schema.get("paths", {}).get(route.path_format)
        if not path_ops:
            continue
        for method in route.methods or ():
            op = path_ops.get(method.lower())
            if op is None:
                continue
            rule = auth.classify(method, route.path or "", getattr(route, "tags", None) or ())
            if rule is None or rule.access is auth.Access.OPEN:
                continue
            op["security"] = [{"bearer": []}]
            needs = {
                auth.Access.AUTHENTICATED: "any authenticated principal",
                auth.Access.READ: f"scope `read:<glob>` matching `{{{rule.topic_param}}}`",
                auth.Access.WRITE: f"scope `write:<glob>` matching `{{{rule.topic_param}}}`",
                auth.Access.ADMIN: "scope `admin`",
                auth.Access.CONSUMER: "the instance's creator; `read` on every topic the body names",
            }[rule.access]
            op["description"] = (op.get("description") or "").rstrip() + f"\n\nAuthorization: {needs}."
            responses = op.setdefault("responses", {})
            for status, (text, code, message) in _DOC_RESPONSES.items():
                responses.setdefault(
                    status,
                    {"description": text, "content": {"application/json": {**_ERR_REF["application/json"],
                     "example": {"error_code": code, "message": message}}}},
                )  # fmt: skip
            if rule.stream or rule.access is auth.Access.WRITE:
                responses.setdefault("429", {"description": "Quota exceeded; see Retry-After", "content": _ERR_REF})
            if rule.stream and not any(p.get("name") == ACCESS_TOKEN for p in op.get("parameters", [])):
                op.setdefault("parameters", []).append(
                    {
                        "name": ACCESS_TOKEN,
                        "in": "query",
                        "required": False,
                        "description": "The credential, for EventSource clients that cannot set Authorization",
                        "schema": {"type": "string"},
                    }
                )
