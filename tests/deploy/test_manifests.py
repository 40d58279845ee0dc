"""Structural checks of the rendered Kubernetes manifests (k8s/base and every overlay).

Built-in objects are validated strictly against the Kubernetes JSON schemas (kubernetes-validate;
k8s/validate.sh runs the same check through its CLI). Strimzi and Prometheus Operator resources have
no schema there, so what matters about them is asserted here: KRaft with node pools, controller/broker roles and counts,
replication and min ISR, rack awareness, persistent storage, the gateway's user and topic. The
gateway Deployment is checked against the gateway's own settings model and shutdown timing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.lifespan import PRODUCER_CLOSE_TIMEOUT_S
from gateway.settings import Settings
from tests.deploy.manifests import Doc, api_group, ci, is_custom, k8s_versions, load_docs, targets

# Which shape each kustomize target must have. A new overlay has to be added here.
PROFILE = {"base": "ha", "prod": "ha", "dev": "single"}
ALL = list(targets())

STRIMZI_API = "kafka.strimzi.io/v1"
STRIMZI_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
# Custom kinds this file knows how to check; anything else custom would go unvalidated.
KNOWN_CUSTOM = {("kafka.strimzi.io", k) for k in STRIMZI_KINDS} | {("monitoring.coreos.com", "ServiceMonitor")}

GATEWAY = "kafka-gateway"
GATEWAY_PORT = 8080
MIB = 1024 * 1024


# --- helpers -------------------------------------------------------------------------------------


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}{' ' + name if name else ''}, found {len(found)}"
    return found[0]


def kafka(docs: list[Doc]) -> Doc:
    return one(docs, "Kafka")


def pools(docs: list[Doc]) -> list[Doc]:
    return of_kind(docs, "KafkaNodePool")


def deployment(docs: list[Doc]) -> Doc:
    return one(docs, "Deployment", GATEWAY)


def pod_spec(docs: list[Doc]) -> dict[str, Any]:
    return deployment(docs)["spec"]["template"]["spec"]


def container(docs: list[Doc]) -> dict[str, Any]:
    containers = pod_spec(docs)["containers"]
    assert [c["name"] for c in containers] == ["gateway"]
    return containers[0]


def pod_labels(docs: list[Doc]) -> dict[str, str]:
    return deployment(docs)["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are used here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def gateway_env(docs: list[Doc]) -> dict[str, str]:
    """The literal environment the gateway container gets: its ConfigMaps, then its own `env`."""
    c = container(docs)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update({k: str(v) for k, v in one(docs, "ConfigMap", name).get("data", {}).items()})
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = str(var["value"])
    return env


def secret_env(docs: list[Doc]) -> dict[str, dict[str, str]]:
    """Container variables filled from Secrets: name -> {"name": secret, "key": key}."""
    return {
        var["name"]: var["valueFrom"]["secretKeyRef"]
        for var in container(docs).get("env", [])
        if "secretKeyRef" in var.get("valueFrom", {})
    }


def quantity_bytes(q: str) -> int:
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(q))
    assert m, f"unexpected memory quantity {q!r}"
    factor = {
        None: 1,
        "Ki": 1024,
        "Mi": MIB,
        "Gi": 1024 * MIB,
        "Ti": 1024**4,
        "k": 10**3,
        "M": 10**6,
        "G": 10**9,
        "T": 10**12,
    }[m.group(2)]
    return int(m.group(1)) * factor


def quantity_cpu(q: str | int) -> float:
    s = str(q)
    return int(s[:-1]) / 1000 if s.endswith("m") else float(s)


def container_port(docs: list[Doc], port: str | int) -> int:
    if isinstance(port, int):
        return port
    ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    assert port in ports, f"named port {port!r} is not a container port"
    return int(ports[port])


def prestop_seconds(c: dict[str, Any]) -> float:
    pre = c.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    cmd = pre.get("exec", {}).get("command", [])
    assert len(cmd) == 2 and cmd[0] in ("sleep", "/bin/sleep"), f"preStop should be a plain sleep, is {cmd}"
    return float(cmd[1])


# --- every target --------------------------------------------------------------------------------


def test_targets_have_a_profile() -> None:
    assert set(ALL) == set(PROFILE), f"kustomize targets {ALL} vs profiles {sorted(PROFILE)}: classify new ones"


@pytest.mark.parametrize("target", ALL)
def test_objects_are_well_formed_and_unique(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    assert docs, f"{target} renders nothing"
    seen = set()
    for d in docs:
        assert d.get("apiVersion") and d.get("kind") and d.get("metadata", {}).get("name"), d
        key = (api_group(d), d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])
        assert key not in seen, f"duplicate object {key}"
        seen.add(key)


@pytest.mark.parametrize("target", ALL)
def test_builtin_objects_match_kubernetes_schemas(rendered: dict[str, list[Doc]], target: str) -> None:
    """Strict JSON-schema validation of every built-in object (k8s/validate.sh runs the CLI instead)."""
    try:
        from kubernetes_validate import utils as kv
    except ImportError:
        if ci():
            pytest.fail("kubernetes-validate is required under CI (pyproject dev extra)")
        pytest.skip("kubernetes-validate not installed")
    problems = []
    for d in rendered[target]:
        if is_custom(d):
            continue
        for version in k8s_versions():
            try:
                kv.validate(d, version, strict=True)
            except kv.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                problems.append(f"{d['kind']}/{d['metadata']['name']} @ {version}: {where}: {exc.message}")
            except kv.SchemaNotFoundError as exc:
                # A built-in kind without a schema has a wrong or removed apiVersion.
                problems.append(exc.message)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("target", ALL)
def test_custom_resources_are_known_kinds(rendered: dict[str, list[Doc]], target: str) -> None:
    """Custom resources escape the schema check; each kind must be one this file checks."""
    for d in rendered[target]:
        if is_custom(d):
            assert (api_group(d), d["kind"]) in KNOWN_CUSTOM, f"unchecked custom resource {d['apiVersion']} {d['kind']}"


@pytest.mark.parametrize("target", ALL)
def test_namespace(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    namespaces = [d["metadata"]["name"] for d in of_kind(docs, "Namespace")]
    used = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    if target == "base":
        assert namespaces == [] and used == {None}, "the base leaves the namespace to the overlays"
    else:
        assert len(namespaces) == 1 and used == set(namespaces), f"{target}: objects outside {namespaces}"


@pytest.mark.parametrize("target", ALL)
def test_no_secret_values_in_manifests(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    assert of_kind(docs, "Secret") == [], "Secrets are made in the cluster (User Operator), not committed"
    for var in container(docs).get("env", []):
        if re.search(r"PASSWORD|SECRET|TOKEN", var["name"]):
            assert "value" not in var, f"{var['name']} must come from a Secret reference"
    for key in gateway_env(docs):
        assert not re.search(r"PASSWORD|SECRET|TOKEN", key), f"{key} is in a ConfigMap"


# --- Strimzi -------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ALL)
def test_strimzi_resources_use_current_api(rendered: dict[str, list[Doc]], target: str) -> None:
    strimzi = [d for d in rendered[target] if api_group(d) == "kafka.strimzi.io"]
    assert {d["kind"] for d in strimzi} == STRIMZI_KINDS
    for d in strimzi:
        assert d["apiVersion"] == STRIMZI_API, f"{d['kind']} {d['metadata']['name']}: {d['apiVersion']}"
        if d["kind"] != "Kafka":
            assert d["metadata"]["labels"]["strimzi.io/cluster"] == kafka(rendered[target])["metadata"]["name"]


@pytest.mark.parametrize("target", ALL)
def test_kafka_is_kraft_with_node_pools(rendered: dict[str, list[Doc]], target: str) -> None:
    k = kafka(rendered[target])
    annotations = k["metadata"].get("annotations", {})
    assert annotations.get("strimzi.io/kraft") == "enabled"
    assert annotations.get("strimzi.io/node-pools") == "enabled"
    spec = k["spec"]
    assert "zookeeper" not in spec
    # With node pools, replicas and storage belong to the pools, not to the Kafka resource.
    assert "replicas" not in spec["kafka"] and "storage" not in spec["kafka"]
    assert "topicOperator" in spec["entityOperator"] and "userOperator" in spec["entityOperator"]


def role_counts(docs: list[Doc]) -> tuple[int, int]:
    controllers = brokers = 0
    for p in pools(docs):
        roles = set(p["spec"]["roles"])
        assert roles and roles <= {"controller", "broker"}, roles
        assert p["spec"]["replicas"] >= 1
        controllers += p["spec"]["replicas"] if "controller" in roles else 0
        brokers += p["spec"]["replicas"] if "broker" in roles else 0
    return controllers, brokers


@pytest.mark.parametrize("target", ALL)
def test_node_pool_roles_and_counts(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    controllers, brokers = role_counts(docs)
    assert controllers % 2 == 1, "a KRaft quorum needs an odd number of controllers"
    if PROFILE[target] == "ha":
        assert (controllers, brokers) == (3, 3)
        for p in pools(docs):
            assert len(p["spec"]["roles"]) == 1, f"pool {p['metadata']['name']}: dedicated roles in HA"
    else:
        [p] = pools(docs)
        assert set(p["spec"]["roles"]) == {"controller", "broker"} and p["spec"]["replicas"] == 1


@pytest.mark.parametrize("target", ALL)
def test_replication_and_min_isr(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    config = kafka(docs)["spec"]["kafka"]["config"]
    _, brokers = role_counts(docs)
    rf, isr = (3, 2) if PROFILE[target] == "ha" else (1, 1)
    assert config["default.replication.factor"] == rf
    assert config["min.insync.replicas"] == isr
    assert config["offsets.topic.replication.factor"] == rf
    assert config["transaction.state.log.replication.factor"] == rf
    assert config["transaction.state.log.min.isr"] == isr
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert config[key] <= brokers, f"{key}={config[key]} with {brokers} brokers"
    if rf > 1:
        # acks=all writes must survive one broker down (rolling restart, node drain).
        assert config["min.insync.replicas"] < rf


@pytest.mark.parametrize("target", ALL)
def test_rack_awareness(rendered: dict[str, list[Doc]], target: str) -> None:
    rack = kafka(rendered[target])["spec"]["kafka"].get("rack")
    if PROFILE[target] == "ha":
        assert rack == {"topologyKey": "topology.kubernetes.io/zone"}
    else:
        assert rack is None, "a single node has no racks; kind/minikube nodes carry no zone label"


@pytest.mark.parametrize("target", ALL)
def test_storage_is_persistent(rendered: dict[str, list[Doc]], target: str) -> None:
    for p in pools(rendered[target]):
        storage = p["spec"]["storage"]
        volumes = storage["volumes"] if storage["type"] == "jbod" else [storage]
        assert volumes, p["metadata"]["name"]
        for v in volumes:
            assert v["type"] == "persistent-claim" and quantity_bytes(v["size"]) > 0, v
            if PROFILE[target] == "ha":
                assert v.get("deleteClaim") is False, "production volumes outlive their pool"
        assert sum(1 for v in volumes if v.get("kraftMetadata") == "shared") <= 1


@pytest.mark.parametrize("target", ALL)
def test_listeners_authentication_and_authorization(rendered: dict[str, list[Doc]], target: str) -> None:
    spec = kafka(rendered[target])["spec"]["kafka"]
    listeners = {li["port"]: li for li in spec["listeners"]}
    assert len({li["name"] for li in spec["listeners"]}) == len(spec["listeners"]) == len(listeners)
    assert listeners[9092]["tls"] is False and listeners[9093]["tls"] is True
    for li in spec["listeners"]:
        assert li["type"] == "internal"
        assert li["authentication"]["type"] == "scram-sha-512", li["name"]
    assert spec["authorization"]["type"] == "simple"


@pytest.mark.parametrize("target", ALL)
def test_example_topic(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    topic = one(docs, "KafkaTopic", "events")
    _, brokers = role_counts(docs)
    rf, isr = (3, 2) if PROFILE[target] == "ha" else (1, 1)
    assert topic["spec"]["partitions"] == 6
    assert topic["spec"]["replicas"] == rf <= brokers
    assert int(topic["spec"]["config"]["min.insync.replicas"]) == isr


@pytest.mark.parametrize("target", ALL)
def test_gateway_user_and_its_secret(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    user = one(docs, "KafkaUser")
    name = user["metadata"]["name"]
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    assert user["spec"]["authorization"]["type"] == "simple"
    ops: dict[tuple[str, str], set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        assert "operation" not in acl, "`operation` was removed in the v1 API; use `operations`"
        res = acl["resource"]
        ops.setdefault((res["type"], res.get("name", "")), set()).update(acl["operations"])
    assert {"Describe", "Read", "Write"} <= ops[("topic", "events")]
    assert "Read" in ops[("group", "*")]
    # The gateway logs in as this user, with the password the User Operator puts in a Secret of the
    # same name (key `password`).
    env = gateway_env(docs)
    assert env["GATEWAY_KAFKA__SASL_USERNAME"] == name
    assert env["GATEWAY_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert secret_env(docs)["GATEWAY_KAFKA__SASL_PASSWORD"] == {"name": name, "key": "password"}


@pytest.mark.parametrize("target", ALL)
def test_gateway_bootstrap_matches_a_listener(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    cluster = kafka(docs)["metadata"]["name"]
    env = gateway_env(docs)
    host, _, port = env["GATEWAY_KAFKA__BOOTSTRAP_SERVERS"].partition(":")
    assert host.split(".")[0] == f"{cluster}-kafka-bootstrap"
    listener = {li["port"]: li for li in kafka(docs)["spec"]["kafka"]["listeners"]}[int(port)]
    if listener["tls"]:
        assert env["GATEWAY_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
        ca = env["GATEWAY_KAFKA__SSL_CA_LOCATION"]
        mount = next(m for m in container(docs)["volumeMounts"] if ca.startswith(m["mountPath"].rstrip("/") + "/"))
        volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == f"{cluster}-cluster-ca-cert"
        assert any(ca.endswith("/" + item["path"]) and item["key"] == "ca.crt" for item in volume["secret"]["items"])
    else:
        assert env["GATEWAY_KAFKA__SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"


# --- the gateway ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ALL)
def test_gateway_settings_are_accepted_by_the_gateway(
    rendered: dict[str, list[Doc]], target: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every GATEWAY_* variable names a real setting, and the whole set passes gateway.settings."""
    docs = rendered[target]
    env = gateway_env(docs)
    for key in list(os.environ):
        if key.startswith("GATEWAY_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("GATEWAY_"):
            field = key.removeprefix("GATEWAY_").split("__")[0].lower()
            assert field in Settings.model_fields, f"{key} is not a gateway setting (ignored silently)"
            monkeypatch.setenv(key, value)
    for key in secret_env(docs):
        monkeypatch.setenv(key, "from-a-secret")
    # The key file is mounted from a Secret (test_callers_need_an_api_key_from_a_secret); here, one like it.
    key_file = tmp_path / "keys.json"
    key_file.write_text('{"keys": []}')
    monkeypatch.setenv("GATEWAY_AUTH__API_KEYS_FILE", str(key_file))
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.port == container_port(docs, "http") == GATEWAY_PORT
    assert settings.kafka_common()["sasl.password"] == "from-a-secret"


@pytest.mark.parametrize("target", ALL)
def test_callers_need_an_api_key_from_a_secret(rendered: dict[str, list[Doc]], target: str) -> None:
    """No target runs an open gateway: API keys, from a Secret the repository only names."""
    docs = rendered[target]
    env = gateway_env(docs)
    assert env["GATEWAY_AUTH__MODE"] == "api-key"
    path = env["GATEWAY_AUTH__API_KEYS_FILE"]
    mount = next(m for m in container(docs)["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/"))
    assert mount.get("readOnly") is True and "subPath" not in mount, "subPath mounts never see Secret updates"
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == mount["name"])
    secret = volume["secret"]
    assert secret["secretName"] == "kafka-gateway-api-keys" and not secret.get("optional", False)
    assert {"key": "keys.json", "path": path.removeprefix(mount["mountPath"].rstrip("/") + "/")} in secret["items"]
    assert not [d for d in docs if d["kind"] == "Secret"], "the key file is created by the operator, never kept here"


