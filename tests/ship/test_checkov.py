"""checkov 3.3.30 on the rendered chart, on deploy/ and on the Dockerfile: no failed check, every skip written down."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ship_support import CHART, DEPLOY, ROOT, Manifest, Renderer, by_kind, one

# checkov lives in its own venv (its pins clash with constraints.txt); `make checkov-venv` builds it and
# `make test` depends on that target, so a missing venv is a broken setup, not a reason to skip.
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
CHECKOV_VERSION = "3.3.30"
NETWORKPOLICY_VALUES = CHART / "ci" / "networkpolicy-values.yaml"
DOCKERFILE = ROOT / "Dockerfile"
README = CHART / "README.md"
SKIP_PREFIX = "checkov.io/skip"
K8S_VERSIONS = ("1.29.0", "1.37.0")

# One scan per rendering: checkov's graph checks link objects by namespace and labels, so two renderings of the
# same release in one directory would vouch for each other (a NetworkPolicy in one covering the other's pod).
Scan = tuple[str, list[str]]  # (framework, target arguments)
Report = dict[str, Any]


def security_scanner_rows() -> dict[str, str]:
    """The chart README's "Security scanners" table as check id -> reason."""
    text = README.read_text()
    section = text.split("## Security scanners", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| (CKV\w+) \([^)]*\) \| (.+?) \|$", section, flags=re.M))


def dockerfile_skips() -> dict[str, str]:
    """The Dockerfile's `# checkov:skip=ID: reason` comments as check id -> reason."""
    return dict(re.findall(r"^#\s*checkov:skip=(CKV\w+):\s*(\S.*)$", DOCKERFILE.read_text(), flags=re.M))


def annotations_of(docs: list[Manifest]) -> Iterator[tuple[str, str, str]]:
    """Every (object, key, value) annotation in the documents, pod templates included."""
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        metas = [doc["metadata"], doc.get("spec", {}).get("template", {}).get("metadata", {})]
        for meta in metas:
            for key, value in (meta.get("annotations") or {}).items():
                yield name, key, str(value)


