"""docs/sandbox.md's kubectl tour ("Explore it with kubectl"), run line by line with the real kubectl 1.37 against
`opsramp-sandbox up` on each kind of Kubernetes: the emulator and the real control plane. The commands are read
from the doc, so the doc and the test cannot drift apart."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from opsramp_sandbox.tools import ensure_kubectl

REPO = Path(__file__).resolve().parents[3]
DOC = REPO / "docs" / "sandbox.md"
MARKER = "<!-- kubectl-tour:"
CRD = REPO / "crds" / "awsintegrations.integrations.opsramp.com.yaml"
GROUP = "integrations.opsramp.com"

Result = subprocess.CompletedProcess[str]


def tour_commands() -> list[str]:
    """The commands of the doc's tour block, a heredoc kept whole with its command."""
    text = DOC.read_text()
    start = text.index("```sh\n", text.index(MARKER)) + len("```sh\n")
    lines = iter(text[start : text.index("\n```", start)].splitlines())
    commands = []
    for line in lines:
        if line.rstrip().endswith("<<EOF"):
            body = [line]
            for more in lines:
                body.append(more)
                if more == "EOF":
                    break
            commands.append("\n".join(body))
        else:
            commands.append(line)
    return commands


def readme_commands() -> list[str]:
    """The kubectl commands README.md shows a user (a `$ kubectl get` console line, `kubectl explain` in the text)."""
    text = (REPO / "README.md").read_text()
    return re.findall(r"^\$ (kubectl get [^\n]+)$", text, re.M) + re.findall(r"`(kubectl explain [^`]+)`", text)


def check_readme_command(result: Result, command: str) -> None:
    if command.startswith("kubectl get"):
        # The columns README shows are the columns the server prints.
        text = (REPO / "README.md").read_text()
        shown = text[text.index(f"$ {command}\n") :].splitlines()[1].split()
        assert result.stdout.splitlines()[0].split() == shown
        assert re.search(r"^production\s+True\s", result.stdout, re.M)
    else:
        assert "KIND:       AWSIntegration" in result.stdout and "FIELD: spec <Object>" in result.stdout


def role_description() -> str:
    """What the CRD says about spec.role: `kubectl explain` must print it."""
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    description: str = schema["properties"]["spec"]["properties"]["role"]["description"]
    return description


def check_up(kind: str) -> Callable[[Result], None]:
    def check(result: Result) -> None:
        # The first line says which Kubernetes runs, before anything is started.
        first = result.stdout.splitlines()[0]
        assert first.startswith("Kubernetes: the real control plane" if kind == "real" else "Kubernetes: the project's")
        assert f"SANDBOX_KUBE={kind}" in result.stdout and re.search(
            rf"^kube \({kind}\) .* running", result.stdout, re.M
        )

    return check


def check_explain(result: Result) -> None:
    assert "KIND:       AWSIntegration" in result.stdout and "FIELD: role <Object>" in result.stdout
    assert " ".join(role_description().split()) in " ".join(result.stdout.split())
    assert re.search(r"^  attachOpsRampPolicy\t<boolean>$", result.stdout, re.M)


def check_dry_run_apply(result: Result) -> None:
    for name in (f"awsintegration.{GROUP}/production", f"awsintegration.{GROUP}/payments-prod",
                 "secret/opsramp-api-client", "secret/opsramp-external-id"):  # fmt: skip
        assert f"{name} created (server dry run)" in result.stdout


def check_server_side_apply(result: Result) -> None:
    for name in ("secret/opsramp-api-client", "secret/opsramp-external-id", f"awsintegration.{GROUP}/production"):
        assert f"{name} serverside-applied" in result.stdout


def check_get_wide(result: Result) -> None:
    assert re.match(r"NAME\s+READY\s+REASON\s+ROLE ARN\s+INTEGRATION\s+ACCOUNTS\s+AGE\n", result.stdout)
    assert re.search(r"^production\s+True\s+\w+\s+arn:aws:iam::\d{12}:role/\S+\s+\S+\s+\d+[smh]", result.stdout, re.M)


def check_describe(result: Result) -> None:
    assert re.search(r"^Name:\s+production$", result.stdout, re.M)
    assert re.search(r"^\s+Type:\s+Ready$", result.stdout, re.M)
    # The operator's Events, as kubectl lists them under the object.
    events = result.stdout[result.stdout.index("\nEvents:") :]
    assert re.search(r"Type\s+Reason\s+Age\s+From\s+Message", events)
    assert re.search(r"^\s+Normal\s+\w+\s+\S+\s+\S+\s+\S", events, re.M)


