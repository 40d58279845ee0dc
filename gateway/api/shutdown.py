"""Noticing that shutdown began, so the gateway turns unready and its streams say goodbye at once.

uvicorn's SIGTERM handler only sets a flag; the lifespan's shutdown runs after every connection has
closed, which for endless streams is too late. sse-starlette patches that handler to also set
``AppStatus.should_exit`` (the supported way to learn about it), so a small task watches that flag,
marks the runtime draining (``/readyz`` 503, new streams 503) and tells every stream to end with a
final ``retry:``. No signal handler of our own: uvicorn's stays in charge.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sse_starlette.sse import AppStatus

if TYPE_CHECKING:
    from gateway.lifespan import Runtime

# How often the flag is checked: well below a readiness probe's period and a client's retry delay.
WATCH_INTERVAL_S = 0.05


def shutdown_requested() -> bool:
    return bool(AppStatus.should_exit)


async def watch_shutdown(rt: Runtime) -> None:
    """Run until the server is asked to exit, then drain; cancelled with the lifespan otherwise."""
    # A plain flag set from a signal handler: there is no event to wait on, so poll it.
    while not shutdown_requested():  # noqa: ASYNC110
        await asyncio.sleep(WATCH_INTERVAL_S)
    rt.draining = True
    rt.hub.drain()
