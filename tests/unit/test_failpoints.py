"""Failpoints: armed only by the environment, firing exactly on the N-th hit of the named point."""

from __future__ import annotations

import os
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


def test_unarmed_hit_is_a_no_op() -> None:
    """In-process, with nothing armed, hitting points does nothing."""
    failpoints.arm("")
    for _ in range(3):
        failpoints.hit("iam:CreateRole")
