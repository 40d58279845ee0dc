"""Fixtures for the deployment checks: every kustomize target under k8s/, rendered once per session.

kustomize is the pinned build that ``k8s/validate.sh --ensure-kustomize`` installs (``go install``,
cached under ``${XDG_CACHE_HOME:-~/.cache}/kafka-http-gateway/bin``), or ``$KUSTOMIZE``. Without it
the manifest tests skip on a developer's machine and fail under CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.manifests import Doc, ci, find_kustomize, render, targets


@pytest.fixture(scope="session")
def kustomize() -> str:
    path, why = find_kustomize()
    if path is None:
        if ci():
            pytest.fail(f"kustomize is required under CI: {why}")
        pytest.skip(f"kustomize unavailable: {why}")
    return path


@pytest.fixture(scope="session")
def rendered(kustomize: str) -> dict[str, list[Doc]]:
    """``{"base": [...], "dev": [...], "prod": [...]}``: the objects each target renders to."""
    return {name: render(kustomize, path) for name, path in targets().items()}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
