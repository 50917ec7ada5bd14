"""`make bench`: the operator against the sandbox, next to the floor, in figures.

    python -m opsramp_sandbox.bench [--n 200] [--phases floor,latency,fleet,resync,delete,ratelimited,burst]

Brings the sandbox up (the same launcher as `opsramp-sandbox up`, every emulator in its own process), puts a
counting proxy in front of moto, and measures:

- floor: `opsramp_sandbox.bench.floor` creates N integrations with the minimal API sequence (no Kubernetes,
  no framework), then runs the minimal verification reads, then cleans up;
- latency: one AWSIntegration at a time on the idle sandbox, apply -> Ready (p50, p95);
- fleet: N AWSIntegrations applied at once -> all Ready; calls per resource by API; operator CPU and peak RSS;
  then one more resource right after the burst, apply -> Ready; then kopf's reconcile-handler runs and completed
  creations per resource of the burst (from the operator's log, once it is quiet);
- resync: the unchanged fleet over several drift cycles -> writes (should be 0) and reads per pass;
- delete: the fleet deleted -> all gone, nothing left in IAM or OpsRamp;
- ratelimited: the OpsRamp emulator at the documented 50 writes (and 50 paged GETs) per window, with the window
  scaled down; 429s seen and writes achieved per window against the limit;
- burst: the operator with the sandbox's settings and OpsRamp's documented limits: the idle latency, a burst of
  --burst-n, one more resource right after it, and the creation passes per resource of the burst;
- organization: one AWSIntegration over an AWS Organization of --org-n member accounts (organization.py), OpsRamp at
  its documented write limit: time to all Ready against the write-limit floor, calls per account, RSS, delete.

Writes bench/results/latest.json and bench/results/latest.md. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from prometheus_client.parser import text_string_to_metric_families

from .. import launcher
from ..faultproxy import FaultProxy
from . import organization
from .fleet import Fleet, kube_url
from .meter import Calls, Meter

T = TypeVar("T")
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_OUT = REPO_ROOT / "bench" / "results"
PHASES = (
    "coldstart",
    "floor",
    "latency",
    "fleet",
    "resync",
    "restart",
    "delete",
    "ratelimited",
    "burst",
    "organization",
)
# The operator's worker pool (handlers.py: settings.execution.max_workers); the floor uses as many threads.
CONCURRENCY = 16
UNLIMITED = 1_000_000
DOCUMENTED_LIMITS = {"gets": 500, "paged_gets": 50, "writes": 50}


def say(text: str = "") -> None:
    print(text, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds a live process has used (from /proc), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class OperatorProcess:
    """The real operator (`opsramp-aws-operator`) as a child process, with its CPU, memory and metrics."""

    def __init__(
        self, directory: Path, env: dict[str, str], label: str, command: list[str] | None = None, **settings: str
    ) -> None:
        script = Path(sys.executable).with_name("opsramp-aws-operator")
        command = command or ([str(script)] if script.exists() else ["opsramp-aws-operator"])
        self.metrics_port = launcher._free_port()
        operator_env = {
            **launcher._python_env(),
            **env,
            "OPERATOR_OPSRAMP_AWS_ACCOUNT_ID": env["OPSRAMP_AWS_ACCOUNT_ID"],
            # The guardrails send credentials only where allowed: the sandbox's emulator by its loopback address.
            "OPERATOR_ALLOWED_OPSRAMP_HOSTS": f"*.opsramp.com,{urlsplit(env['OPSRAMP_ENDPOINT']).netloc}",
            "OPERATOR_HEALTH_PORT": str(launcher._free_port()),
            "OPERATOR_METRICS_PORT": str(self.metrics_port),
            "OPERATOR_METRICS_ADDRESS": "127.0.0.1",
            "OPERATOR_LOG_FORMAT": "json",
            **settings,
        }
        self.started = time.time()
        self.process, self.component = launcher._spawn(f"operator-{label}", command, directory, operator_env)
        self.log = Path(self.component.log)
        self.profiler: subprocess.Popen[bytes] | None = None

    def profile(self, output: Path) -> None:
        """Sample the operator with py-spy (collapsed stacks, for flame graphs) until it stops."""
        spy = Path(sys.executable).with_name("py-spy")
        # --gil: only the thread holding the GIL is sampled, so the profile shows where Python spends CPU.
        command = [str(spy), "record", "--pid", str(self.process.pid), "--format", "raw", "--rate", "50", "--gil"]
        command += ["--output", str(output), "--nonblocking"]
        self.profiler = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.process.pid)

    def rss_peak_mb(self, field: str = "VmHWM") -> float:
        """Peak resident memory (VmHWM), or the current one with field="VmRSS", in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def reconciles(self) -> float:
        """Reconcile passes so far (every result), from the operator's /metrics."""
        return self.passes()[0]

    def scrape_text(self, timeout: float = 30.0) -> str:
        """The operator's /metrics page (waits for the endpoint to answer)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    return str(response.read().decode())
            except OSError:
                if time.monotonic() > deadline or not self.alive():
                    raise
                time.sleep(0.05)

    def sample(self, name: str, **labels: str) -> float:
        """The sum of the samples of metric `name` whose labels include `labels`, from one scrape."""
        total = 0.0
        for family in text_string_to_metric_families(self.scrape_text()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def kill(self) -> None:
        """SIGKILL, as a node failure or an OOM kill would end it: no cleanup of any kind."""
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)
            self.profiler.wait(60)
            self.profiler = None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)

    def passes(self) -> tuple[float, float]:
        """(Reconcile passes finished so far, passes in progress now), from one scrape of the operator's /metrics."""
        text = self.scrape_text()
        total, running = 0.0, 0.0
        for family in text_string_to_metric_families(text):
            if family.name == "opsramp_operator_reconciles":
                total += sum(s.value for s in family.samples if s.name.endswith("_total"))
            elif family.name == "opsramp_operator_reconciles_in_progress":
                running = sum(s.value for s in family.samples)
        return total, running

    def retry_reasons(self) -> dict[str, int]:
        """How often a pass failed and was retried, by reason (from kopf's log line of each retry)."""
        reasons: Counter[str] = Counter()
        marker = "failed temporarily: "
        for line in self.log.read_text(errors="replace").splitlines() if self.log.exists() else []:
            if marker in line:
                reasons[line.split(marker, 1)[1].split(":", 1)[0].strip()] += 1
        return dict(reasons)

    def creation_runs(self, namespace: str, prefix: str) -> dict[str, Any]:
        """kopf's runs of the reconcile handler and its completed creations, per object of `namespace` named
        `prefix`* (from the JSON log: one "Handler 'reconcile' ..." line per run, whatever its outcome, and one
        "Creation is processed" line each time kopf finished handling a creation)."""
        runs: Counter[str] = Counter()
        creations: Counter[str] = Counter()
        for line in self.log.read_text(errors="replace").splitlines() if self.log.exists() else []:
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            obj = entry.get("object") or {}
            name = str(obj.get("name", ""))
            if obj.get("namespace") != namespace or not name.startswith(prefix):
                continue
            message = str(entry.get("message", ""))
            if message.startswith("Handler 'reconcile' "):
                runs[name] += 1
            elif message.startswith("Creation is processed"):
                creations[name] += 1
        return {"runs": runs, "creations": creations}

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)
            self.profiler.wait(60)
        if self.alive():
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


