"""Fixtures for the Kubernetes emulator tests; KUBE_EMULATOR=kmock points the fidelity suite at stock kmock 0.8."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kube_support import Api, Target, iterate, start_target


@pytest.fixture
def target() -> Iterator[Target]:
    """A fresh emulator per test, so tests never see each other's objects."""
    yield from iterate(start_target())


@pytest.fixture
def api(target: Target) -> Api:
    """A client for the emulator under test."""
    return Api(target.url)
