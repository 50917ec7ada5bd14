"""External ID rotation without a monitoring gap: which External IDs the trust accepts and which one OpsRamp gets.

A rotation starts when the External ID in the Secret is not the one OpsRamp was last given (`status.externalIdDigest`,
a digest keyed by the resource's UID: values never leave the Secrets and the trust policy). Its phases:

1. Overlapping: the trust accepts the old and the new External ID; OpsRamp keeps the old one while IAM propagates.
2. Switching: OpsRamp is moved to the new one (an update, or a reinstall where the tenant does not apply credential
   changes on update; the client's per-tenant dialect decides).
3. Verifying: the trust still accepts both until OpsRamp's verdict after the switch says it works (`Monitoring`).
4. Completed: the old one is dropped from the trust.

A rotation that cannot complete (OpsRamp refuses the new External ID, or cannot assume the role with it once IAM
has settled) is RolledBack: OpsRamp goes back to the old one first, then the trust accepts the old one alone, and it
stays there, saying why, until the Secret changes again or the rotate-external-id annotation asks for another try.
The old value is read from the role's own trust policy, the only place besides OpsRamp that holds it.

Pure: the service reads the role's trust only when a rotation is under way (`RotationState.needs_trust`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

from .conditions import format_time
from .errors import NeedsAttention

ACTIVE_PHASES: Final = frozenset({"Overlapping", "Switching", "Verifying"})
# What OpsRamp answers when it cannot work with the new External ID (a refusal, or a role it cannot assume once the
# grace for IAM's propagation is over): reasons to roll back rather than wait.
ROLLBACK_REASONS: Final = frozenset({"OpsRampCannotAssumeRole", "OpsRampRejected"})


def digest_of(uid: str, value: str) -> str:
    """A digest of an External ID, keyed by the resource's UID (one resource's digest says nothing of another's)."""
    return "sha256:" + hashlib.sha256(f"{uid}\n{value}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Rotation:
    """This pass's decision: the External ID OpsRamp gets and the ones the trust accepts (secrets: no repr)."""

    send: str = field(repr=False)
    # The External IDs the trust accepts; the first is the one the role is checked against (adoption, BYO).
    trust: tuple[str, ...] = field(repr=False)
    send_digest: str
    # The credential must go to OpsRamp although nothing it shows differs (its External ID is another).
    force: bool = False
    # A rotation is under way in this pass (Overlapping or Verifying): monitoring decides whether it completes.
    switching: bool = False
    # Rolled back earlier: running on the old External ID until the Secret changes or another try is asked for.
    holding: bool = False
    # status.externalIdRotation to write; None leaves it as it is.
    status: dict[str, Any] | None = None
    old: str | None = field(default=None, repr=False)
    old_digest: str | None = None

    @property
    def from_digest(self) -> str:
        return str((self.status or {}).get("fromDigest", ""))

    @property
    def to_digest(self) -> str:
        return str((self.status or {}).get("toDigest", ""))

    def phase(self, name: str) -> Rotation:
        return replace(self, status={**(self.status or {}), "phase": name})

    def completed(self) -> Rotation:
        count = int((self.status or {}).get("count") or 0) + 1
        return replace(
            self,
            trust=(self.send,),
            switching=False,
            status={**(self.status or {}), "phase": "Completed", "message": "", "count": count},
        )

    def rolled_back(self, cause: NeedsAttention) -> Rotation:
        assert self.old is not None and self.old_digest is not None
        message = (
            f"The External ID rotation ({self.from_digest} to {self.to_digest}) could not complete and was rolled "
            f"back: OpsRamp is on the old External ID again and the trust accepts only it. Cause: {cause.reason}: "
            f"{cause.message} Fix the new External ID (or restore the old one in the Secret); to try the same one "
            "again, set the annotation integrations.opsramp.com/rotate-external-id to a new value."
        )
        return replace(
            self,
            send=self.old,
            trust=(self.old,),
            send_digest=self.old_digest,
            force=True,
            switching=False,
            holding=True,
            status={**(self.status or {}), "phase": "RolledBack", "message": message[:4000]},
        )


@dataclass(frozen=True)
class RotationState:
    """What status says of the External ID, beside the value in the Secret now."""

    uid: str
    desired: str = field(repr=False)
    desired_digest: str
    applied_digest: str | None
    previous: Mapping[str, Any] | None
    # The rotate-external-id annotation now, and the value a pass last acted on (status.handledRotationRequest).
    request: str | None
    handled: str | None
    now: datetime

    @classmethod
    def of(
        cls,
        uid: str,
        desired: str,
        applied_digest: str | None,
        previous: Mapping[str, Any] | None,
        request: str | None,
        handled: str | None,
        now: datetime,
    ) -> RotationState:
        return cls(uid, desired, digest_of(uid, desired), applied_digest, previous, request, handled, now)

    @property
    def new_request(self) -> bool:
        """The annotation asks for a rotation (or another try) no pass has acted on yet."""
        return self.request is not None and self.request != self.handled

    @property
    def _phase(self) -> str | None:
        return None if self.previous is None else str(self.previous.get("phase") or "") or None

    def _holds(self) -> bool:
        """Rolled back from this very External ID, and no new try asked for."""
        previous = self.previous or {}
        return self._phase == "RolledBack" and previous.get("toDigest") == self.desired_digest and not self.new_request

    @property
    def needs_trust(self) -> bool:
        """Whether deciding needs the External IDs the role's trust accepts now (a rotation is under way or due)."""
        if self._phase in ACTIVE_PHASES or self._holds():
            return True
        return self.applied_digest is not None and self.applied_digest != self.desired_digest

    def decide(self, trust_ids: frozenset[str] | None, *, brought: bool = False) -> Rotation:
        """This pass's External IDs, given the ones the trust accepts now (None: not read, nothing under way)."""
        new, d_new = self.desired, self.desired_digest
        changed = self.applied_digest is not None and self.applied_digest != d_new
        if brought or trust_ids is None:
            # A brought role's trust is its owner's to change; OpsRamp just follows the Secret.
            return Rotation(send=new, trust=(new,), send_digest=d_new, force=changed)

        def value(digest: Any) -> str | None:
            return next((v for v in trust_ids if digest_of(self.uid, v) == digest), None)

        previous = dict(self.previous or {})
        if self._holds():
            old = value(previous.get("fromDigest"))
            if old is not None:
                return Rotation(
                    send=old,
                    trust=(old,),
                    send_digest=str(previous["fromDigest"]),
                    force=self.applied_digest != previous.get("fromDigest"),
                    holding=True,
                )
        if self._phase in ACTIVE_PHASES and previous.get("toDigest") == d_new:
            from_digest = previous.get("fromDigest")
            started = previous.get("startedTime") or format_time(self.now)
            request = previous.get("request")
        else:
            from_digest = self.applied_digest
            started = format_time(self.now)
            request = self.request if self.new_request else None
        old = value(from_digest) if from_digest else None
        if old is None or old == new:
            # Nothing to overlap with (the trust lost the old one, or nothing was ever applied): straight to the
            # new one, as before rotations existed.
            return Rotation(send=new, trust=(new,), send_digest=d_new, force=changed or new not in trust_ids)
        on_new = self.applied_digest == d_new
        status = {
            "phase": "Verifying" if on_new else "Overlapping",
            "fromDigest": from_digest,
            "toDigest": d_new,
            "startedTime": started,
            "message": "",
            "count": int(previous.get("count") or 0),
        }
        if request is not None:
            status["request"] = request[:256]
        return Rotation(
            send=new,
            trust=(new, old),
            send_digest=d_new,
            force=not on_new,
            switching=True,
            status=status,
            old=old,
            old_digest=str(from_digest),
        )
