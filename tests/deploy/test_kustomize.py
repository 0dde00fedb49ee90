"""deploy/k8s/kustomization.yaml (`kubectl apply -k deploy/k8s`) and the optional monitoring
component (a ServiceMonitor and a PrometheusRule, for the Prometheus Operator), rendered by
`kubectl kustomize` as an operator's overlay would include them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import K8S_DIR, MONITORING_DIR, load_yaml, load_yaml_all
from tests.support.monitoring import ALERTS

KUSTOMIZE_TIMEOUT = 60.0
LABELS = {"app.kubernetes.io/name": "points-gateway", "app.kubernetes.io/component": "api"}
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}


def kustomize(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIRECTORY`, parsed."""
    try:
        done = subprocess.run(
            [kubectl, "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=KUSTOMIZE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"kubectl kustomize took over {KUSTOMIZE_TIMEOUT} s")
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d is not None]


def identities(documents: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in documents}


def listed(directory: Path) -> list[dict[str, Any]]:
    """The documents of the files a kustomization.yaml lists as resources."""
    names = load_yaml(directory / "kustomization.yaml")["resources"]
    return [doc for name in names for doc in load_yaml_all(directory / name)]


def test_the_kustomization_lists_every_manifest_beside_it() -> None:
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(resources) == sorted(on_disk)
    assert "namespace" not in kustomization, "the namespace is the operator's to choose"


def test_kubectl_kustomize_renders_exactly_those_manifests(kubectl: str) -> None:
    rendered = kustomize(kubectl, K8S_DIR)
    assert identities(rendered) == identities(listed(K8S_DIR))
    assert not {d["kind"] for d in rendered} & MONITORING_KINDS, "the CRDs are optional"


def test_an_overlay_adds_the_monitoring_component(kubectl: str, tmp_path: Path) -> None:
    # As the README tells operators: their own kustomization, the base and the component.
    base = os.path.relpath(K8S_DIR, tmp_path)
    component = os.path.relpath(MONITORING_DIR, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "namespace": "loyalty",
                "resources": [base],
                "components": [component],
            }
        )
    )
    rendered = kustomize(kubectl, tmp_path)
    assert identities(rendered) == identities(listed(K8S_DIR)) | identities(listed(MONITORING_DIR))
    assert {d["metadata"]["namespace"] for d in rendered} == {"loyalty"}


def monitoring(kind: str) -> dict[str, Any]:
    (found,) = [d for d in listed(MONITORING_DIR) if d["kind"] == kind]
    return found


def test_the_monitoring_folder_is_a_component_of_the_two_resources() -> None:
    assert load_yaml(MONITORING_DIR / "kustomization.yaml")["kind"] == "Component"
    kinds = {(d["apiVersion"], d["kind"]) for d in listed(MONITORING_DIR)}
    assert kinds == {("monitoring.coreos.com/v1", kind) for kind in MONITORING_KINDS}
    on_disk = {p.name for p in MONITORING_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(load_yaml(MONITORING_DIR / "kustomization.yaml")["resources"]) == sorted(on_disk)


def test_the_service_monitor_scrapes_the_service_with_the_metrics_token() -> None:
    monitor = monitoring("ServiceMonitor")
    (service,) = [d for d in listed(K8S_DIR) if d["kind"] == "Service"]
    (secret,) = [d for d in listed(K8S_DIR) if d["kind"] == "Secret"]
    assert monitor["spec"]["selector"]["matchLabels"] == service["metadata"]["labels"] == LABELS
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"]["type"] == "Bearer"
    credentials = endpoint["authorization"]["credentials"]
    assert credentials["name"] == secret["metadata"]["name"]
    assert credentials["key"] in secret["stringData"]
    assert credentials["key"] == "POINTS_METRICS_TOKEN"


def test_the_prometheus_rule_holds_the_alerts_file() -> None:
    rule = monitoring("PrometheusRule")
    assert rule["metadata"]["labels"] == LABELS
    alerts = load_yaml(ALERTS)
    assert rule["spec"] == {"groups": alerts["groups"]}, (
        "deploy/k8s/monitoring/prometheusrule.yaml differs from deploy/prometheus/alerts.yaml: "
        "copy the groups of alerts.yaml under its `spec:`"
    )
