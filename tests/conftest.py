"""How `make test` spreads the suite over several pytest-xdist workers.

Most of the suite waits: on an operator reconciling, on a control plane starting, on a subprocess. One process
ran it in 25-27 minutes on a 2-core machine with the CPU two-thirds idle; a few workers overlap those waits.

A worker runs a whole group, in collection order, and groups are handed out in the order they are collected
(`--no-loadscope-reorder`): the e2e shards first, then the other long files (LONG), then the rest.

- `tests/e2e` is split in two shards of about nine minutes each (E2E_FIRST_SHARD). A shard's tests share one
  sandbox and one operator process (the session fixtures of the worker that runs it). The `after_all` scans
  (no secret in any output, the operator never denied) take an `e2e_shard` argument and run once per shard, at
  its end, over what that shard's session produced. Balance the shards here when an e2e file grows.
- every other file is a group of its own, so its module- and session-scoped fixtures (a moto server, a control
  plane) are set up once, on one worker.

The groups are made by our own scheduler (`pytest_xdist_make_scheduler`), from each test's node id: xdist's
`--dist loadgroup` marks do not reach the scheduler under pytest 9 (xdist 3.8 writes the group into a node-id
attribute pytest 9 no longer reads). Without xdist (`pytest tests/unit`, TEST_WORKERS=0) nothing here changes
what runs, and the `after_all` scans run once.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

# e2e files that go to the first shard; every other e2e file goes to the second (figures: seconds alone, 2 cores).
E2E_FIRST_SHARD = frozenset(
    {
        "tests/e2e/test_burst.py",  # 250 s: its own sandbox and a burst of 40 resources under the IAM budget
        "tests/e2e/test_contract_matrix.py",  # 92 s
        "tests/e2e/test_lifecycle_controls.py",  # 88 s
        "tests/e2e/test_organizations_crash.py",  # 198 s
    }
)
E2E_SHARDS = ("e2e-1", "e2e-2")
SHARD_ARG = "e2e_shard"
# Other files of a minute or more, handed out right after the e2e shards so none of them is the last to start.
LONG = (
    "tests/sandbox/kube/test_kube_kmock_contrast.py",  # 188 s
    "tests/sandbox/bench/test_bench_smoke.py",  # 128 s
    "tests/sandbox/kube/test_kube_fidelity.py",  # 100 s
    "tests/ship/test_apply_emulator.py",  # 57 s
)
_SHARD_PARAM = re.compile(r"\[(" + "|".join(map(re.escape, E2E_SHARDS)) + r")\]$")


def group_of(nodeid: str) -> str:
    """The group a test runs in: its e2e shard, or its file."""
    path = nodeid.split("::", 1)[0]
    if not path.startswith("tests/e2e/"):
        return path
    shard = _SHARD_PARAM.search(nodeid)
    if shard:
        return shard.group(1)
    return E2E_SHARDS[0] if path in E2E_FIRST_SHARD else E2E_SHARDS[1]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes `e2e_shard` runs once in each shard's session (once in all when not distributed)."""
    if SHARD_ARG in metafunc.fixturenames:
        # Only xdist's workers collect a distributed run, and xdist names each in this variable.
        shards = E2E_SHARDS if os.environ.get("PYTEST_XDIST_WORKER") else ("all",)
        metafunc.parametrize(SHARD_ARG, shards)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        if path.startswith("tests/e2e/"):
            return 0
        return 1 + LONG.index(path) if path in LONG else 1 + len(LONG)

    # Stable: within a group (and among the rest) the order pytest and the other hooks chose stays; tests/e2e's
    # hook, which runs after this one, moves its `after_all` tests to the end, so they stay last in their shard.
    items.sort(key=rank)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        """xdist's load-by-scope scheduling, with our groups as the scopes."""

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)
