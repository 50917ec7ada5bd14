"""Crash points for the chaos suite: the process kills itself right after a named external write.

Set `OPERATOR_FAILPOINTS` to a comma-separated list of `point` or `point@N` (the N-th time that point is
reached, default the first), e.g. `iam:CreateRole` or `opsramp:install@2`. Points are reached only after a
write succeeded: `iam:<Operation>` for every IAM/STS write, `opsramp:install|update|uninstall`,
`opsramp:create_profile|delete_profile`,
`kube:create_secret`, `kube:record_accounts` (many accounts: status.accountIds recorded). Unset (production),
`hit` is a dictionary lookup and nothing else.

SIGKILL, not an exception: the point is to prove that a process dying between any two external calls leaves
nothing duplicated or orphaned, exactly as an OOM kill or a node loss would.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

ENV = "OPERATOR_FAILPOINTS"


def _parse(raw: str) -> dict[str, int]:
    points: dict[str, int] = {}
    for raw_item in raw.split(","):
        item = raw_item.strip()
        if not item:
            continue
        name, _, count = item.partition("@")
        points[name.strip()] = int(count) if count.strip().isdigit() else 1
    return points


_armed = _parse(os.environ.get(ENV, ""))
_seen: dict[str, int] = {}
_lock = threading.Lock()


def hit(point: str) -> None:
    """Called right after a successful external write named `point`."""
    if not _armed or point not in _armed:
        return
    with _lock:
        _seen[point] = _seen.get(point, 0) + 1
        if _seen[point] != _armed[point]:
            return
    log.warning("Failpoint %s reached: killing the process (%s)", point, ENV)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(spec: str) -> None:
    """Re-read the armed points (tests in one process)."""
    global _armed  # noqa: PLW0603 - process-wide test switch
    with _lock:
        _armed = _parse(spec)
        _seen.clear()
