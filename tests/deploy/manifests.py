"""Render the kustomize targets under k8s/ and sort what comes out.

Used by the deploy tests (through the session fixture in conftest.py) and by k8s/validate.sh:

    python -m tests.deploy.manifests split OUT_DIR
    python -m tests.deploy.manifests k8s-versions

``split`` reads every ``OUT_DIR/<target>.yaml`` that validate.sh rendered and writes
``<target>.core.yaml`` beside it with only the built-in Kubernetes objects, the ones
kubernetes-validate has schemas for. Custom resources (Strimzi, Prometheus Operator) are left to the
structural checks in test_manifests.py. ``k8s-versions`` prints the Kubernetes versions to validate
against. Needs only PyYAML.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
VALIDATE_SH = K8S / "validate.sh"

# Oldest and newest Kubernetes minor the manifests must be valid for (kubernetes-validate 1.37.0 ships
# schemas for 1.25-1.37). K8S_VERSIONS="1.29 1.33" overrides.
DEFAULT_K8S_VERSIONS = ("1.30", "1.37")

# API groups whose objects have no schema in kubernetes-validate (CRDs); checked structurally instead.
CUSTOM_GROUPS = frozenset({"kafka.strimzi.io", "monitoring.coreos.com"})

Doc = dict[str, Any]


def k8s_versions() -> list[str]:
    return os.environ.get("K8S_VERSIONS", "").split() or list(DEFAULT_K8S_VERSIONS)


def targets() -> dict[str, Path]:
    """Every kustomization to render: the base and each overlay, by name."""
    found = {"base": K8S / "base"}
    for kustomization in sorted((K8S / "overlays").glob("*/kustomization.yaml")):
        found[kustomization.parent.name] = kustomization.parent
    return found


def api_group(doc: Doc) -> str:
    """``apps/v1`` -> ``apps``; the core group (``v1``) is ``""``."""
    return str(doc.get("apiVersion", "")).rpartition("/")[0]


def is_custom(doc: Doc) -> bool:
    return api_group(doc) in CUSTOM_GROUPS


def load_docs(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def ci() -> bool:
    """True under CI (CI=true, as .ci/run is started): a missing tool is then a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_kustomize() -> tuple[str | None, str]:
    """The pinned kustomize binary, installed on first use by ``k8s/validate.sh --ensure-kustomize``.

    Returns ``(path, "")`` or ``(None, why)``. ``KUSTOMIZE=/path`` skips the lookup.
    """
    given = os.environ.get("KUSTOMIZE")
    if given:
        return (given, "") if os.access(given, os.X_OK) else (None, f"KUSTOMIZE={given} is not executable")
    try:
        proc = subprocess.run(
            ["bash", str(VALIDATE_SH), "--ensure-kustomize"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"k8s/validate.sh --ensure-kustomize failed: {exc}"
    path = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not path:
        return None, f"k8s/validate.sh --ensure-kustomize exited {proc.returncode}: {proc.stderr.strip()[-800:]}"
    return path, ""


def render(kustomize: str, target: Path) -> list[Doc]:
    proc = subprocess.run([kustomize, "build", str(target)], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"kustomize build {target} failed:\n{proc.stderr}")
    return load_docs(proc.stdout)


def split(out_dir: Path) -> list[Path]:
    """Write ``<target>.core.yaml`` (built-in kinds only) beside each rendered ``<target>.yaml``."""
    written = []
    for rendered in sorted(out_dir.glob("*.yaml")):
        if rendered.name.endswith(".core.yaml"):
            continue
        docs = load_docs(rendered.read_text())
        core = [d for d in docs if not is_custom(d)]
        custom = [d for d in docs if is_custom(d)]
        dest = rendered.with_name(rendered.stem + ".core.yaml")
        dest.write_text(yaml.safe_dump_all(core, sort_keys=False))
        written.append(dest)
        print(
            f"{rendered.stem}: {len(core)} built-in objects -> {dest.name}; "
            f"{len(custom)} custom resources ({_kinds(custom)}) for the structural checks"
        )
    return written


def _kinds(docs: Iterable[Doc]) -> str:
    return ", ".join(sorted({str(d.get("kind")) for d in docs})) or "none"


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "split":
        return 0 if split(Path(argv[1])) else 1
    if argv == ["k8s-versions"]:
        print(" ".join(k8s_versions()))
        return 0
    print("usage: python -m tests.deploy.manifests split OUT_DIR | k8s-versions", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
