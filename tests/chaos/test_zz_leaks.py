"""Chaos: no secret anywhere — every byte every operator wrote, every Event and every recorded resource version.

The secrets are the sandbox's client secret, every wrong or revoked client secret the suite used, and every
External ID read back from the Secrets (generated or user-provided). Runs last, after every other scenario.
"""

from __future__ import annotations

import pytest
from chaos_support import OPERATORS, SECRETS, EventRecorder, leaks
from e2e_harness import ObjectRecorder

pytestmark = pytest.mark.chaos


@pytest.mark.last
def test_no_secret_in_any_output_event_or_status(recorders: tuple[ObjectRecorder, EventRecorder]) -> None:
    """None of the secret values appears in operator output, Events or any AWSIntegration version."""
    objects, events = recorders
    haystacks = [(f"operator {op.label} output", op.raw_output()) for op in OPERATORS]
    haystacks.append(("Events", "\n".join(events.texts).encode()))
    haystacks.append(("AWSIntegration versions", "\n".join(objects.texts).encode()))
    assert len(SECRETS) >= 2, "the scan has nothing to look for"
    assert sum(len(data) for _, data in haystacks) > 0
    found = leaks(haystacks, SECRETS)
    print(
        f"leak scan: {len(SECRETS)} secrets over {len(OPERATORS)} operator outputs, "
        f"{len(events.texts)} Events, {len(objects.texts)} resource versions"
    )
    assert not found, found
