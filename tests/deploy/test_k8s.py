"""deploy/k8s: every manifest valid (kubernetes-validate, strict: unknown fields refused) for the
oldest and newest Kubernetes versions we claim, and consistent with the image and the settings."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from app.gateway import plan_gateway
from app.settings import Settings
from tests.deploy.support import (
    DOCKERFILE,
    K8S_DIR,
    ROOT,
    dummy_secrets,
    exec_form,
    load_yaml,
    load_yaml_all,
    parse_dockerfile,
    setting_problem,
)

# The oldest minor still commonly run, and the newest kubernetes-validate ships schemas for.
VERSIONS = ("1.30.0", "1.37.0")
PLACEHOLDER = "REPLACE_ME"
LABELS = {"app.kubernetes.io/name": "points-gateway", "app.kubernetes.io/component": "api"}
REQUEST_DEADLINE_MAX = Settings.model_fields["request_deadline_max"].default


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """The resources deploy/k8s/kustomization.yaml lists (what `kubectl apply -k` applies)."""
    files = [K8S_DIR / name for name in load_yaml(K8S_DIR / "kustomization.yaml")["resources"]]
    assert files, "no manifests in deploy/k8s"
    return [(f.name, doc) for f in files for doc in load_yaml_all(f)]


def by_kind(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in manifests() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def test_the_expected_resources_are_there() -> None:
    kinds = {(doc["apiVersion"], doc["kind"]) for _, doc in manifests()}
    assert kinds == {
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_strictly(version: str) -> None:
    for name, doc in manifests():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = "/".join(map(str, exc.path))
            pytest.fail(f"{name} ({doc['kind']}) at {path}: {exc.message} (Kubernetes {version})")


def test_strict_validation_does_refuse_an_unknown_field() -> None:
    deployment = copy.deepcopy(by_kind("Deployment"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = by_kind("Deployment")["spec"]["template"]["spec"]
    return spec


def gateway_container() -> dict[str, Any]:
    (container,) = [c for c in pod_spec()["containers"] if c["name"] == "gateway"]
    return dict(container)


def test_deployment_replicas_selector_and_labels() -> None:
    deployment = by_kind("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == LABELS
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= LABELS.items()
    rolling = deployment["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0


def test_the_gateway_runs_the_image_command_as_its_user() -> None:
    runtime = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))[-1]
    cmd = exec_form(runtime.last("CMD").value)
    uid = int(runtime.last("USER").value.split(":")[0])
    port = int(runtime.last("EXPOSE").value.split("/")[0])

    container = gateway_container()
    assert container["command"] == cmd
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    assert pod_spec()["securityContext"]["runAsUser"] == uid


@pytest.mark.parametrize("section", ["containers", "initContainers"])
def test_every_container_is_locked_down(section: str) -> None:
    pod = pod_spec()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for container in pod[section]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        resources = container["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys()
        assert "memory" in resources["limits"]
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}  # noqa: S108


def test_the_pods_ask_to_be_scraped_on_the_gateway_port() -> None:
    annotations = by_kind("Deployment")["spec"]["template"]["metadata"]["annotations"]
    (port,) = gateway_container()["ports"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port["containerPort"]),
        "prometheus.io/path": "/metrics",
    }


def test_probes_ask_the_health_routes_the_api_serves() -> None:
    container = gateway_container()
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    paths = json.loads((ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8"))["paths"]
    assert "get" in paths["/healthz"]
    assert "get" in paths["/readyz"]


def test_shutdown_drains_within_the_grace_period() -> None:
    container = gateway_container()
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    grace = pod_spec()["terminationGracePeriodSeconds"]
    drain = float(by_kind("ConfigMap")["data"]["POINTS_SHUTDOWN_DRAIN"])
    assert pre_stop >= 5, "long enough for the endpoints to drop the pod"
    assert drain == 0, "the preStop pause already drains: no second pause after SIGTERM"
    assert grace >= pre_stop + drain + REQUEST_DEADLINE_MAX, "room for the longest request after it"


def test_the_schema_is_migrated_before_the_gateway_starts() -> None:
    (init,) = pod_spec()["initContainers"]
    assert init["command"] == ["points-gateway", "db", "upgrade"]
    assert init["image"] == gateway_container()["image"]
    assert init["envFrom"] == gateway_container()["envFrom"]


def test_env_comes_from_the_configmap_and_the_secret() -> None:
    sources = gateway_container()["envFrom"]
    assert {"configMapRef": {"name": by_kind("ConfigMap")["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": by_kind("Secret")["metadata"]["name"]}} in sources
    assert "env" not in gateway_container(), "settings live in the ConfigMap and the Secret"


def test_the_secret_is_a_template_without_values() -> None:
    secret = by_kind("Secret")
    assert "data" not in secret, "no base64 values: stringData placeholders only"
    assert secret["stringData"]
    assert set(secret["stringData"].values()) == {PLACEHOLDER}


def test_configmap_and_secret_hold_only_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = by_kind("ConfigMap")["data"]
    secret = by_kind("Secret")["stringData"]
    assert not config.keys() & secret.keys()
    problems = {n: setting_problem(n) for n in [*config, *secret]}
    assert {n: p for n, p in problems.items() if p} == {}
    # Nothing secret in the ConfigMap.
    secret_fields = {"IMP_SECRET", "TOKEN", "SECRET_KEYS", "JWT_SECRET", "DATABASE_URL"}
    assert not [n for n in config if any(n.endswith(f) for f in secret_fields)]

    # With the placeholders filled in, the pair is a configuration the gateway accepts.
    dummies = dummy_secrets()
    missing = secret.keys() - dummies.keys()
    assert not missing, f"no dummy for {missing}"
    for key in list(os.environ):
        if key.upper().startswith("POINTS_"):
            monkeypatch.delenv(key)
    for key, value in {**config, **{k: dummies[k] for k in secret}}.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    plan = plan_gateway(settings)
    assert sorted(plan.providers) == ["benepia", "gafapay"]
    assert settings.redis_url is not None
    assert settings.database_url is not None


def test_the_service_reaches_the_pods_port() -> None:
    service = by_kind("Service")
    assert service["spec"]["selector"] == LABELS
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_the_autoscaler_scales_the_deployment_from_two() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["spec"]
    deployment = by_kind("Deployment")
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["minReplicas"] == deployment["spec"]["replicas"] == 2
    assert hpa["maxReplicas"] > hpa["minReplicas"]
    # Utilization targets need CPU requests on every container.
    assert all("cpu" in c["resources"]["requests"] for c in pod_spec()["containers"])


def test_the_disruption_budget_keeps_one_pod_and_lets_a_node_drain() -> None:
    pdb = by_kind("PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"] == LABELS
    assert 1 <= pdb["minAvailable"] < by_kind("Deployment")["spec"]["replicas"]


def test_manifest_files_are_named_for_what_they_hold() -> None:
    names = {Path(name).stem for name, _ in manifests()}
    assert names == {"configmap", "secret", "deployment", "service", "hpa", "pdb", "networkpolicy"}