@pytest.mark.parametrize("target", ALL)
def test_replicas_and_autoscaler(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    replicas = deployment(docs)["spec"]["replicas"]
    hpa = one(docs, "HorizontalPodAutoscaler", GATEWAY)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY}
    assert hpa["spec"]["minReplicas"] <= replicas <= hpa["spec"]["maxReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    if PROFILE[target] == "ha":
        assert replicas >= 2 and hpa["spec"]["minReplicas"] >= 2
    if target == "prod":
        assert replicas >= 3


@pytest.mark.parametrize("target", ALL)
def test_probes(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    c = container(docs)
    paths = {name: c[name]["httpGet"]["path"] for name in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert paths == {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container_port(docs, c[name]["httpGet"]["port"]) == GATEWAY_PORT
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "room for a slow Kafka at start"


@pytest.mark.parametrize("target", ALL)
def test_security_context(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    pod, c = pod_spec(docs), container(docs)
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})

    def effective(key: str) -> Any:
        return csc.get(key, psc.get(key))

    assert effective("runAsNonRoot") is True
    assert effective("runAsUser") == 10001
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert "ALL" in csc["capabilities"]["drop"]
    assert effective("seccompProfile") == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])


@pytest.mark.parametrize("target", ALL)
def test_shutdown_fits_the_grace_period(rendered: dict[str, list[Doc]], target: str) -> None:
    """preStop sleep, then uvicorn's drain, then the producer's bounded close, all before SIGKILL."""
    docs = rendered[target]
    pre = prestop_seconds(container(docs))
    drain = float(gateway_env(docs).get("GATEWAY_SHUTDOWN_GRACE_S", Settings.model_fields["shutdown_grace_s"].default))
    grace = pod_spec(docs)["terminationGracePeriodSeconds"]
    assert pre >= 3, "endpoints need a few seconds to drop the pod before SIGTERM"
    assert grace > pre + drain + PRODUCER_CLOSE_TIMEOUT_S, (
        f"terminationGracePeriodSeconds={grace} <= preStop {pre} + drain {drain} + close {PRODUCER_CLOSE_TIMEOUT_S}"
    )


@pytest.mark.parametrize("target", ALL)
def test_resources(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    res = container(docs)["resources"]
    assert quantity_cpu(res["requests"]["cpu"]) <= quantity_cpu(res["limits"]["cpu"])
    assert quantity_bytes(res["requests"]["memory"]) <= quantity_bytes(res["limits"]["memory"])
    # Records held in the producer queue live in this pod's memory.
    in_flight = int(gateway_env(docs).get("GATEWAY_PRODUCE__MAX_IN_FLIGHT_BYTES", 256 * MIB))
    assert quantity_bytes(res["limits"]["memory"]) >= in_flight + 256 * MIB


@pytest.mark.parametrize("target", ALL)
def test_topology_spread(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    spread = {t["topologyKey"]: t for t in pod_spec(docs)["topologySpreadConstraints"]}
    assert set(spread) == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for t in spread.values():
        assert t["maxSkew"] == 1 and selects(t["labelSelector"], pod_labels(docs))
    if target == "prod":
        assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"


@pytest.mark.parametrize("target", ALL)
def test_service(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    svc = one(docs, "Service", GATEWAY)
    [port] = svc["spec"]["ports"]
    assert (port["name"], port["port"]) == ("http", 80)
    assert container_port(docs, port["targetPort"]) == GATEWAY_PORT
    assert selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(docs))


@pytest.mark.parametrize("target", ALL)
def test_disruption_budget(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    pdbs = of_kind(docs, "PodDisruptionBudget")
    min_replicas = one(docs, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
    if PROFILE[target] == "single":
        assert pdbs == [], "minAvailable: 1 on one replica would block every node drain"
        return
    [pdb] = pdbs
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 1
    assert selects(pdb["spec"]["selector"], pod_labels(docs))
    assert pdb["spec"]["minAvailable"] < min_replicas, "the budget must leave room to evict one pod"


def _ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])}


@pytest.mark.parametrize("target", ALL)
def test_network_policy(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    np = one(docs, "NetworkPolicy", GATEWAY)
    cluster = kafka(docs)["metadata"]["name"]
    assert selects(np["spec"]["podSelector"], pod_labels(docs))
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert any(("TCP", GATEWAY_PORT) in _ports(rule) for rule in np["spec"]["ingress"])
    kafka_rules = [
        r
        for r in np["spec"]["egress"]
        if any(
            peer.get("podSelector", {}).get("matchLabels", {}).get("strimzi.io/cluster") == cluster for peer in r["to"]
        )
    ]
    assert {("TCP", 9092), ("TCP", 9093)} <= set().union(*(_ports(r) for r in kafka_rules))
    _, _, port = gateway_env(docs)["GATEWAY_KAFKA__BOOTSTRAP_SERVERS"].partition(":")
    assert ("TCP", int(port)) in set().union(*(_ports(r) for r in kafka_rules))
    dns = set().union(*(_ports(r) for r in np["spec"]["egress"] if r not in kafka_rules))
    assert {("UDP", 53), ("TCP", 53)} <= dns


@pytest.mark.parametrize("target", ALL)
def test_service_monitor(rendered: dict[str, list[Doc]], target: str) -> None:
    docs = rendered[target]
    monitors = of_kind(docs, "ServiceMonitor")
    if PROFILE[target] == "single":
        assert monitors == [], "dev clusters rarely run the Prometheus Operator"
        return
    [sm] = monitors
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    svc = one(docs, "Service", GATEWAY)
    assert selects(sm["spec"]["selector"], svc["metadata"]["labels"])
    [endpoint] = sm["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize("target", ALL)
def test_kubectl_builtin_kustomize_renders_the_same(kustomize: str, target: str) -> None:
    """Operators run `kubectl apply -k`, whose built-in kustomize is older than the pinned one."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (optional)")
    path = targets()[target]
    ours = subprocess.run([kustomize, "build", str(path)], capture_output=True, text=True, timeout=120, check=True)
    theirs = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False)
    assert theirs.returncode == 0, f"kubectl kustomize {target} failed:\n{theirs.stderr[-2000:]}"
    assert load_docs(theirs.stdout) == load_docs(ours.stdout)
