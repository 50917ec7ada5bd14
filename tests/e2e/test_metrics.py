"""The operator's Prometheus endpoint end to end: after one resource is Ready, every series says so sensibly.

Runs its own sandbox and operator (with a metrics port), so it never shares a cluster with the session operator:
two operators on one cluster would both act on every resource.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from e2e_harness import (
    CLIENT_ID,
    Kube,
    Operator,
    Sandbox,
    condition,
    integration_resource,
    start_sandbox,
    stop_sandbox,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

from opsramp_sandbox import dashboards

pytestmark = pytest.mark.e2e

PREFIX = "opsramp_operator_"


def free_port() -> int:
    """A TCP port nothing listens on right now (the operator binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MetricsWorld:
    sandbox: Sandbox
    operator: Operator
    kube: Kube
    url: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsWorld]:
    """A sandbox of this module's own and an operator serving /metrics on a free port."""
    sandbox = start_sandbox(Path(tmp_path_factory.mktemp("metrics-sandbox")))
    port = free_port()
    operator = Operator(sandbox, extra_env={"OPERATOR_METRICS_PORT": str(port)})
    operator.start()
    try:
        yield MetricsWorld(sandbox, operator, Kube(sandbox.kubeconfig), f"http://127.0.0.1:{port}/metrics")
    finally:
        operator.stop()
        stop_sandbox(sandbox)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[str, Samples, set[str]]:
    """The endpoint's text, its samples keyed by (name, labels), and the metric family names it declares."""
    text = requests.get(url, timeout=5).text
    samples: Samples = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples, families


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample with exactly these labels, or None."""
    return samples.get((PREFIX + name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == PREFIX + name and wanted <= ls)


def _endpoint_up(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_metrics_after_one_resource_is_ready_and_deleted(world: MetricsWorld) -> None:
    """Reconciles by result, durations, API calls by service, Ready gauge and limiter series look right."""
    wait_for("the metrics endpoint", lambda: _endpoint_up(world.url), timeout=30)
    kube, sandbox = world.kube, world.sandbox
    namespace = kube.namespace("metrics")
    kube.apply_secret(namespace, "opsramp-api-client", {"clientId": CLIENT_ID, "clientSecret": sandbox.client_secret})
    kube.create(integration_resource(namespace, "metrics", sandbox.opsramp.url))
    wait_for(
        "Ready=True",
        lambda: condition(kube.get(namespace, "metrics"), "Ready").get("status") == "True",
        timeout=60,
    )

    # The gauge is published by the same pass that wrote Ready; poll in case the scrape races it.
    def ready_one() -> Samples | None:
        _, samples, _ = scrape(world.url)
        return samples if value(samples, "resources", ready="True") == 1 else None

    samples = wait_for("resources{ready=True} == 1", ready_one, timeout=20)
    text, _, families = scrape(world.url)
    print(
        "reconciles ok:",
        value(samples, "reconciles_total", result="ok"),
        "iam calls:",
        total(samples, "api_calls_total", service="iam"),
        "opsramp calls:",
        total(samples, "api_calls_total", service="opsramp"),
    )

    assert (value(samples, "reconciles_total", result="ok") or 0) >= 1
    assert (value(samples, "reconcile_duration_seconds_count", result="ok") or 0) >= 1
    assert (value(samples, "reconcile_duration_seconds_sum", result="ok") or 0) > 0
    # Every observed pass counted once, in both the counter and the histogram.
    for result in ("ok", "transient", "needs_attention", "error"):
        assert value(samples, "reconciles_total", result=result) == value(
            samples, "reconcile_duration_seconds_count", result=result
        ), result
    assert value(samples, "resources", ready="False") == 0
    assert value(samples, "resources", ready="Unknown") == 0

    # The role came from IAM calls, the integration from OpsRamp calls, the account check from STS.
    assert (value(samples, "api_calls_total", service="iam", operation="CreateRole") or 0) >= 1
    assert (value(samples, "api_calls_total", service="iam", operation="GetRole") or 0) >= 1
    assert (value(samples, "api_calls_total", service="sts", operation="GetCallerIdentity") or 0) >= 1
    assert total(samples, "api_calls_total", service="opsramp") > 0
    # Errors are counted by service and operation too: none may exceed that operation's calls.
    for (name, labels), errors in samples.items():
        if name == PREFIX + "api_errors_total":
            label_map = dict(labels)
            calls = value(samples, "api_calls_total", service=label_map["service"], operation=label_map["operation"])
            assert calls is not None and errors <= calls, label_map

    # The limiter series are declared even before any wait happened; a wait is never negative.
    assert {PREFIX + "rate_limit_wait_seconds", PREFIX + "api_errors"} <= families
    assert all(v >= 0 for (n, _), v in samples.items() if n == PREFIX + "rate_limit_wait_seconds_total")

    # No secret reaches a label.
    assert sandbox.client_secret not in text

    kube.delete(namespace, "metrics")
    wait_for("resource gone", lambda: kube.get(namespace, "metrics") is None, timeout=60)

    def ready_zero() -> bool:
        _, after, _ = scrape(world.url)
        return value(after, "resources", ready="True") == 0

    wait_for("resources{ready=True} back to 0", ready_zero, timeout=20)
    _, after, _ = scrape(world.url)
    assert (value(after, "api_calls_total", service="iam", operation="DeleteRole") or 0) >= 1
    assert total(after, "api_calls_total", service="opsramp") > total(samples, "api_calls_total", service="opsramp")


def test_dashboard_and_alerts_query_only_metrics_the_operator_exports(world: MetricsWorld) -> None:
    """Every metric the chart's Grafana dashboard and alerting rules query is one this operator's /metrics declares
    (a renamed or dropped metric would leave a panel empty and an alert silent)."""
    wait_for("the metrics endpoint", lambda: _endpoint_up(world.url), timeout=30)
    exported = dashboards.exported_names(text_string_to_metric_families(requests.get(world.url, timeout=5).text))
    queried = dashboards.metric_names(dashboards.dashboard_expressions(dashboards.load_dashboard()))
    queried |= dashboards.metric_names(dashboards.rule_expressions(dashboards.load_rules()))
    assert len(queried) >= 10, queried
    assert not queried - exported, f"queried but not exported: {sorted(queried - exported)}"
