"""Checks for the chart's Grafana dashboard and Prometheus rules, and the metric names they use.

Grafana's own dashboard linter (grafana/dashboard-linter) is not in any registry these machines reach, so this
applies its rules that matter here, on the dashboard JSON the chart ships:

- the dashboard has a uid, a title, a schemaVersion, and a `datasource` template variable of type `datasource`
  (query `prometheus`), and every panel and target uses it (`${datasource}`), never a fixed data source;
- `job` and `instance` template variables exist, and every target's selectors filter on both (`job=~"$job"`,
  `instance=~"$instance"`), so one dashboard serves every installation and every shard;
- panel ids are unique, each panel has a title, a type, a gridPos and at least one target with a refId;
- every target's PromQL parses: each expression, its variables replaced, goes through `promtool check rules` (the
  Prometheus parser itself);

and, for the dashboard and the rules alike, `metric_names` lists the metrics they query, which a test compares with
what a running operator really exports (`exported_names` of a real scrape).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "opsramp-aws-operator"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
RULES = CHART / "files" / "prometheus-rules.yaml"

# What Grafana substitutes before a query runs; any valid value does for parsing.
_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$job": ".+", "$instance": ".+"}
_METRIC = re.compile(r"\b((?:opsramp_operator|process|python)_[a-zA-Z0-9_]+)\b")
# Suffixes a scrape shows for each metric type (prometheus_client's text format).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def load_rules(path: Path = RULES) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def dashboard_expressions(dashboard: Mapping[str, Any]) -> list[str]:
    return [str(t.get("expr", "")) for panel in dashboard.get("panels") or () for t in panel.get("targets") or ()]


def rule_expressions(rules: Mapping[str, Any]) -> list[str]:
    return [str(rule["expr"]) for group in rules.get("groups") or () for rule in group.get("rules") or ()]


def substitute(expr: str) -> str:
    for name in sorted(_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, _VARIABLES[name])
    return expr


def lint_dashboard(dashboard: Mapping[str, Any]) -> list[str]:
    """What is wrong with the dashboard (empty: nothing), without parsing its PromQL (see `parse_problems`)."""
    problems: list[str] = []
    for key in ("uid", "title", "schemaVersion"):
        if not dashboard.get(key):
            problems.append(f"dashboard: no {key}")
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or ()}
    source = variables.get("datasource")
    if source is None or source.get("type") != "datasource" or source.get("query") != "prometheus":
        problems.append("templating: no `datasource` variable of type datasource for prometheus")
    for name in ("job", "instance"):
        if name not in variables:
            problems.append(f"templating: no `{name}` variable")
        elif variables[name].get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"templating: `{name}` does not query ${{datasource}}")
    seen: set[int] = set()
    for panel in dashboard.get("panels") or ():
        where = f"panel {panel.get('id')} ({panel.get('title')!r})"
        if panel.get("id") in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(panel.get("id"))
        for key in ("title", "type", "gridPos"):
            if not panel.get(key):
                problems.append(f"{where}: no {key}")
        if (panel.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"{where}: data source is not ${{datasource}}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        for target in targets:
            expr = str(target.get("expr") or "")
            if not target.get("refId"):
                problems.append(f"{where}: a target without refId")
            if (target.get("datasource") or {}).get("uid") != "${datasource}":
                problems.append(f"{where}: target {target.get('refId')} data source is not ${{datasource}}")
            for selector in ('job=~"$job"', 'instance=~"$instance"'):
                for metric in _METRIC.findall(expr):
                    if not re.search(re.escape(metric) + r"\{[^}]*" + re.escape(selector), expr):
                        problems.append(f"{where}: {metric} in target {target.get('refId')} lacks {selector}")
    return problems


def parse_problems(expressions: Iterable[str], promtool: Path) -> list[str]:
    """Each expression through Prometheus's own parser (as recording rules for `promtool check rules`)."""
    rules = [{"record": f"check:expr_{i}", "expr": substitute(e)} for i, e in enumerate(expressions)]
    with tempfile.TemporaryDirectory(prefix="dashboard-lint-") as scratch:
        path = Path(scratch) / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        result = subprocess.run(
            [str(promtool), "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
    return [] if result.returncode == 0 else [(result.stdout + result.stderr).strip()]


def metric_names(expressions: Iterable[str]) -> set[str]:
    return {m for e in expressions for m in _METRIC.findall(e)}


def exported_names(families: Iterable[Any]) -> set[str]:
    """Every series name a scrape can show, from parsed metric families (prometheus_client.parser): a family's
    name and the suffixed names of its type, whether or not it has samples yet (a labelled counter nothing has
    counted yet shows only its HELP and TYPE)."""
    names: set[str] = set()
    for family in families:
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def main() -> int:
    from .promtools import ensure_promtool

    dashboard = load_dashboard()
    problems = lint_dashboard(dashboard)
    problems += parse_problems(dashboard_expressions(dashboard), ensure_promtool())
    for problem in problems:
        print(problem)
    print(f"{DASHBOARD.relative_to(REPO_ROOT)}: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
