"""Which routes a request will reach, and what their rules require (API.md §6).

The security middleware finds the routes the way Starlette's router does (include prefixes applied,
mounts taking every method), each classified once with ``gateway.auth.policy.classify``; what one
(method, path) requires is worked out once and cached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.convertors import Convertor
from starlette.routing import Mount, compile_path
from starlette.types import Scope

from gateway.api.raw_route import RawRoute
from gateway.auth.policy import Access, Rule, classify

# (method, path) -> matched route and its path parameters; bounded, cleared when full.
MATCH_CACHE_SIZE = 4096
_NO_PLAN = object()


@dataclass(frozen=True, slots=True)
class Plan:
    """What the routes matching one (method, path) require, worked out once and cached."""

    matches: tuple[tuple[Rule, dict[str, Any]], ...]
    unclassified: bool
    open: bool
    stream: bool
    # The consumer-instance rule and its path parameters, if the request reaches one.
    consumer: tuple[Rule, dict[str, Any]] | None
    # The route and its path parameters when the one route the request reaches can answer it
    # without FastAPI's router (gateway/api/raw_route.py).
    direct: tuple[RawRoute, dict[str, Any]] | None = None

    @classmethod
    def of(cls, found: list[tuple[Rule | None, dict[str, Any], RawRoute | None]]) -> Plan:
        known = tuple((rule, params) for rule, params, _ in found if rule is not None)
        consumer = next(((r, p) for r, p in known if r.access is Access.CONSUMER), None)
        (_, params, route) = found[0]
        return cls(
            matches=known,
            unclassified=len(known) < len(found),
            open=all(rule.access is Access.OPEN for rule, _ in known),
            stream=any(rule.stream for rule, _ in known),
            consumer=consumer,
            direct=(route, params) if route is not None and len(found) == 1 else None,
        )


@dataclass(frozen=True, slots=True)
class RouteEntry:
    regex: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]
    # Rule per method; ``None`` for mounts, which take every method (classified per request).
    rules: dict[str, Rule | None] | None
    path: str = ""
    tags: tuple[str, ...] = ()
    # Set for a route that answers by itself (``RawRoute.serve``).
    direct: RawRoute | None = None


def route_table(app: Any) -> list[RouteEntry]:
    """Every route the app serves, as the router sees it (include prefixes applied), with its rules."""
    table = []
    for ctx in iter_route_contexts(app.routes):
        path = ctx.path or ""
        tags = getattr(ctx, "tags", None) or ()
        if isinstance(ctx.original_route, Mount):
            regex, _, convertors = compile_path(path.rstrip("/") + "/{path:path}")
            table.append(RouteEntry(regex, convertors, None, path, tuple(tags)))
            continue
        regex, _, convertors = compile_path(path)
        methods = {"GET" if m == "HEAD" else m for m in (ctx.methods or ())}
        route = ctx.original_route
        direct = route if isinstance(route, RawRoute) else None
        table.append(RouteEntry(regex, convertors, {m: classify(m, path, tags) for m in methods}, direct=direct))
    return table


class RouteMatcher:
    """The plan of every (method, path) requested so far, from the app's route table (built on first use)."""

    def __init__(self) -> None:
        self._entries: list[RouteEntry] | None = None
        self._matches: dict[tuple[str, str], Plan | None] = {}

    def _table(self, app: Any) -> list[RouteEntry]:
        if self._entries is None:
            self._entries = route_table(app)
        return self._entries

    def match(self, scope: Scope) -> Plan | None:
        """What every route the request fully matches (method included) requires; None: no route.

        Usually one route. Should two templates ever match, each one's rule must allow the request,
        so the route the router really picks is always covered.
        """
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        key = (method, scope["path"])
        plan = self._matches.get(key, _NO_PLAN)
        if plan is not _NO_PLAN:
            return plan  # type: ignore[return-value]
        found: list[tuple[Rule | None, dict[str, Any], RawRoute | None]] = []
        for entry in self._table(scope["app"]):
            m = entry.regex.match(scope["path"])
            if m is None or (entry.rules is not None and method not in entry.rules):
                continue
            params = {k: entry.convertors[k].convert(v) for k, v in m.groupdict().items()}
            rule = entry.rules[method] if entry.rules is not None else classify(method, entry.path, entry.tags)
            found.append((rule, params, entry.direct))
        plan = Plan.of(found) if found else None
        if len(self._matches) >= MATCH_CACHE_SIZE:
            self._matches.clear()
        self._matches[key] = plan
        return plan
