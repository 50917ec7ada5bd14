"""The chart's alerting rules and Grafana dashboard: promtool's own check and unit tests, the dashboard lint, and what
the chart renders from them."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import pytest
from ship_support import Renderer, by_kind

from opsramp_sandbox import dashboards
from opsramp_sandbox.promtools import ensure_promtool

RULES_TESTS = Path(__file__).parent / "prometheus" / "rules_test.yaml"


@pytest.fixture(scope="module")
def promtool() -> Path:
    """promtool from Debian's prometheus package (fetched once into .tools/, digests checked)."""
    return ensure_promtool()


def test_rules_pass_promtool_check(promtool: Path) -> None:
    """`promtool check rules` accepts the chart's rules file (syntax, PromQL, templates)."""
    result = subprocess.run(
        [str(promtool), "check", "rules", str(dashboards.RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass(promtool: Path) -> None:
    """`promtool test rules`: each alert fires when it should, with the labels and texts it should, and not before."""
    result = subprocess.run(
        [str(promtool), "test", "rules", RULES_TESTS.name],
        cwd=RULES_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_unit_tests_fail_when_an_alert_is_broken(promtool: Path, tmp_path: Path) -> None:
    """The unit tests catch a changed threshold: with the not-Ready alert at 60 minutes they fail."""
    broken = dashboards.RULES.read_text().replace(
        "opsramp_operator_oldest_not_ready_seconds) > 1800", "opsramp_operator_oldest_not_ready_seconds) > 3600"
    )
    assert broken != dashboards.RULES.read_text()
    rules = tmp_path / "rules.yaml"
    rules.write_text(broken)
    tests = tmp_path / "rules_test.yaml"
    tests.write_text(
        RULES_TESTS.read_text().replace("../../../charts/opsramp-aws-operator/files/prometheus-rules.yaml", str(rules))
    )
    result = subprocess.run([str(promtool), "test", "rules", str(tests)], capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "OpsRampAwsIntegrationNotReady" in result.stdout + result.stderr, result.stdout


def test_dashboard_lint_passes(promtool: Path) -> None:
    """The shipped dashboard passes the lint (templated data source, job/instance filters, PromQL that parses)."""
    dashboard = dashboards.load_dashboard()
    problems = dashboards.lint_dashboard(dashboard)
    problems += dashboards.parse_problems(dashboards.dashboard_expressions(dashboard), promtool)
    assert not problems, problems


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("fixed data source", "data source is not ${datasource}"),
        ("no job filter", 'lacks job=~"$job"'),
        ("no datasource variable", "no `datasource` variable"),
        ("duplicate panel id", "duplicate id"),
    ],
)
def test_dashboard_lint_catches(breakage: str, expected: str) -> None:
    """Each lint rule fails a dashboard that breaks it."""
    dashboard = copy.deepcopy(dashboards.load_dashboard())
    panel = dashboard["panels"][0]
    if breakage == "fixed data source":
        panel["targets"][0]["datasource"] = {"type": "prometheus", "uid": "prometheus-main"}
    elif breakage == "no job filter":
        panel["targets"][0]["expr"] = panel["targets"][0]["expr"].replace('job=~"$job", ', "")
    elif breakage == "no datasource variable":
        dashboard["templating"]["list"] = [v for v in dashboard["templating"]["list"] if v["name"] != "datasource"]
    else:
        dashboard["panels"][1]["id"] = panel["id"]
    assert any(expected in problem for problem in dashboards.lint_dashboard(dashboard))


def test_dashboard_lint_catches_promql_that_does_not_parse(promtool: Path) -> None:
    """Prometheus's parser refuses a broken expression (a missing parenthesis)."""
    assert dashboards.parse_problems(["sum(rate(opsramp_operator_reconciles_total[5m])"], promtool)


def test_chart_renders_the_rules_and_the_dashboard_when_asked(render: Renderer) -> None:
    """metrics.prometheusRule / metrics.grafanaDashboard render the files as they are; both off by default."""
    assert not by_kind(render(), "PrometheusRule")
    assert not [c for c in by_kind(render(), "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    docs = render(
        sets=(
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.labels.release=kps",
            "metrics.grafanaDashboard.enabled=true",
        )
    )
    (rule,) = by_kind(docs, "PrometheusRule")
    assert rule["spec"] == dashboards.load_rules()
    assert rule["metadata"]["labels"]["release"] == "kps"
    (config,) = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config["data"]["opsramp-aws-operator.json"]) == dashboards.load_dashboard()
