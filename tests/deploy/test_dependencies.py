"""An install from the wheel (the container image, ``pip install kafka-http-gateway``) has every package
the gateway imports: each third-party module imported at module level is a declared runtime dependency.
(The test environment has the dev extras too, so a missing declaration would not show up anywhere else.)
Imports inside functions are left out: that is how optional extras (tracing) are imported."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {_norm(re.split(r"[\[=<>!~; ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_package_the_gateway_imports_is_a_runtime_dependency() -> None:
    declared = _declared()
    distributions = importlib.metadata.packages_distributions()
    missing: dict[str, list[str]] = {}
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        for module in _module_level_imports(path):
            if module in sys.stdlib_module_names or module in ("gateway", "__future__"):
                continue
            owners = {_norm(d) for d in distributions.get(module, [])}
            if not owners & declared:
                missing.setdefault(module, []).append(str(path.relative_to(ROOT)))
    assert not missing, f"imported but not in [project] dependencies: {missing}"
