"""Structural checks of the Dockerfile and .dockerignore (no Docker engine needed).

A small parser reads the instructions and stages; the checks hold what the image promises: built in
a separate stage from pyproject.toml, a slim final base with no compiler, a numeric non-root user,
`kafka-gateway` as entrypoint, listening on 0.0.0.0:8080. `dockerfilelint` (npm) and `hadolint` run
too when they are installed; neither is required.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|build-essential|make|cmake|python3?-dev|libc6?-dev|rustc|cargo)\b")


@dataclass
class Instruction:
    cmd: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, cmd: str) -> list[Instruction]:
        return [i for i in self.instructions if i.cmd == cmd]


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comment lines dropped (as Docker does)."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buf):
            continue
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1])
            continue
        buf.append(stripped)
        cmd, _, args = " ".join(buf).strip().partition(" ")
        out.append(Instruction(cmd.upper(), args.strip(), start))
        buf = []
    assert not buf, "Dockerfile ends inside a continued line"
    return out


def stages(instructions: list[Instruction]) -> list[Stage]:
    result: list[Stage] = []
    for ins in instructions:
        if ins.cmd == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=words[0], name=name))
        else:
            assert result or ins.cmd == "ARG", f"line {ins.line}: {ins.cmd} before the first FROM"
            if result:
                result[-1].instructions.append(ins)
    return result


@pytest.fixture(scope="module")
def build() -> list[Stage]:
    return stages(parse(DOCKERFILE.read_text()))


@pytest.fixture(scope="module")
def final(build: list[Stage]) -> Stage:
    return build[-1]


def test_multi_stage_with_a_separate_builder(build: list[Stage], final: Stage) -> None:
    assert len(build) >= 2
    builder = build[0]
    assert builder.name, "the builder stage is named, so the final stage can COPY --from it"
    copied = " ".join(i.args for i in builder.all("COPY"))
    assert "pyproject.toml" in copied and "gateway" in copied
    assert any("pip" in i.args and "install" in i.args for i in builder.all("RUN"))
    # The final stage starts from a clean base, not from the builder, and takes only its result.
    assert final.base not in {s.name for s in build[:-1]}
    assert any(f"--from={builder.name}" in i.args for i in final.all("COPY"))


def test_final_base_is_python_slim(final: Stage) -> None:
    assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", final.base), final.base


def test_no_compilers_in_the_final_stage(final: Stage) -> None:
    for ins in final.all("RUN"):
        assert not COMPILERS.search(ins.args), f"line {ins.line}: toolchain in the final image: {ins.args}"
        assert "pip install" not in ins.args, f"line {ins.line}: build in the builder, copy the result"


def test_runs_as_a_numeric_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "the final stage sets USER"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) != 0, "a numeric UID lets Kubernetes verify runAsNonRoot"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert int(uid) == 10001, "k8s/base/gateway/deployment.yaml runs as 10001"
    # Nothing after USER may switch back to root.
    last = users[-1].line
    assert not [i for i in final.instructions if i.cmd == "RUN" and i.line > last]


def test_entrypoint_is_the_console_script(final: Stage) -> None:
    [entry] = final.all("ENTRYPOINT")
    assert json.loads(entry.args) == ["kafka-gateway"], "exec form, so SIGTERM reaches the gateway itself"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts.get("kafka-gateway") == "gateway.__main__:main"


def test_listens_on_all_interfaces_port_8080(final: Stage) -> None:
    env = " ".join(i.args for i in final.all("ENV"))
    assert re.search(r"\bGATEWAY_HOST=0\.0\.0\.0\b", env)
    assert any(i.args.split()[0].split("/")[0] == "8080" for i in final.all("EXPOSE"))
    assert [i.args for i in final.all("STOPSIGNAL")] == ["SIGTERM"]
    # The root filesystem is read-only in Kubernetes: no .pyc writes at run time.
    assert "PYTHONDONTWRITEBYTECODE=1" in env


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches a path's parents."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, pat) for c in candidates):
            result = not negate
    return result


def test_dockerignore_sends_only_what_the_build_copies(build: list[Stage]) -> None:
    patterns = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    for ins in build[0].all("COPY"):
        for src in ins.args.split()[:-1]:
            if not src.startswith("--"):
                assert not _ignored(src, patterns), f"COPY {src} but .dockerignore excludes it"
    for private in (".venv/bin/python", ".git/config", "tests/conftest.py", "k8s/base/kustomization.yaml"):
        assert _ignored(private, patterns), f"{private} would be sent to the Docker daemon"


@pytest.mark.parametrize("tool", ["dockerfilelint", "hadolint"])
def test_external_linter_if_installed(tool: str) -> None:
    exe = shutil.which(tool) or shutil.which(tool, path=str(REPO / "node_modules" / ".bin"))
    if exe is None:
        pytest.skip(f"{tool} not installed (optional)")
    proc = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
