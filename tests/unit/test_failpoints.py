"""Failpoints: armed only by the environment, firing exactly on the N-th hit of the named point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from opsramp_aws_operator import failpoints

SCRIPT = """
import os, sys
from opsramp_aws_operator import failpoints
for i in range(1, 4):
    print(f"before {i}", flush=True)
    failpoints.hit("iam:CreateRole")
    failpoints.hit("other")
print("survived", flush=True)
"""


def run(spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != failpoints.ENV}
    if spec is not None:
        env[failpoints.ENV] = spec
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("spec", "last_line", "killed"),
    [
        (None, "survived", False),
        ("", "survived", False),
        ("iam:CreateRole", "before 1", True),
        ("iam:CreateRole@2", "before 2", True),
        ("opsramp:install, iam:CreateRole@3", "before 3", True),
        ("iam:DeleteRole", "survived", False),
    ],
)
def test_failpoint_kills_on_the_nth_hit(spec: str | None, last_line: str, killed: bool) -> None:
    """The process dies by SIGKILL right after the N-th hit of an armed point, and never otherwise."""
    result = run(spec)
    assert result.stdout.strip().splitlines()[-1] == last_line
    assert (result.returncode == -9) is killed


def test_in_process_hits_kill_only_on_the_armed_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process: unarmed points and hits before the N-th do nothing; the N-th hit sends SIGKILL to us."""
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append((pid, sig)))
    try:
        failpoints.arm("")
        for _ in range(3):
            failpoints.hit("iam:CreateRole")
        assert kills == []
        failpoints.arm("iam:CreateRole@2")
        failpoints.hit("other")
        failpoints.hit("iam:CreateRole")
        assert kills == []
        failpoints.hit("iam:CreateRole")
        assert kills == [(os.getpid(), signal.SIGKILL)]
    finally:
        failpoints.arm("")
