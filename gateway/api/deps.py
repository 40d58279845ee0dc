"""Typed access to the lifespan's resources from routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.lifespan import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
