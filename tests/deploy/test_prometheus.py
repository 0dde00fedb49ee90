"""deploy/prometheus: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`), every alert has series that fire it and series that must not, and the
scrape configuration passes `promtool check config`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import PROMETHEUS_DIR, dummy_secrets, load_yaml
from tests.support.monitoring import ALERTS, alert_rules

ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yaml"
SCRAPE = PROMETHEUS_DIR / "scrape.yaml"
PROMTOOL_TIMEOUT = 60.0
# The alerts the issue asks for (breaker, upstream errors, 5xx, readiness, token refresh), and
# the one that says the others are blind.
ALERT_NAMES = {
    "PointsGatewayMetricsAbsent",
    "PointsGatewayHighServerErrorRatio",
    "PointsGatewayUpstreamErrorRatio",
    "PointsGatewayCircuitOpen",
    "PointsGatewayNotReady",
    "PointsGatewayTokenRefreshFailing",
}


def promtool_run(promtool: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [promtool, *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=PROMTOOL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"promtool {args[0]} took over {PROMTOOL_TIMEOUT} s")


def printed(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"


def test_promtool_checks_the_rules(promtool: str, tmp_path: Path) -> None:
    done = promtool_run(promtool, "check", "rules", ALERTS, cwd=tmp_path)
    assert done.returncode == 0, printed(done)
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in done.stdout, printed(done)


def test_promtool_does_refuse_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n"
        "      - alert: Broken\n        expr: sum by (job (rate(points_http_requests_total[5m]))\n"
    )
    done = promtool_run(promtool, "check", "rules", broken, cwd=tmp_path)
    assert done.returncode != 0, printed(done)


def test_the_alert_unit_tests_pass(promtool: str) -> None:
    done = promtool_run(promtool, "test", "rules", ALERT_TESTS.name, cwd=PROMETHEUS_DIR)
    assert done.returncode == 0, printed(done)
    assert "SUCCESS" in done.stdout, printed(done)


def test_the_unit_tests_do_fail_when_an_alert_fires_unexpectedly(
    promtool: str, tmp_path: Path
) -> None:
    # So that SUCCESS above means the expectations were compared, not skipped.
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    tests = load_yaml(ALERT_TESTS)
    (case,) = [
        case
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["alertname"] == "PointsGatewayMetricsAbsent" and case["exp_alerts"]
    ]
    case["exp_alerts"] = []
    (tmp_path / ALERT_TESTS.name).write_text(yaml.safe_dump(tests))
    done = promtool_run(promtool, "test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert done.returncode != 0, printed(done)
    assert "alertname: PointsGatewayMetricsAbsent" in done.stdout + done.stderr, printed(done)


def alert_cases() -> list[dict[str, Any]]:
    loaded = load_yaml(ALERT_TESTS)
    assert loaded["rule_files"] == [ALERTS.name]
    return [case for test in loaded["tests"] for case in test["alert_rule_test"]]


def test_the_rules_are_the_alerts_we_document() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == ALERT_NAMES
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]
        assert rule["for"], f"{rule['alert']}: no `for`, so one bad evaluation pages"


@pytest.mark.parametrize("alert", sorted(ALERT_NAMES))
def test_each_alert_is_tested_firing_and_quiet(alert: str) -> None:
    cases = [case for case in alert_cases() if case["alertname"] == alert]
    assert any(case["exp_alerts"] for case in cases), f"{alert}: no case where it fires"
    assert any(not case["exp_alerts"] for case in cases), f"{alert}: no case where it stays quiet"


def checkable_scrape_config(promtool: str, tmp_path: Path) -> Path:
    """scrape.yaml as promtool can check it here: the rule file beside it, a token file where
    `credentials_file` points, and (when this promtool was built without Kubernetes discovery,
    as Debian's is) a static target in place of `kubernetes_sd_configs`."""
    config = load_yaml(SCRAPE)
    assert config["rule_files"] == [ALERTS.name]
    shutil.copy(ALERTS, tmp_path / ALERTS.name)
    token = tmp_path / "metrics-token"
    token.write_text(dummy_secrets()["POINTS_METRICS_TOKEN"])
    for job in config["scrape_configs"]:
        assert job["authorization"]["type"] == "Bearer", job["job_name"]
        job["authorization"]["credentials_file"] = str(token)
    as_written = tmp_path / "as-written.yaml"
    as_written.write_text(yaml.safe_dump(config))
    syntax = promtool_run(promtool, "check", "config", "--syntax-only", as_written, cwd=tmp_path)
    if syntax.returncode != 0:
        assert "field kubernetes_sd_configs not found" in syntax.stdout + syntax.stderr, printed(
            syntax
        )
        for job in config["scrape_configs"]:
            if job.pop("kubernetes_sd_configs", None) is not None:
                job["static_configs"] = [{"targets": ["10.0.0.1:8000"]}]
    checked = tmp_path / "prometheus.yaml"
    checked.write_text(yaml.safe_dump(config))
    return checked


def test_promtool_checks_the_scrape_config(promtool: str, tmp_path: Path) -> None:
    done = promtool_run(
        promtool, "check", "config", checkable_scrape_config(promtool, tmp_path), cwd=tmp_path
    )
    assert done.returncode == 0, printed(done)
    assert "SUCCESS: 6 rules found" in done.stdout, printed(done)


def test_the_scrape_jobs_send_the_token_and_follow_the_pod_annotations() -> None:
    config = load_yaml(SCRAPE)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"points-gateway", "points-gateway-compose"}
    pods = jobs["points-gateway"]
    assert pods["kubernetes_sd_configs"] == [{"role": "pod"}]
    sources = {tuple(r["source_labels"]) for r in pods["relabel_configs"]}
    annotation = "__meta_kubernetes_pod_annotation_prometheus_io_"
    assert (f"{annotation}scrape",) in sources
    assert (f"{annotation}path",) in sources
    assert ("__address__", f"{annotation}port") in sources
    assert ("__meta_kubernetes_pod_label_app_kubernetes_io_name",) in sources
    for job in jobs.values():
        assert job["authorization"]["credentials_file"], job["job_name"]
