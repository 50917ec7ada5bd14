"""Chaos: through every fault, crash and bad input, the operators were never denied a Kubernetes request.

On the real control plane each operator runs as a chart ServiceAccount (the session's, or the peering scenario's
own) and kube-apiserver's audit log records each of its requests with the response code. Runs last.
"""

from __future__ import annotations

import pytest
from e2e_harness import Sandbox

pytestmark = [pytest.mark.chaos, pytest.mark.last]


def test_no_operator_request_was_denied(sandbox: Sandbox) -> None:
    """No request of any operator ServiceAccount got a 403 (RBAC short of what the operator needs)."""
    if sandbox.plane is None:
        pytest.skip("only the real control plane enforces RBAC (E2E_KUBE=real)")
    events = sandbox.plane.audit_events()
    assert events, "the audit log holds no request of an operator"
    denied = sorted(
        {
            f"{e['user']['username']}: {e['verb']} {ref.get('apiGroup') or 'core'}/{ref.get('resource')}"
            for e in events
            if (e.get("responseStatus") or {}).get("code") == 403 and (ref := e.get("objectRef") or {}) is not None
        }
    )
    assert denied == []
