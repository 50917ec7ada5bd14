"""No secret leaks: after every other e2e test, scan all the operator printed and wrote for secret values."""

from __future__ import annotations

import base64
import json

import pytest
from e2e_harness import ALL_OPERATORS, SECRETS_SEEN, Kube, ObjectRecorder, Operator, Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.after_all]


def _external_ids_in_cluster(kube: Kube) -> set[str]:
    found = set()
    for secret in kube.core.list_secret_for_all_namespaces().items:
        raw = (secret.data or {}).get("externalId")
        if raw:
            found.add(base64.b64decode(raw).decode())
    return found


def test_no_secret_in_output_events_or_status(
    sandbox: Sandbox, kube: Kube, operator_process: Operator, recorder: ObjectRecorder, e2e_shard: str
) -> None:
    """The client secrets and every External ID appear in no operator output, Event or AWSIntegration version.

    Runs at the end of each e2e shard (tests/conftest.py), over what that shard's session produced."""
    del e2e_shard
    secrets = {s for s in SECRETS_SEEN | _external_ids_in_cluster(kube) if s}
    assert sandbox.client_secret in secrets
    assert len(secrets) > 1, "the suite should have seen at least one External ID"

    outputs = [op.output() for op in ALL_OPERATORS]
    # An operator stopped right after it started may have printed nothing (the session one, when the shard's first
    # module takes an exclusive operator); the scan must still have read the others' output.
    assert any(outputs), "the operator processes should have logged something"
    events = kube.api_client.sanitize_for_serialization(kube.core.list_event_for_all_namespaces().items)
    objects = kube.all_objects()
    haystacks = {
        "operator output": "\n".join(outputs),
        "events": json.dumps(events),
        "AWSIntegrations (every version seen)": "\n".join(recorder.texts) + json.dumps(objects),
    }
    print(
        f"scanned {len(secrets)} secrets in {len(outputs)} operator logs ({len(haystacks['operator output'])} chars), "
        f"{len(events)} events and {len(recorder.texts)} object versions"
    )
    assert recorder.texts, "the recorder should have seen the suite's AWSIntegrations"
    leaks = [(where, secret[:4] + "…") for where, text in haystacks.items() for secret in secrets if secret in text]
    assert leaks == []