class Bench:
    """The sandbox, the counting proxy and the figures gathered so far."""

    def __init__(self, directory: Path, args: argparse.Namespace) -> None:
        self.directory = directory
        self.args = args
        # The emulator, whatever `up` would choose: the Kubernetes writes are counted by its /_emulator/requests.
        self.env = launcher.up(directory, operator=False, kube="emulator")
        self.proxy = FaultProxy(self.env["AWS_ENDPOINT_URL"]).start()
        # The operator and the floor reach IAM/STS through the proxy (counted); the OpsRamp emulator's own trust
        # checks go to moto directly (not counted).
        self.client_env = {**self.env, "AWS_ENDPOINT_URL": self.proxy.url}
        self.kube = kube_url(self.env["KUBECONFIG"])
        self.admin = self.env["OPSRAMP_ADMIN_URL"]
        self.meter = Meter(self.proxy, self.admin, self.kube)
        self.results: dict[str, Any] = {}
        self.extra_operators: list[OperatorProcess] = []
        self.recorder = PrometheusRecorder(args.prometheus) if args.prometheus else None

    def close(self) -> None:
        for op in self.extra_operators:
            op.stop()
        if self.recorder is not None:
            self.recorder.stop()
        self.proxy.stop()
        launcher.down(self.directory)

    def sandbox_cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each emulator process (kube, moto, opsramp) and by this process."""
        used = {c.name: cpu_seconds_of(c.pid) for c in launcher.read_state(self.directory)}
        used["bench (proxy, watch)"] = cpu_seconds_of(os.getpid())
        return used

    @staticmethod
    def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {name: round(after[name] - before.get(name, 0.0), 1) for name in after}

    def configure_opsramp(self, **changes: Any) -> None:
        requests.post(f"{self.admin}/config", json=changes, timeout=30).raise_for_status()

    def integrations(self) -> list[dict[str, Any]]:
        state = requests.get(f"{self.admin}/state", timeout=60).json()
        tenant = state["tenants"].get(self.env["OPSRAMP_TENANT_ID"]) or {}
        found: list[dict[str, Any]] = tenant.get("integrations") or []
        return found

    def roles(self, prefix: str) -> list[str]:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        names: list[str] = []
        for page in iam.get_paginator("list_roles").paginate(PathPrefix="/opsramp/"):
            names += [r["RoleName"] for r in page["Roles"] if r["RoleName"].startswith(prefix)]
        return names

    # --- phases --------------------------------------------------------------------------------------------

    def floor(self, n: int) -> None:
        say(f"\n== floor: the minimal API sequence for {n} integrations, {CONCURRENCY} threads, no Kubernetes")
        command = [sys.executable, "-m", "opsramp_sandbox.bench.floor", "create", "verify", "cleanup"]
        command += ["--n", str(n), "--concurrency", str(CONCURRENCY), "--prefix", "floor"]
        env = {**launcher._python_env(), **self.client_env}
        process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert process.stdin is not None
        assert process.stdout is not None
        phases: dict[str, tuple[dict[str, Any], Calls]] = {}
        cpu: dict[str, dict[str, float]] = {}
        try:
            for _ in range(3):
                mark = self.meter.mark()
                sandbox0, floor0 = self.sandbox_cpu(), cpu_seconds_of(process.pid)
                line = process.stdout.readline()
                if not line:
                    raise RuntimeError(f"the floor exited early with code {process.wait()}")
                outcome = json.loads(line)
                phases[outcome["phase"]] = (outcome, self.meter.since(mark))
                cpu[outcome["phase"]] = {
                    "floor": round(cpu_seconds_of(process.pid) - floor0, 1),
                    **self.cpu_delta(sandbox0, self.sandbox_cpu()),
                }
                if outcome["error_count"]:
                    raise RuntimeError(f"the floor's {outcome['phase']} phase failed: {outcome['errors']}")
                process.stdin.write("\n")
                process.stdin.flush()
        finally:
            process.stdin.close()
            process.wait(60)
        create, create_calls = phases["create"]
        verify, verify_calls = phases["verify"]
        self.results["floor_seconds"] = create["seconds"]
        self.results["floor_calls_per_resource"] = {**create_calls.per(n), "kube_writes": None}
        self.results["floor_verification_reads_per_resource"] = verify_calls.per(n)
        self.results["floor_detail"] = {
            "create": create_calls.as_dict(),
            "verify": verify_calls.as_dict(),
            "verify_seconds": verify["seconds"],
            "cpu_seconds_by_process": cpu,
        }
        say(f"   created in {create['seconds']:.1f}s; per integration {create_calls.per(n)}")
        say(f"   CPU seconds by process while creating: {cpu['create']}")
        say(f"   verification reads per integration {verify_calls.per(n)}")

    def start_operator(self, label: str, **settings: str) -> OperatorProcess:
        extra = dict(item.split("=", 1) for item in self.args.operator_env)
        command = self.args.operator_command.split() if self.args.operator_command else None
        op = OperatorProcess(self.directory, self.client_env, label, command, **settings, **extra)
        op.reconciles()  # waits for the metrics endpoint: the operator is up
        if self.recorder is not None:
            self.recorder.add(op.metrics_port, label)
        if self.args.profile:
            self.args.profile.mkdir(parents=True, exist_ok=True)
            op.profile(self.args.profile / f"operator-{label}.txt")
            say(f"   profiling the operator with py-spy into {self.args.profile}/operator-{label}.txt")
        return op

    def latency(self, op: OperatorProcess, samples: int) -> None:
        say(f"\n== latency: {samples} AWSIntegrations one at a time on the idle sandbox, apply -> Ready")
        fleet = Fleet(self.kube, "bench-latency", self.client_env)
        fleet.prepare()
        fleet.start_watch()
        times: list[float] = []
        names = [f"latency-{i:03d}" for i in range(samples)]
        try:
            for name in names:
                started = fleet.create(name)
                ready = fleet.wait([name], timeout=60)
                if ready is None:
                    raise RuntimeError(f"{name} not Ready in 60s: {fleet.not_ready([name])}\n{op.tail()}")
                times.append(ready - started)
            fleet.delete_all(names)
            if fleet.wait(names, gone=True, timeout=120) is None:
                raise RuntimeError(f"latency resources not deleted in 120s\n{op.tail()}")
        finally:
            fleet.stop_watch()
        self.results["apply_to_ready_p50_s"] = round(statistics.median(times), 3)
        self.results["apply_to_ready_p95_s"] = round(percentile(times, 0.95), 3)
        self.results["apply_to_ready_samples"] = [round(t, 3) for t in times]
        say(f"   p50 {statistics.median(times):.3f}s  p95 {percentile(times, 0.95):.3f}s  max {max(times):.3f}s")

    def fleet(self, op: OperatorProcess, n: int, *, resync: bool, delete: bool, restart: bool = False) -> None:
        say(f"\n== fleet: {n} AWSIntegrations applied at once -> all Ready")
        given = op
        rss_idle = op.rss_peak_mb("VmRSS")
        fleet = Fleet(self.kube, "bench-fleet", self.client_env)
        fleet.prepare()
        fleet.start_watch()
        names = [f"fleet-{i:05d}" for i in range(n)]
        try:
            cpu0 = op.cpu_seconds()
            sandbox0 = self.sandbox_cpu()
            mark = self.meter.mark()
            started = fleet.create_all(names)
            last = fleet.wait(names, timeout=max(300.0, n * 2.0))
            if last is None:
                stuck = fleet.not_ready(names)
                raise RuntimeError(f"{len(stuck)} not Ready: {dict(Counter(stuck.values()))}\n{op.tail()}")
            seconds = last - started
            calls = self.meter.since(mark)
            cpu = op.cpu_seconds() - cpu0
            by_process = {"operator": round(cpu, 1), **self.cpu_delta(sandbox0, self.sandbox_cpu())}
            self.results.update(
                n=n,
                seconds_to_all_ready=round(seconds, 2),
                calls_per_resource=calls.per(n),
                opsramp_429=calls.opsramp_429,
                operator_cpu_seconds=round(cpu, 1),
                operator_rss_mb_peak=round(op.rss_peak_mb(), 1),
                operator_rss_mb_when_ready=round(op.rss_peak_mb("VmRSS"), 1),
            )
            self.results["fleet_detail"] = {
                **calls.as_dict(),
                "retries_by_reason": op.retry_reasons(),
                "cpu_seconds_by_process": by_process,
            }
            rss_ready = op.rss_peak_mb("VmRSS")
            self.results["operator_rss_mb_idle"] = round(rss_idle, 1)
            # What each resource adds to a running operator's resident memory, once the fleet is Ready.
            self.results["rss_kb_per_resource"] = round((rss_ready - rss_idle) * 1024 / n, 1)
            say(f"   all Ready in {seconds:.1f}s; operator CPU {cpu:.1f}s; peak RSS {op.rss_peak_mb():.0f} MB")
            per = self.results["rss_kb_per_resource"]
            say(f"   RSS idle {rss_idle:.0f} MB -> Ready {rss_ready:.0f} MB: {per} KB per resource")
            say(f"   per resource {calls.per(n)}; OpsRamp 429s {calls.opsramp_429}")
            say(f"   passes retried, by reason: {op.retry_reasons() or 'none'}")
            say(f"   CPU seconds by process: {by_process}")
            after = self.after_burst(op, fleet)
            self.results["after_burst_apply_to_ready_s"] = after
            say(f"   one more resource right after the burst: Ready in {after:.3f}s")
            fleet.delete("after-burst")
            if fleet.wait(["after-burst"], gone=True, timeout=300) is None:
                raise RuntimeError(f"after-burst not deleted in 300s\n{op.tail()}")
            figures = self.creation_figures(op, fleet.namespace, names)
            self.results.update(figures)
            say(
                f"   creation: {figures['handler_runs_per_resource']} handler runs per resource, "
                f"{figures['resources_created_more_than_once']} resources created more than once"
            )
            if resync:
                self.resync(op, n)
            peak_before_restart = op.rss_peak_mb()
            if restart:
                op = self.restart(op, n)
            if delete:
                say(f"\n== delete: {n} AWSIntegrations deleted -> all gone")
                mark = self.meter.mark()
                started = fleet.delete_all(names)
                last = fleet.wait(names, gone=True, timeout=max(300.0, n * 2.0))
                if last is None:
                    raise RuntimeError(f"not all deleted in time\n{op.tail()}")
                calls = self.meter.since(mark)
                left_roles = self.roles("opsramp-bench-fleet-")
                left = [i for i in self.integrations() if str(i.get("displayName", "")).startswith("bench-fleet")]
                self.results["seconds_to_all_deleted"] = round(last - started, 2)
                self.results["delete_calls_per_resource"] = calls.per(n)
                self.results["left_behind"] = {"roles": len(left_roles), "integrations": len(left)}
                say(f"   all gone in {last - started:.1f}s; per resource {calls.per(n)}")
                say(f"   left behind: {len(left_roles)} roles, {len(left)} integrations")
        finally:
            fleet.stop_watch()
        if op.alive():
            self.results["operator_rss_mb_peak"] = round(max(op.rss_peak_mb(), peak_before_restart), 1)
        if op is not given:
            # The restarted operator watches every namespace: left running, it would reconcile the later phases'
            # resources beside their own operator (two limiters on one tenant: 429s, adopted installs).
            op.stop()
            self.extra_operators.remove(op)

    def restart(self, old: OperatorProcess, n: int) -> OperatorProcess:
        """The operator SIGKILLed with the fleet Ready and started again, with the production budgets scaled to the
        benchmark's resync interval (10 minutes -> --resync-interval: IAM calls a second and the OpsRamp window
        scaled alike). Over one resync interval: its calls per resource by API, how soon it is steady, the peak
        call rates against those budgets, and how the verification reads spread over the interval."""
        interval = self.args.resync_interval
        scale = 600.0 / interval
        iam_budget = round(10 * scale)
        window = 60.0 / scale
        limits = DOCUMENTED_LIMITS
        say(f"\n== restart: the operator SIGKILLed with {n} Ready resources and started again")
        say(
            f"   budgets scaled to the {interval:.0f}s resync interval: IAM {iam_budget} calls/s, OpsRamp "
            f"{limits['gets']} GETs / {limits['paged_gets']} paged GETs / {limits['writes']} writes per {window:g}s"
        )
        self.wait_quiet()
        self.results["operator_rss_mb_peak"] = round(old.rss_peak_mb(), 1)
        old.kill()
        mark = self.meter.mark()
        started = time.time()
        op = self.start_operator(
            "restart",
            OPERATOR_ROLE_SETTLE_SECONDS="0",
            OPERATOR_RESYNC_INTERVAL_SECONDS=str(interval),
            OPERATOR_IAM_CALLS_PER_SECOND=str(iam_budget),
            OPERATOR_OPSRAMP_RATE_WINDOW_SECONDS=str(window),
            OPERATOR_OPSRAMP_GETS_PER_WINDOW=str(limits["gets"]),
            OPERATOR_OPSRAMP_PAGED_GETS_PER_WINDOW=str(limits["paged_gets"]),
            OPERATOR_OPSRAMP_WRITES_PER_WINDOW=str(limits["writes"]),
        )
        self.extra_operators.append(op)
        # Steady: every resource listed, indexed and counted Ready by the new process, nothing running.
        steady = None
        deadline = started + max(120.0, n * 0.2)
        while time.time() < deadline:
            if op.sample("opsramp_operator_resources", ready="True") >= n:
                steady = time.time() - started
                break
            time.sleep(0.2)
        end = started + interval * 1.1 + 5
        time.sleep(max(0.0, end - time.time()))
        calls = self.meter.since(mark)
        iam = [at for at, action in self.proxy.arrivals(started) if at <= end]
        iam_peak = peak_in_window(iam, 1.0)
        opsramp = [
            (float(r["at"]), str(r["method"]))
            for r in self.meter.opsramp_log()[mark.opsramp_seen :]
            if "token" not in r["route"] and float(r["at"]) <= end
        ]
        gets_peak = peak_in_window([at for at, method in opsramp if method == "GET"], window)
        writes_peak = peak_in_window([at for at, method in opsramp if method != "GET"], window)
        # How the verification reads spread: IAM calls in each tenth of the window (interval * 1.1 + 5 s).
        tenths = [0] * 10
        for at in iam:
            tenths[min(9, int((at - started) / (end - started) * 10))] += 1
        self.results["restart"] = {
            "n": n,
            "window_seconds": round(end - started, 1),
            "budgets": {"iam_calls_per_second": iam_budget, "opsramp_window_seconds": window, **limits},
            "restart_calls_per_resource": {**calls.per(n), "kube_reads": round(calls.kube_reads / n, 2)},
            "restart_seconds_to_steady": round(steady, 2) if steady is not None else None,
            "peak_iam_calls_per_second": iam_peak,
            "peak_opsramp_gets_per_window": gets_peak,
            "peak_opsramp_writes_per_window": writes_peak,
            "iam_calls_by_tenth_of_window": tenths,
            "operator_rss_mb_when_steady": round(op.rss_peak_mb("VmRSS"), 1),
            "calls": calls.as_dict(),
        }
        self.results["restart_calls_per_resource"] = self.results["restart"]["restart_calls_per_resource"]
        self.results["restart_seconds_to_steady"] = self.results["restart"]["restart_seconds_to_steady"]
        say(f"   steady (all {n} counted Ready by the new process) after {steady}s")
        say(f"   over {end - started:.0f}s: per resource {self.results['restart_calls_per_resource']}")
        say(
            f"   peak IAM {iam_peak}/s (budget {iam_budget}); peak OpsRamp GETs {gets_peak} and writes {writes_peak} "
            f"per {window:g}s (budgets {limits['gets']}, {limits['writes']})"
        )
        say(f"   IAM calls by tenth of the window: {tenths}")
        return op

    def coldstart(self) -> None:
        """Import-time RSS, and seconds from the process's start to its first finished reconcile (one resource
        waiting for it)."""
        say("\n== coldstart: import-time RSS; process start -> first reconcile")
        probe = (
            "import opsramp_aws_operator.main, opsramp_aws_operator.handlers, pathlib; "
            "print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS')][0])"
        )
        out = subprocess.run(
            [sys.executable, "-c", probe], env=launcher._python_env(), capture_output=True, text=True, check=True
        ).stdout
        import_rss = int(out.split()[1]) / 1024
        fleet = Fleet(self.kube, "bench-coldstart", self.client_env)
        fleet.prepare()
        fleet.start_watch()
        try:
            fleet.create("cold-00000")
            op = OperatorProcess(
                self.directory,
                self.client_env,
                "coldstart",
                None,
                OPERATOR_NAMESPACES=fleet.namespace,
                OPERATOR_ROLE_SETTLE_SECONDS="0",
            )
            try:
                op.scrape_text(timeout=120)
                metrics_at = time.time() - op.started
                first = None
                while time.time() - op.started < 120:
                    if op.reconciles() >= 1:
                        first = time.time() - op.started
                        break
                    time.sleep(0.05)
                rss = op.rss_peak_mb("VmRSS")
                fleet.delete("cold-00000")
                fleet.wait(["cold-00000"], gone=True, timeout=120)
            finally:
                op.stop()
        finally:
            fleet.stop_watch()
        self.results["coldstart"] = {
            "import_rss_mb": round(import_rss, 1),
            "seconds_to_metrics": round(metrics_at, 2),
            "seconds_to_first_reconcile": round(first, 2) if first is not None else None,
            "rss_mb_after_first_reconcile": round(rss, 1),
        }
        self.results["import_rss_mb"] = round(import_rss, 1)
        self.results["coldstart_seconds_to_first_reconcile"] = self.results["coldstart"]["seconds_to_first_reconcile"]
        say(f"   import-time RSS {import_rss:.1f} MB; /metrics after {metrics_at:.2f}s; first reconcile after {first}s")

    def after_burst(self, op: OperatorProcess, fleet: Fleet) -> float:
        """One more resource applied the moment the burst is Ready: its apply -> Ready (s), to set beside the idle
        latency. It is named `after-burst` and left in place."""
        started = fleet.create("after-burst")
        ready = fleet.wait(["after-burst"], timeout=600)
        if ready is None:
            raise RuntimeError(f"after-burst not Ready in 600s: {fleet.not_ready(['after-burst'])}\n{op.tail()}")
        return round(ready - started, 3)

    def creation_figures(self, op: OperatorProcess, namespace: str, names: list[str]) -> dict[str, Any]:
        """kopf's reconcile-handler runs, and completed creations, per resource of a burst.

        Events still queued behind a burst are handled once the workers are free, and a second creation pass
        (issue 18) would come with them, writing status: so this counts once the operator has gone quiet.
        """
        self.wait_quiet()
        prefix = names[0].rsplit("-", 1)[0] + "-"
        counted = op.creation_runs(namespace, prefix)
        runs, creations = counted["runs"], counted["creations"]
        n = len(names)
        return {
            "handler_runs_per_resource": round(sum(runs[x] for x in names) / n, 3),
            "creations_per_resource": round(sum(creations[x] for x in names) / n, 3),
            "resources_created_more_than_once": sum(1 for x in names if creations[x] > 1),
        }

    def resync(self, op: OperatorProcess, n: int) -> None:
        cycles = self.args.resync_cycles
        interval = self.args.resync_interval
        # Each resource's resync is jittered within +-10% of the interval, counted from its last pass.
        window = cycles * interval * 1.1 + 5
        say(f"\n== resync: the unchanged fleet for {window:.0f}s ({cycles} cycles of {interval:.0f}s)")
        # Ready is written before kopf's own closing patches of the change handler (progress annotations,
        # last-handled configuration): let those land first, or they count as resync writes.
        self.wait_quiet()
        # The window opens and closes between passes: a pass cut by either end would count its reads but not
        # itself (or the other way round), which moved a small fleet's reads per pass by a tenth.
        passes0, mark = self.between_passes(op, self.meter.mark)
        cpu0 = op.cpu_seconds()
        time.sleep(window)
        passes1, calls = self.between_passes(op, lambda: self.meter.since(mark))
        passes = passes1 - passes0
        cpu = op.cpu_seconds() - cpu0
        self.results["resync_writes"] = calls.writes
        self.results["resync_passes"] = int(passes)
        self.results["resync_reads_per_resource"] = calls.per(passes) if passes else None
        self.results["resync_cpu_seconds_per_pass"] = round(cpu / passes, 4) if passes else None
        self.results["resync_detail"] = calls.as_dict()
        self.results["operator_rss_mb_after_resync"] = round(op.rss_peak_mb("VmRSS"), 1)
        say(f"   {int(passes)} passes ({passes / n:.1f} per resource); writes {calls.writes}")
        say(f"   reads per pass {calls.per(passes) if passes else '-'}; CPU {cpu:.1f}s")

    @staticmethod
    def between_passes(op: OperatorProcess, measure: Callable[[], T], timeout: float = 20.0) -> tuple[float, T]:
        """`measure()` taken while no pass runs: none in progress before it and after it, and none finished in
        between (the operator counts a pass in progress before its first call and until it is counted as done).
        Returns the passes finished so far with it. Past `timeout` it measures anyway: a big fleet's passes seldom
        all pause, and there one pass cut by the window moves the per-pass figures by little."""
        deadline = time.monotonic() + timeout
        while True:
            done, running = op.passes()
            if not running or time.monotonic() > deadline:
                value = measure()
                after, running_after = op.passes()
                if (after == done and not running_after) or time.monotonic() > deadline:
                    return done, value
            time.sleep(0.05)

    def wait_quiet(self, seconds: float = 3.0, timeout: float = 60.0) -> None:
        """Until the operator has sent no Kubernetes write for `seconds` (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        mark = self.meter.mark()
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if self.meter.since(mark).kube_writes:
                mark = self.meter.mark()
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= seconds:
                return

    def ratelimited(self, n: int, window: float) -> None:
        limits = DOCUMENTED_LIMITS
        say(f"\n== ratelimited: {n} AWSIntegrations, OpsRamp at {limits} per {window:.0f}s window")
        self.configure_opsramp(rate_window_seconds=window, rate_limits=limits)
        op = self.start_operator(
            "ratelimited",
            OPERATOR_ROLE_SETTLE_SECONDS="0",
            OPERATOR_RESYNC_INTERVAL_SECONDS="3600",
            OPERATOR_OPSRAMP_RATE_WINDOW_SECONDS=str(window),
            OPERATOR_OPSRAMP_GETS_PER_WINDOW=str(limits["gets"]),
            OPERATOR_OPSRAMP_PAGED_GETS_PER_WINDOW=str(limits["paged_gets"]),
            OPERATOR_OPSRAMP_WRITES_PER_WINDOW=str(limits["writes"]),
            OPERATOR_IAM_CALLS_PER_SECOND=str(UNLIMITED),
        )
        fleet = Fleet(self.kube, "bench-ratelimited", self.client_env)
        fleet.prepare()
        fleet.start_watch()
        names = [f"rl-{i:05d}" for i in range(n)]
        try:
            mark = self.meter.mark()
            started = fleet.create_all(names)
            last = fleet.wait(names, timeout=max(300.0, n * window))
            if last is None:
                raise RuntimeError(f"not all Ready: {fleet.not_ready(names)}\n{op.tail()}")
            calls = self.meter.since(mark)
            writes = self.meter.opsramp_writes_at(started)
            per_window: Counter[int] = Counter(int(at // window) for at, status in writes if status != 429)
            # Only full windows between the first and the last write: the ends are partial by nature.
            full = sorted(per_window)[1:-1]
            achieved = [per_window[w] for w in full]
            mean = statistics.mean(achieved) if achieved else float("nan")
            self.results["ratelimited"] = {
                "n": n,
                "window_seconds": window,
                "writes_limit_per_window": limits["writes"],
                "opsramp_429": calls.opsramp_429,
                "writes_per_full_window": achieved,
                "achieved_write_rate_ratio": round(mean / limits["writes"], 3) if achieved else None,
                "seconds_to_all_ready": round(last - started, 2),
                # Two OpsRamp writes per integration (install, discovery profile) at the write limit.
                "floor_seconds": round(2 * n / limits["writes"] * window, 1),
                "calls": calls.as_dict(),
            }
            say(f"   all Ready in {last - started:.1f}s; 429s {calls.opsramp_429}; writes per full window {achieved}")
            if achieved:
                say(f"   achieved {mean:.1f} of {limits['writes']} writes per window ({mean / limits['writes']:.0%})")
            else:
                say("   too few writes for a full window between the first and the last: no rate figure")
            fleet.delete_all(names)
            fleet.wait(names, gone=True, timeout=max(300.0, n * window))
        finally:
            fleet.stop_watch()
            op.stop()
            self.configure_opsramp(rate_window_seconds=60, rate_limits={k: UNLIMITED for k in limits})

    def burst(self, n: int, idle_samples: int) -> None:
        """The operator as `opsramp-sandbox up` runs it, with the OpsRamp limits as documented: the idle latency,
        then a burst of n and one more resource right after it, and the creation passes per resource (issue 18).

        Last of all phases: its resources are left for the sandbox's teardown (deleting them would take minutes
        at 50 OpsRamp writes a minute).
        """
        limits = DOCUMENTED_LIMITS
        say(f"\n== burst: {n} AWSIntegrations at once, the sandbox's operator settings, OpsRamp at {limits} a minute")
        self.configure_opsramp(rate_window_seconds=60, rate_limits=limits)
        fleet = Fleet(self.kube, "bench-burst", self.client_env)
        op = self.start_operator(
            "burst",
            OPERATOR_NAMESPACES=fleet.namespace,
            OPERATOR_ROLE_SETTLE_SECONDS="2",
            OPERATOR_RESYNC_INTERVAL_SECONDS="60",
        )
        fleet.prepare()
        fleet.start_watch()
        names = [f"burst-{i:05d}" for i in range(n)]
        try:
            idle: list[float] = []
            for name in (f"idle-{i:03d}" for i in range(idle_samples)):
                started = fleet.create(name)
                ready = fleet.wait([name], timeout=120)
                if ready is None:
                    raise RuntimeError(f"{name} not Ready in 120s: {fleet.not_ready([name])}\n{op.tail()}")
                idle.append(ready - started)
            mark = self.meter.mark()
            started = fleet.create_all(names)
            last = fleet.wait(names, timeout=max(600.0, n * 6.0))
            if last is None:
                stuck = fleet.not_ready(names)
                raise RuntimeError(f"{len(stuck)} not Ready: {dict(Counter(stuck.values()))}\n{op.tail()}")
            after = self.after_burst(op, fleet)
            figures = self.creation_figures(op, fleet.namespace, names)
            calls = self.meter.since(mark)
            self.results["burst"] = {
                "n": n,
                "settings": "OPERATOR_ROLE_SETTLE_SECONDS=2, default IAM and OpsRamp budgets, OpsRamp limits per 60 s",
                "idle_apply_to_ready_p50_s": round(statistics.median(idle), 3),
                "after_burst_apply_to_ready_s": after,
                "seconds_to_all_ready": round(last - started, 2),
                **figures,
                "opsramp_429": calls.opsramp_429,
                "calls": calls.as_dict(),
                "retries_by_reason": op.retry_reasons(),
            }
            say(f"   idle: apply -> Ready p50 {statistics.median(idle):.3f}s over {len(idle)}")
            say(f"   all {n} Ready in {last - started:.1f}s; one more right after: Ready in {after:.3f}s")
            say(
                f"   creation: {figures['handler_runs_per_resource']} handler runs per resource, "
                f"{figures['resources_created_more_than_once']} resources created more than once; "
                f"passes retried, by reason: {op.retry_reasons() or 'none'}"
            )
        finally:
            fleet.stop_watch()
            op.stop()
            self.configure_opsramp(rate_window_seconds=60, rate_limits={k: UNLIMITED for k in limits})


class PrometheusRecorder:
    """A Prometheus server scraping each operator the benchmark starts (every 2 s), its data kept in DIR/data."""

    def __init__(self, directory: Path) -> None:
        from ..promtools import ensure_prometheus

        self.directory = directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.targets = self.directory / "targets.json"
        self.targets.write_text("[]")
        self.entries: list[dict[str, Any]] = []
        config = self.directory / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 2s, evaluation_interval: 2s}\n"
            "scrape_configs:\n"
            "  - job_name: opsramp-aws-operator\n"
            "    file_sd_configs: [{files: ['" + str(self.targets) + "'], refresh_interval: 1s}]\n"
        )
        self.port = launcher._free_port()
        log = (self.directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(ensure_prometheus()),
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=30d",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        say(f"   recording the operators' metrics with Prometheus on 127.0.0.1:{self.port} into {self.directory}")

    def add(self, port: int, label: str) -> None:
        self.entries.append({"targets": [f"127.0.0.1:{port}"], "labels": {"phase": label}})
        self.targets.write_text(json.dumps(self.entries))

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def peak_in_window(times: list[float], window: float) -> int:
    """The most of `times` (seconds) inside any window of `window` seconds: what a sliding-window limit bounds."""
    ordered = sorted(times)
    peak, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def write_results(results: dict[str, Any], out: Path, name: str = "latest") -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    md_path = out / f"{name}.md"
    md_path.write_text(markdown(results))
    return json_path, md_path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Benchmark results ({r.get('when', '')})",
        "",
        f"Machine: {r.get('machine', '')}. Command: `{r.get('command', '')}`.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key in (
        "n",
        "seconds_to_all_ready",
        "floor_seconds",
        "overhead_ratio",
        "opsramp_429",
        "resync_writes",
        "resync_passes",
        "operator_rss_mb_peak",
        "operator_rss_mb_idle",
        "operator_rss_mb_when_ready",
        "rss_kb_per_resource",
        "operator_rss_mb_after_resync",
        "operator_cpu_seconds",
        "apply_to_ready_p50_s",
        "apply_to_ready_p95_s",
        "after_burst_apply_to_ready_s",
        "handler_runs_per_resource",
        "creations_per_resource",
        "resources_created_more_than_once",
        "seconds_to_all_deleted",
    ):
        if key in r:
            lines.append(f"| `{key}` | {_cell(r[key])} |")
    apis = ("iam_reads", "iam_writes", "sts", "opsramp_gets", "opsramp_writes", "kube_writes")
    rows = [
        ("calls_per_resource (fleet creation)", r.get("calls_per_resource")),
        ("floor_calls_per_resource", r.get("floor_calls_per_resource")),
        ("resync_reads_per_resource (per pass)", r.get("resync_reads_per_resource")),
        ("floor_verification_reads_per_resource", r.get("floor_verification_reads_per_resource")),
        ("delete_calls_per_resource", r.get("delete_calls_per_resource")),
        ("restart_calls_per_resource (one resync interval)", r.get("restart_calls_per_resource")),
    ]
    lines += ["", "| calls per resource | " + " | ".join(apis) + " |", "|---" * (len(apis) + 1) + "|"]
    for label, values in rows:
        if values:
            lines.append(f"| {label} | " + " | ".join(_cell(values.get(a)) for a in apis) + " |")
    restart = r.get("restart")
    if restart:
        budgets = restart["budgets"]
        lines += [
            "",
            f"Restart: the operator SIGKILLed with {restart['n']} Ready resources and started again, budgets scaled to "
            f"the resync interval (IAM {budgets['iam_calls_per_second']} calls/s, OpsRamp {budgets['gets']} GETs and "
            f"{budgets['writes']} writes per {budgets['opsramp_window_seconds']:g}s).",
            "",
            "| figure | value |",
            "|---|---|",
        ]
        for key in (
            "restart_seconds_to_steady",
            "peak_iam_calls_per_second",
            "peak_opsramp_gets_per_window",
            "peak_opsramp_writes_per_window",
            "iam_calls_by_tenth_of_window",
            "operator_rss_mb_when_steady",
            "window_seconds",
        ):
            lines.append(f"| `{key}` | {_cell(restart.get(key))} |")
    cold = r.get("coldstart")
    if cold:
        lines += ["", "Cold start:", "", "| figure | value |", "|---|---|"]
        for key in (
            "import_rss_mb",
            "seconds_to_metrics",
            "seconds_to_first_reconcile",
            "rss_mb_after_first_reconcile",
        ):
            lines.append(f"| `{key}` | {_cell(cold.get(key))} |")
    limited = r.get("ratelimited")
    if limited:
        lines += [
            "",
            f"Rate-limited mode: {limited['n']} resources, OpsRamp at {limited['writes_limit_per_window']} writes per "
            f"{limited['window_seconds']:g}s window (the documented 50 a minute, window scaled down).",
            "",
            "| figure | value |",
            "|---|---|",
            f"| `opsramp_429` | {limited['opsramp_429']} |",
            f"| writes per full window | {limited['writes_per_full_window']} |",
            f"| `achieved_write_rate_ratio` | {_cell(limited['achieved_write_rate_ratio'])} |",
            f"| seconds to all Ready (floor at the limit) | {limited['seconds_to_all_ready']} "
            f"({limited['floor_seconds']}) |",
        ]
    org = r.get("organization")
    if org:
        lines += [
            "",
            f"Organization: one AWSIntegration over {org['accounts']} member accounts, OpsRamp at "
            f"{org['writes_limit_per_window']} writes per {org['window_seconds']:g}s window, IAM/STS at "
            f"{org['iam_calls_per_second']} calls/s.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| seconds to all accounts Ready | {org['seconds_to_all_ready']} |",
            f"| write-limit floor / IAM floor (s) | {org['write_limit_floor_seconds']} / {org['iam_floor_seconds']} |",
            f"| calls per account | {_cell(org['calls_per_account'])} |",
            f"| floor calls per account | {_cell(org['floor_calls_per_account'])} |",
            f"| `opsramp_429` | {org['opsramp_429']} |",
            f"| operator peak RSS (MiB) | {org['operator_peak_rss_mb']} |",
            f"| seconds to deleted / accounts with a role left | {org.get('seconds_to_deleted')} / "
            f"{org.get('accounts_with_a_role_left')} |",
        ]
    burst = r.get("burst")
    if burst:
        lines += [
            "",
            f"Burst: {burst['n']} resources at once with the sandbox's operator settings ({burst['settings']}).",
            "",
            "| figure | value |",
            "|---|---|",
        ]
        for key in (
            "idle_apply_to_ready_p50_s",
            "after_burst_apply_to_ready_s",
            "seconds_to_all_ready",
            "handler_runs_per_resource",
            "creations_per_resource",
            "resources_created_more_than_once",
            "opsramp_429",
        ):
            lines.append(f"| `{key}` | {_cell(burst.get(key))} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opsramp_sandbox.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_N", "200")), help="fleet size")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument("--resync-interval", type=float, default=60.0, help="the operator's resync interval (s)")
    parser.add_argument("--resync-cycles", type=int, default=2)
    parser.add_argument("--ratelimited-n", type=int, default=400)
    parser.add_argument("--rate-window", type=float, default=6.0, help="the scaled-down OpsRamp rate window (s)")
    parser.add_argument("--burst-n", type=int, default=100, help="size of the burst phase's burst")
    parser.add_argument("--burst-idle-samples", type=int, default=5)
    parser.add_argument("--org-n", type=int, default=200, help="member accounts of the organization phase")
    parser.add_argument("--org-iam-per-second", type=int, default=10, help="the operator's IAM/STS budget there")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--name", default="latest", help="file name of the results in --out (NAME.json, NAME.md)")
    parser.add_argument(
        "--prometheus",
        type=Path,
        metavar="DIR",
        help="record every operator's /metrics with a Prometheus server (Debian's package) into DIR, for "
        "`python -m opsramp_sandbox.bench.render_dashboard DIR` (docs/observability.md)",
    )
    parser.add_argument(
        "--operator-env", action="append", default=[], metavar="NAME=VALUE", help="extra environment of the operator"
    )
    parser.add_argument(
        "--operator-command", help="run the operator with this command line instead (e.g. under a memory profiler)"
    )
    parser.add_argument(
        "--profile", type=Path, help="sample the operator with py-spy (pip install py-spy) into this folder"
    )
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phases: {', '.join(unknown)}")

    with tempfile.TemporaryDirectory(prefix="opsramp-bench-") as scratch:
        bench = Bench(Path(scratch), args)
        results = bench.results
        results.update(
            when=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            machine=f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.machine()}",
            command=" ".join(["python -m opsramp_sandbox.bench", *(argv if argv is not None else sys.argv[1:])]),
            concurrency=CONCURRENCY,
            resync_interval_seconds=args.resync_interval,
        )
        try:
            # The main run has no rate limits anywhere (emulator and operator alike), and IAM propagation delay 0.
            bench.configure_opsramp(propagation_delay_seconds=0, rate_limits={k: UNLIMITED for k in DOCUMENTED_LIMITS})
            if "coldstart" in phases:
                bench.coldstart()
            if "floor" in phases:
                bench.floor(args.n)
            if {"latency", "fleet"} & set(phases):
                op = bench.start_operator(
                    "main",
                    OPERATOR_ROLE_SETTLE_SECONDS="0",
                    OPERATOR_RESYNC_INTERVAL_SECONDS=str(args.resync_interval),
                    OPERATOR_OPSRAMP_GETS_PER_WINDOW=str(UNLIMITED),
                    OPERATOR_OPSRAMP_PAGED_GETS_PER_WINDOW=str(UNLIMITED),
                    OPERATOR_OPSRAMP_WRITES_PER_WINDOW=str(UNLIMITED),
                    OPERATOR_IAM_CALLS_PER_SECOND=str(UNLIMITED),
                )
                try:
                    if "latency" in phases:
                        bench.latency(op, args.latency_samples)
                    if "fleet" in phases:
                        bench.fleet(
                            op,
                            args.n,
                            resync="resync" in phases,
                            delete="delete" in phases,
                            restart="restart" in phases,
                        )
                finally:
                    op.stop()
            if "ratelimited" in phases:
                bench.ratelimited(args.ratelimited_n, args.rate_window)
            if "organization" in phases:
                results["organization"] = organization.run(bench, args.org_n, args.rate_window, args.org_iam_per_second)
            if "burst" in phases:
                bench.burst(args.burst_n, args.burst_idle_samples)
        finally:
            bench.close()
        if "floor_seconds" in results and "seconds_to_all_ready" in results:
            results["overhead_ratio"] = round(results["seconds_to_all_ready"] / results["floor_seconds"], 2)
        json_path, md_path = write_results(results, args.out, args.name)
    say("")
    say(md_path.read_text())
    shown = json_path.relative_to(REPO_ROOT) if json_path.is_relative_to(REPO_ROOT) else json_path
    say(f"Written: {shown}, {md_path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