def write_render(docs: list[Manifest], directory: Path) -> Path:
    """Write one rendering as a multi-document YAML file in its own directory (checkov scans directories)."""
    directory.mkdir(parents=True)
    (directory / "rendered.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


@pytest.fixture(scope="module")
def checkov() -> Path:
    """The checkov executable of .venv-checkov; fails (not skips) when the venv was never built."""
    if not CHECKOV.exists():
        pytest.fail(f"{CHECKOV} is missing: run `make checkov-venv` (`make test` builds it first)")
    return CHECKOV


@pytest.fixture(scope="module")
def networkpolicy_docs(render: Renderer) -> list[Manifest]:
    """The chart rendered with the opt-in NetworkPolicy (ci/networkpolicy-values.yaml)."""
    return render(NETWORKPOLICY_VALUES)


@pytest.fixture(scope="module")
def runs(
    checkov: Path,
    tmp_path_factory: pytest.TempPathFactory,
    default_docs: list[Manifest],
    namespaced_docs: list[Manifest],
    networkpolicy_docs: list[Manifest],
) -> dict[str, subprocess.CompletedProcess[str]]:
    """checkov's run per scan; the scans go side by side, since each spends seconds importing checkov."""
    work = tmp_path_factory.mktemp("checkov")
    # deploy/ without deploy/argocd (the Argo CD files are not what `kubectl apply -k deploy/` installs).
    deploy_copy = work / "deploy"
    deploy_copy.mkdir()
    for path in DEPLOY.glob("*.yaml"):
        shutil.copy(path, deploy_copy / path.name)
    scans: dict[str, Scan] = {
        "default": ("kubernetes", ["-d", str(write_render(default_docs, work / "default"))]),
        "namespaced": ("kubernetes", ["-d", str(write_render(namespaced_docs, work / "namespaced"))]),
        "networkpolicy": ("kubernetes", ["-d", str(write_render(networkpolicy_docs, work / "networkpolicy"))]),
        "deploy": ("kubernetes", ["-d", str(deploy_copy)]),
        "dockerfile": ("dockerfile", ["-f", str(DOCKERFILE)]),
    }
    running = {
        name: subprocess.Popen(
            [str(checkov), "--skip-download", "--compact", "--framework", framework, *target, "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (framework, target) in scans.items()
    }
    done: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        for name, proc in running.items():
            stdout, stderr = proc.communicate(timeout=240)
            done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    finally:
        for proc in running.values():  # only after a timeout: never leave a scan running past the tests
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def report_of(runs: dict[str, subprocess.CompletedProcess[str]], scan: str) -> Report:
    """checkov's JSON report of one scan; fails with checkov's traceback when it did not finish its scan."""
    run = runs[scan]
    # Exit 1 means "failed checks", which the tests report by id; anything else is checkov breaking (a crash,
    # such as the one on a second '=' in a skip annotation, prints a traceback and no JSON).
    assert run.returncode in (0, 1), f"checkov ({scan}) exited {run.returncode}:\n{run.stderr[-3000:]}"
    report = json.loads(run.stdout)
    # A single framework prints one report (a list only for several); keep the shape uniform.
    (single,) = report if isinstance(report, list) else [report]
    return dict(single)


@pytest.fixture(scope="module")
def reports(runs: dict[str, subprocess.CompletedProcess[str]]) -> dict[str, Report]:
    """Every scan's report (fails when any scan broke)."""
    return {scan: report_of(runs, scan) for scan in runs}


def checks(report: Report, kind: str) -> list[dict[str, Any]]:
    """The passed, failed or skipped checks of one report."""
    return list(report["results"][f"{kind}_checks"])


@pytest.mark.parametrize("scan", ["default", "namespaced", "networkpolicy", "deploy", "dockerfile"])
def test_checkov_finds_no_failed_check(runs: dict[str, subprocess.CompletedProcess[str]], scan: str) -> None:
    """checkov 3.3.30 scans the target, parses every object and reports no failed check."""
    report = report_of(runs, scan)
    summary = report["summary"]
    assert summary["checkov_version"] == CHECKOV_VERSION
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] > 0 and summary["passed"] > 0, summary
    failed = [f"{c['check_id']} {c['check_name']} on {c['resource']}" for c in checks(report, "failed")]
    assert failed == [], "\n".join(failed)


@pytest.mark.parametrize("scan", ["default", "namespaced", "networkpolicy", "deploy"])
def test_manifest_skips_are_written_down_in_the_chart(
    runs: dict[str, subprocess.CompletedProcess[str]], scan: str
) -> None:
    """Each check checkov skipped on the manifests has its reason in the annotation and a row in the chart README."""
    rows = security_scanner_rows()
    for check in checks(report_of(runs, scan), "skipped"):
        reason = check["check_result"].get("suppress_comment") or ""
        assert check["check_id"] in rows, f"{check['check_id']} skipped but not in the README's Security scanners"
        # checkov substitutes "No comment provided" when an annotation carries an id alone.
        assert len(reason) > 20 and reason != "No comment provided", (check["check_id"], reason)


def test_dockerfile_skips_are_written_down(runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    """Each check checkov skipped on the Dockerfile has a reason in its skip comment and a row in the chart README."""
    rows = security_scanner_rows()
    comments = dockerfile_skips()
    skipped = {c["check_id"] for c in checks(report_of(runs, "dockerfile"), "skipped")}
    assert skipped == set(comments), (skipped, comments)
    for check_id in skipped:
        assert check_id in rows, f"{check_id} skipped in the Dockerfile but not in the README's Security scanners"
        assert len(comments[check_id]) > 20, comments[check_id]


def test_readme_lists_only_what_checkov_skips(reports: dict[str, Report]) -> None:
    """The README's Security scanners table has no stale row: every check it lists is one checkov skips."""
    skipped = {c["check_id"] for report in reports.values() for c in checks(report, "skipped")}
    assert set(security_scanner_rows()) == skipped


def test_networkpolicy_satisfies_checkov_without_a_skip(
    reports: dict[str, Report], networkpolicy_docs: list[Manifest]
) -> None:
    """With networkPolicy.enabled, CKV2_K8S_6 passes on its own; by default it is skipped, never failed."""
    annotations = one(networkpolicy_docs, "Deployment")["metadata"]["annotations"]
    assert not any(v.startswith("CKV2_K8S_6=") for k, v in annotations.items() if k.startswith(SKIP_PREFIX))
    assert "CKV2_K8S_6" in {c["check_id"] for c in checks(reports["networkpolicy"], "passed")}
    assert "CKV2_K8S_6" in {c["check_id"] for c in checks(reports["default"], "skipped")}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_networkpolicy_render_validates(networkpolicy_docs: list[Manifest], version: str) -> None:
    """The opt-in NetworkPolicy is valid under --strict and selects exactly the operator pod's labels."""
    (policy,) = by_kind(networkpolicy_docs, "NetworkPolicy")
    kubernetes_validate.validate(policy, version, strict=True)
    pod_labels = one(networkpolicy_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    egress_ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")} == egress_ports


def test_no_networkpolicy_by_default(default_docs: list[Manifest], namespaced_docs: list[Manifest]) -> None:
    """The NetworkPolicy is opt-in: neither the default nor the namespaced render carries one."""
    assert by_kind(default_docs, "NetworkPolicy") == []
    assert by_kind(namespaced_docs, "NetworkPolicy") == []


def test_skip_annotations_have_exactly_one_equals_sign(
    default_docs: list[Manifest], namespaced_docs: list[Manifest], networkpolicy_docs: list[Manifest]
) -> None:
    """Every checkov.io/skip* value is `ID=reason` with one '=' (checkov's split("=") crashes on a second)."""
    seen = 0
    for docs in (default_docs, namespaced_docs, networkpolicy_docs):
        for name, key, value in annotations_of(docs):
            if key.startswith(SKIP_PREFIX):
                seen += 1
                assert value.count("=") == 1, f"{name} {key}: {value!r}"
                assert re.fullmatch(r"CKV2?_[A-Z0-9]+_\d+", value.partition("=")[0]), f"{name} {key}: {value!r}"
    assert seen > 0
