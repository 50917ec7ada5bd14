"""Which reconcile pass a log line belongs to: the resource and a pass id on every line logged during the pass.

A pass runs in one worker thread (from a kopf handler or the resync scheduler) and every module logs through the
standard `logging` module, so a context variable set for the pass's duration reaches every line: the service's,
the adapters' and the SDKs'. The operator's log formatter prints it (`object` and `pass` in JSON).
"""

from __future__ import annotations

import contextvars
import logging
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

_CURRENT: contextvars.ContextVar[tuple[dict[str, str], str] | None] = contextvars.ContextVar(
    "opsramp_pass", default=None
)


def new_pass_id() -> str:
    """Short and unique enough to grep for one pass among a fleet's."""
    return secrets.token_hex(4)


@contextmanager
def in_pass(namespace: str, name: str, uid: str, pass_id: str) -> Iterator[str]:
    token = _CURRENT.set(({"namespace": namespace, "name": name, "uid": uid}, pass_id))
    try:
        yield pass_id
    finally:
        _CURRENT.reset(token)


def current() -> tuple[Mapping[str, str], str] | None:
    return _CURRENT.get()


class PassContext(logging.Filter):
    """Adds `pass_id` (and kopf's `k8s_ref` when the line has none) to each record logged inside a pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        found = _CURRENT.get()
        if found is not None:
            ref, pass_id = found
            record.pass_id = pass_id
            if not isinstance(getattr(record, "k8s_ref", None), dict):
                record.k8s_ref = dict(ref)
        return True


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The pass fields of a record for the JSON formatter (empty outside a pass)."""
    pass_id = getattr(record, "pass_id", None)
    return {"pass": pass_id} if pass_id else {}
