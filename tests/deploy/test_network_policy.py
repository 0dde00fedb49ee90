"""deploy/k8s/networkpolicy.yaml: the gateway's pods take traffic on their port only, and reach
DNS, PostgreSQL, Redis and the providers (every port the ConfigMap's provider URLs use)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]

from tests.deploy.support import K8S_DIR, load_yaml, load_yaml_all

LABELS = {"app.kubernetes.io/name": "points-gateway", "app.kubernetes.io/component": "api"}
POLICY_FILE = K8S_DIR / "networkpolicy.yaml"


def policy() -> dict[str, Any]:
    (document,) = load_yaml_all(POLICY_FILE)
    assert document["kind"] == "NetworkPolicy"
    return document


def gateway_ports() -> dict[str, int]:
    deployment = load_yaml(K8S_DIR / "deployment.yaml")
    (gateway,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "gateway"
    ]
    return {port["name"]: int(port["containerPort"]) for port in gateway["ports"]}


def egress_ports() -> set[tuple[str, int]]:
    return {
        (port.get("protocol", "TCP"), int(port["port"]))
        for rule in policy()["spec"]["egress"]
        for port in rule["ports"]
    }


def test_it_selects_the_gateway_pods_in_both_directions() -> None:
    spec = policy()["spec"]
    assert spec["podSelector"] == {"matchLabels": LABELS}
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    kubernetes_validate.validate(policy(), "1.37.0", strict=True)


def test_ingress_is_the_gateway_port_only() -> None:
    (rule,) = policy()["spec"]["ingress"]
    (port,) = rule["ports"]
    assert port["protocol"] == "TCP"
    ports = gateway_ports()
    number = ports[port["port"]] if isinstance(port["port"], str) else port["port"]
    assert number == 8000
    assert "from" not in rule, "any source, narrowed by the operator (see the comment)"


def test_egress_reaches_dns_the_database_the_cache_and_https() -> None:
    assert {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 5432),
        ("TCP", 6379),
        ("TCP", 443),
    } <= egress_ports()
    for rule in policy()["spec"]["egress"]:
        assert "to" not in rule, "any address, narrowed by the operator (see the comment)"


def test_egress_reaches_every_provider_url_of_the_configmap() -> None:
    config = load_yaml(K8S_DIR / "configmap.yaml")["data"]
    urls = [value for name, value in config.items() if name.endswith("__BASE_URL")]
    assert len(urls) >= 2
    for url in urls:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}[parts.scheme]
        assert ("TCP", port) in egress_ports(), url


def test_the_comment_tells_operators_to_narrow_it() -> None:
    header = POLICY_FILE.read_text(encoding="utf-8").split("apiVersion:")[0]
    assert "Narrow" in header
    assert "providers' addresses" in header
