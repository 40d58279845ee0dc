#!/usr/bin/env bash
# Validate the Kubernetes manifests under k8s/ and the container files, without a cluster or a Docker
# engine:
#   1. kustomize (pinned; installed once with `go install` into the user cache) renders k8s/base and
#      every k8s/overlays/* into a temporary directory;
#   2. kubernetes-validate (pinned, from PyPI) checks every built-in object (Deployment, Service,
#      HPA, PDB, NetworkPolicy, ConfigMap, ...) strictly against the Kubernetes JSON schemas of the
#      oldest and newest Kubernetes versions we support; custom resources have no schema there;
#   3. pytest tests/deploy runs the structural checks: Strimzi resources (KRaft, node pool roles and
#      counts, replication, rack awareness, storage, user/topic), the gateway Deployment (probes,
#      security, shutdown timing, replicas, wiring to Kafka), the Dockerfile and compose.yaml.
#
# Usage: bash k8s/validate.sh [--keep]      keep the rendered manifests and print where they are
#        bash k8s/validate.sh --ensure-kustomize   only install kustomize; print its path
# Environment: KUSTOMIZE=/path/to/kustomize (skip the install), PYTHON=/path/to/python (default: the
# project's .venv, else python3), K8S_VERSIONS="1.30 1.37" (default in tests/deploy/manifests.py),
# XDG_CACHE_HOME.
set -euo pipefail

# v5.8.3 and newer need Go >= 1.27; v5.8.2 builds with the Go 1.26 these machines have.
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.2}"
KUBERNETES_VALIDATE_REQ="kubernetes-validate==1.37.0"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kafka-http-gateway"
bin_dir="$cache/bin"

log() { printf '%s\n' "$*" >&2; }
die() { log "validate.sh: $*"; exit 1; }

# Prints the path of a kustomize binary: $KUSTOMIZE, the cached pinned build, a fresh `go install`
# of the pinned version, or (with a warning) whatever kustomize is on PATH.
ensure_kustomize() {
  if [[ -n "${KUSTOMIZE:-}" ]]; then
    [[ -x "$KUSTOMIZE" ]] || die "KUSTOMIZE=$KUSTOMIZE is not executable"
    printf '%s\n' "$KUSTOMIZE"
    return
  fi
  local pinned="$bin_dir/kustomize-$KUSTOMIZE_VERSION"
  if [[ -x "$pinned" ]]; then
    printf '%s\n' "$pinned"
    return
  fi
  if command -v go >/dev/null 2>&1; then
    mkdir -p "$bin_dir"
    local tmp
    tmp=$(mktemp -d "$bin_dir/.install.XXXXXX")
    log "installing kustomize $KUSTOMIZE_VERSION with $(go version | cut -d' ' -f3) (once; about 90 s on 2 cores)"
    # From the temporary directory, so no go.mod around can interfere; into it, then renamed, so an
    # interrupted build never leaves a half-written binary under the cached name.
    if ! (cd "$tmp" && GOBIN="$tmp" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2); then
      rm -rf "$tmp"
      die "go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION failed (needs the Go module proxy; newer kustomize needs a newer Go)"
    fi
    mv "$tmp/kustomize" "$pinned"
    rm -rf "$tmp"
    printf '%s\n' "$pinned"
    return
  fi
  if command -v kustomize >/dev/null 2>&1; then
    log "warning: no Go toolchain to build kustomize $KUSTOMIZE_VERSION; using $(command -v kustomize) ($(kustomize version 2>/dev/null || echo '?'))"
    command -v kustomize
    return
  fi
  die "kustomize not found: install Go (to build $KUSTOMIZE_VERSION) or set KUSTOMIZE=/path/to/kustomize"
}

# Prints a Python that has kubernetes-validate (and so PyYAML): the project's if it has the package
# (pyproject's dev extra), else a virtualenv of its own in the cache.
ensure_kubernetes_validate() {
  if "$PY" -c 'import kubernetes_validate' >/dev/null 2>&1; then
    printf '%s\n' "$PY"
    return
  fi
  local venv="$cache/venv-${KUBERNETES_VALIDATE_REQ/==/-}"
  if [[ ! -x "$venv/bin/kubernetes-validate" ]]; then
    log "installing $KUBERNETES_VALIDATE_REQ into $venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE_REQ" >&2 \
      || die "pip install $KUBERNETES_VALIDATE_REQ failed"
  fi
  printf '%s\n' "$venv/bin/python"
}

keep=0
case "${1:-}" in
  --ensure-kustomize) ensure_kustomize; exit 0 ;;
  --keep) keep=1 ;;
  "") ;;
  *) die "unknown argument: $1 (see the header of this script)" ;;
esac

if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x "$repo/.venv/bin/python" ]]; then PY="$repo/.venv/bin/python"
else PY=python3
fi

start=$SECONDS
KUSTOMIZE=$(ensure_kustomize)
export KUSTOMIZE
log "kustomize: $KUSTOMIZE ($("$KUSTOMIZE" version 2>/dev/null || echo '?'))"

out=$(mktemp -d "${TMPDIR:-/tmp}/kafka-gateway-manifests.XXXXXX")
if [[ $keep -eq 0 ]]; then trap 'rm -rf "$out"' EXIT; fi

# 1. Render base and every overlay.
targets=("base:$here/base")
for k in "$here"/overlays/*/kustomization.yaml; do
  [[ -e "$k" ]] || continue
  d=$(dirname "$k")
  targets+=("$(basename "$d"):$d")
done
for t in "${targets[@]}"; do
  name=${t%%:*} dir=${t#*:}
  "$KUSTOMIZE" build "$dir" >"$out/$name.yaml" || die "kustomize build $dir failed"
done

# 2. Built-in objects against the Kubernetes schemas. kubernetes-validate only warns (exit 0) when it
#    has no schema for a kind, so custom resources are split off first and any WARN left is an error:
#    a built-in object with a wrong or removed apiVersion.
KV_PY=$(ensure_kubernetes_validate)
(cd "$repo" && "$KV_PY" -m tests.deploy.manifests split "$out") >&2
K8S_VERSIONS=$(cd "$repo" && "$KV_PY" -m tests.deploy.manifests k8s-versions)
versions=()
for v in $K8S_VERSIONS; do versions+=(-k "$v"); done
log "kubernetes-validate $("$KV_PY" -m kubernetes_validate --version) --strict ${versions[*]}"
status=0
report=$("$KV_PY" -m kubernetes_validate --strict --quiet "${versions[@]}" "$out"/*.core.yaml 2>&1) || status=$?
[[ -n "$report" ]] && log "$report"
if [[ $status -ne 0 ]] || grep -qE '^(WARN|ERROR|FATAL)' <<<"$report"; then
  die "schema validation failed"
fi
log "schemas: every built-in object is valid for Kubernetes $K8S_VERSIONS"

# 3. Structural checks (they render again through their own session fixture, with this KUSTOMIZE).
#    Their own schema test (the same check through kubernetes-validate's API, for runs of plain
#    pytest) is deselected: step 2 just did it.
"$PY" -c 'import pytest, yaml' 2>/dev/null \
  || die "$PY has no pytest/PyYAML: install the project's dev extra (pip install -e '.[dev]') or set PYTHON"
(cd "$repo" && "$PY" -m pytest -q -p no:cacheprovider tests/deploy -k "not kubernetes_schemas") || die "structural checks failed"

[[ $keep -eq 1 ]] && log "rendered manifests kept in $out"
log "k8s/validate.sh: all checks passed in $((SECONDS - start)) s"
