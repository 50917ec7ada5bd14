"""Render the chart's Grafana dashboard from a benchmark's recorded metrics, panel by panel, into one PNG.

    python -m opsramp_sandbox.bench --n 1000 --prometheus /tmp/prom   # records every operator's /metrics
    pip install matplotlib                                             # not a dependency of the project
    python -m opsramp_sandbox.bench.render_dashboard /tmp/prom --out docs/images/dashboard.png

Starts Prometheus (Debian's package, as the benchmark recorded with) on the recorded data, runs each panel's own
queries from charts/opsramp-aws-operator/files/grafana-dashboard.json over the recorded time range (the template
variables `$job` and `$instance` match everything), and draws each panel as Grafana lays them out: so the pictures
in docs/observability.md show what the dashboard shows for a real run, and a query that returned nothing would show
as an empty panel.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from .. import dashboards, launcher
from ..promtools import ensure_prometheus

RATE_INTERVAL = "10s"  # $__rate_interval for a 2 s scrape interval: at least four scrapes


def query_range(base: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": step}
    body = requests.get(f"{base}/api/v1/query_range", params=params, timeout=60).json()
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def legend(template: str, labels: dict[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template) or json.dumps(labels)
    # A per-process series: name the benchmark phase whose operator it is (the recorder's target label).
    return f"{text} ({labels['phase']})" if "phase" in labels and "instance" in template else text


def render(directory: Path, out: Path, title: str) -> None:
    # Imported by name: matplotlib is not among the project's dependencies (pip install matplotlib to render).
    importlib.import_module("matplotlib").use("Agg")
    mdates: Any = importlib.import_module("matplotlib.dates")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    port = launcher._free_port()
    server = subprocess.Popen(
        [
            str(ensure_prometheus()),
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Prometheus did not become ready on the recorded data")
            time.sleep(0.2)
        # Where the recording is: the last two days at 20 s steps (under Prometheus's 11,000 points a query).
        now = time.time()
        found = query_range(base, "opsramp_operator_resources", now - 2 * 86400, now, 20)
        stamps = [float(v[0]) for series in found for v in series["values"]]
        if not stamps:
            raise RuntimeError(f"no opsramp_operator_resources samples in {directory}")
        # The exact range: the first and last scrape.
        probe = query_range(base, "opsramp_operator_resources", min(stamps) - 300, max(stamps), 2)
        times = [float(v[0]) for series in probe for v in series["values"]]
        start, end = min(times), max(times)
        step = max(2.0, (end - start) / 400)
        dashboard = dashboards.load_dashboard()
        panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
        rows = (len(panels) + 1) // 2
        figure, axes = plt.subplots(rows, 2, figsize=(16, 3.2 * rows), squeeze=False)
        for axis, panel in zip(axes.flat, panels, strict=False):
            for target in panel["targets"]:
                expr = dashboards.substitute(target["expr"].replace("$__rate_interval", RATE_INTERVAL))
                for series in query_range(base, expr, start, end, step):
                    xs = [datetime.fromtimestamp(float(t), UTC) for t, _ in series["values"]]
                    ys = [float(v) for _, v in series["values"]]
                    axis.plot(xs, ys, linewidth=1.2, label=legend(target.get("legendFormat", ""), series["metric"]))
            axis.set_title(f"{panel['title']}  [{panel['fieldConfig']['defaults'].get('unit', '')}]", fontsize=10)
            axis.set_xlim(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))
            axis.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
            axis.tick_params(labelsize=8)
            axis.grid(alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=7, loc="upper left")
            else:
                axis.text(0.5, 0.5, "no data", transform=axis.transAxes, ha="center", va="center", color="grey")
        for axis in list(axes.flat)[len(panels) :]:
            axis.set_visible(False)
        figure.suptitle(title, fontsize=12)
        figure.tight_layout(rect=(0, 0, 1, 0.98))
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=80)
        print(f"wrote {out} ({len(panels)} panels, {datetime.fromtimestamp(start, UTC):%H:%M:%S}-"
              f"{datetime.fromtimestamp(end, UTC):%H:%M:%S} UTC)")  # fmt: skip
    finally:
        server.terminate()
        server.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opsramp_sandbox.bench.render_dashboard", description=__doc__)
    parser.add_argument("directory", type=Path, help="the --prometheus DIR of a benchmark run")
    parser.add_argument("--out", type=Path, default=dashboards.REPO_ROOT / "docs" / "images" / "dashboard.png")
    parser.add_argument("--title", default="OpsRamp AWS operator — `make bench` run, recorded by Prometheus")
    args = parser.parse_args(argv)
    render(args.directory.resolve(), args.out, args.title)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