def expectations(kind: str) -> list[tuple[str, Callable[[Result], None]]]:
    """Per command of the tour, in order: how it starts and what it must print."""
    return [
        ("opsramp-sandbox up --dir .sandbox", check_up(kind)),
        ("set -a; . .sandbox/env; set +a", lambda r: None),
        ("kubectl explain awsintegration.spec.role", check_explain),
        ("kubectl create namespace payments", lambda r: assert_equal(r.stdout, "namespace/payments created\n")),
        ("kubectl apply -f examples/ --dry-run=server", check_dry_run_apply),
        ("kubectl apply --server-side -f - <<EOF", check_server_side_apply),
        (
            "kubectl wait --for=condition=Ready awsintegration/production",
            lambda r: assert_equal(r.stdout, f"awsintegration.{GROUP}/production condition met\n"),
        ),
        ("kubectl get awsintegrations -o wide", check_get_wide),
        ("kubectl describe awsintegration production", check_describe),
        ("opsramp-sandbox down --dir .sandbox", lambda r: assert_equal(r.stdout.split(":")[0], "stopped")),
    ]


def assert_equal(actual: str, expected: str) -> None:
    assert actual == expected


def test_the_tour_is_what_the_test_expects() -> None:
    """Every command of the doc's block has an expectation here, in the same order (a new line needs a check)."""
    commands = tour_commands()
    expected = expectations("emulator")
    assert len(commands) == len(expected), commands
    for command, (start, _) in zip(commands, expected, strict=True):
        assert command.startswith(start), (command, start)


@pytest.mark.parametrize("kind", ["emulator", "real"])
def test_kubectl_tour_of_the_docs_works_on_the_sandbox(kind: str, tmp_path: Path) -> None:
    """The real kubectl, as docs/sandbox.md shows it: explain reads the CRD's schema, examples/ pass server
    validation, create namespace, server-side apply, wait for Ready, `get -o wide`, describe with Events; and
    README's kubectl commands on the same sandbox."""
    directory = tmp_path / "sandbox"
    env = {key: value for key, value in os.environ.items() if key not in ("KUBECONFIG", "OPSRAMP_SANDBOX_KUBE")}
    # kubectl and the console scripts of this venv first; kubectl's discovery and openapi cache of the test's own
    # (HOME stays: the control plane's build cache is found through it).
    env["PATH"] = os.pathsep.join([str(ensure_kubectl().parent), str(Path(sys.executable).parent), env["PATH"]])
    env["KUBECACHEDIR"] = str(tmp_path / "kube-cache")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "sandbox"), str(REPO / "operator")])
    source = ""
    up_ok = False
    try:
        for command, (start, check) in zip(tour_commands(), expectations(kind), strict=True):
            script = command.replace(".sandbox", str(directory))
            if start.startswith("opsramp-sandbox up"):
                script += f" --kube {kind}"
            elif start.startswith("set -a"):
                source = script + "\n"
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", source + script], cwd=REPO, env=env, capture_output=True,
                text=True, timeout=300 if start.startswith("opsramp-sandbox up") else 150, check=False,
            )  # fmt: skip
            log = directory / "logs" / "operator.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.is_file() else ""
            assert result.returncode == 0, f"{start}\n{result.stdout}\n{result.stderr}\noperator log:\n{tail}"
            check(result)
            up_ok = up_ok or start.startswith("opsramp-sandbox up")
            if start.startswith("kubectl get awsintegrations"):
                # README's own kubectl commands hold on the same sandbox.
                commands = readme_commands()
                assert len(commands) >= 2, commands
                for readme in commands:
                    shown = subprocess.run(["bash", "-c", source + readme], cwd=REPO, env=env, capture_output=True,
                                           text=True, timeout=60, check=False)  # fmt: skip
                    assert shown.returncode == 0, f"{readme}\n{shown.stderr}"
                    check_readme_command(shown, readme)
            if start.startswith("kubectl apply -f examples/"):
                # Validation is on: a misspelt field is refused, naming it (not dropped with a warning).
                bad = subprocess.run(
                    ["bash", "-c", source + "sed 's/regions:/regoins:/' examples/awsintegration.yaml | "
                     "kubectl apply --dry-run=server -f -"],
                    cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
                assert bad.returncode != 0 and 'unknown field "spec.regoins"' in bad.stderr, bad.stderr
    finally:
        if up_ok and (directory / "sandbox.json").is_file():
            subprocess.run([sys.executable, "-m", "opsramp_sandbox.cli", "down", "--dir", str(directory)], env=env,
                           capture_output=True, timeout=60, check=False)  # fmt: skip
