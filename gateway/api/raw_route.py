"""Routes the gateway answers without FastAPI's per-request machinery: the produce route.

FastAPI's own handler solves dependencies and serialises per request even for an endpoint of the
form ``async def f(request: Request) -> Response``; on the produce route that cost as much CPU as
the produce itself. Its router and exception middleware cost about as much again: the app-wide
route match (again, after the security middleware already matched the request), four ASGI layers,
two exit stacks and a request object per layer (~200 µs of CPU per request, a third of a
single-record produce; bench/RESULTS.md). So:

- ``RawRoute.get_route_handler`` calls the endpoint directly (when FastAPI's router does route to it).
- ``RawRoute.serve`` answers a request the security middleware has already matched to this route
  and let through (``gateway.api.security``), without the router at all: it sets what Starlette's
  router would put on the scope (route, endpoint, path parameters), calls the endpoint, and turns a
  ``GatewayError`` into its error response as the app's exception handler would. Anything else
  propagates to the app's outermost error middleware, as it would from the router (500, logged).

The route is still an ``APIRoute``: OpenAPI, the security table and the route template in metrics,
logs and traces see it as any other.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from gateway import errors
from gateway.api.errors import error_response

# Set on the scope once the security middleware has let a request through to a route it knows.
VETTED = "gateway.security.vetted"


class RawRoute(APIRoute):
    """A route whose endpoint is ``async def f(request: Request) -> Response``, called directly."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            # The app-level ``vetted`` dependency is skipped with the rest: check it here.
            if not request.scope.get(VETTED):
                raise errors.Forbidden("This route is not open to any principal.")
            response: Response = await endpoint(request)
            return response

        return handler

    async def serve(self, scope: Scope, receive: Receive, send: Send, params: dict[str, Any]) -> None:
        """Answer a request already matched to this route and vetted, bypassing the router."""
        scope["route"] = self
        scope["endpoint"] = self.endpoint
        scope["path_params"] = params
        try:
            response: Response = await self.endpoint(Request(scope, receive, send))
        except errors.GatewayError as exc:
            response = error_response(exc)
        await response(scope, receive, send)
