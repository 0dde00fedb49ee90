"""One image, one tag: the README builds `points-gateway:<version of pyproject.toml>`, and the
Deployment and docker-compose.yml run that same tag (built once, by compose's `gateway`)."""

from __future__ import annotations

import re

from tests.deploy.support import K8S_DIR, README, compose, load_yaml, project_version

IMAGE = "points-gateway"


def image() -> str:
    return f"{IMAGE}:{project_version()}"


def test_the_readme_builds_the_tag() -> None:
    text = README.read_text(encoding="utf-8")
    builds = re.findall(r"docker build -t (\S+)", text)
    assert builds, "the README says how to build the image"
    assert set(builds) == {image()}


def test_the_deployment_runs_the_tag_if_not_present() -> None:
    pod = load_yaml(K8S_DIR / "deployment.yaml")["spec"]["template"]["spec"]
    containers = pod["containers"] + pod["initContainers"]
    assert {c["image"] for c in containers} == {image()}
    assert {c["imagePullPolicy"] for c in containers} == {"IfNotPresent"}


def test_compose_builds_the_tag_once_and_every_service_of_it_reuses_it() -> None:
    services = compose()["services"]
    ours = {name: s for name, s in services.items() if s["image"].startswith(f"{IMAGE}:")}
    assert set(ours) == {"gateway", "migrate", "sandbox"}
    assert {s["image"] for s in ours.values()} == {image()}
    assert [name for name, s in ours.items() if "build" in s] == ["gateway"]
    assert all("build" not in s for s in services.values() if s not in ours.values())
