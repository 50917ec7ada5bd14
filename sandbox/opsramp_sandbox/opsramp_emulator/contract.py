"""Contract variants in the emulator: which answer to each open question about OpsRamp's API each tenant gives.

The switches, their values and the named profiles are the operator's own vocabulary
(`opsramp_aws_operator.opsramp.variants`), shared with `opsramp-aws-operator probe`, which names the variant of a
real tenant. A contract applies to every tenant (`default`) or to one tenant (`per_tenant`), so one emulator can
play several OpsRamp variants at once, one per tenant, the way the operator learns them: per tenant.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opsramp_aws_operator.opsramp.variants import (
    AWS_TYPE_CHOICES,
    CHOICES,
    ECHO_FIELDS,
    FULL_ECHO,
    OPENAPI_ECHO,
    PROFILES,
    Contract,
    name_of,
    profile,
)

__all__ = [
    "AWS_TYPE_CHOICES",
    "CHOICES",
    "ECHO_FIELDS",
    "FULL_ECHO",
    "OPENAPI_ECHO",
    "PROFILES",
    "Contract",
    "Contracts",
    "name_of",
    "profile",
]


@dataclass
class Contracts:
    """The default contract and per-tenant overrides; thread-safe."""

    default: Contract = field(default_factory=Contract)
    per_tenant: dict[str, Contract] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def for_tenant(self, tenant_id: str | None) -> Contract:
        with self.lock:
            if tenant_id is not None and tenant_id in self.per_tenant:
                return self.per_tenant[tenant_id]
            return self.default

    def change(self, changes: Mapping[str, Any], tenant_id: str | None = None) -> Contract:
        """Apply switches (optionally starting from `profile`) to the default or to one tenant's contract."""
        with self.lock:
            base = self.per_tenant.get(tenant_id, self.default) if tenant_id else self.default
            updated = base.with_changes(changes)
            if tenant_id:
                self.per_tenant[tenant_id] = updated
            else:
                self.default = updated
            return updated

    def clear(self, tenant_id: str | None = None) -> None:
        with self.lock:
            if tenant_id:
                self.per_tenant.pop(tenant_id, None)
            else:
                self.default = Contract()
                self.per_tenant.clear()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "default": {"name": name_of(self.default), **self.default.as_dict()},
                "tenants": {t: {"name": name_of(c), **c.as_dict()} for t, c in self.per_tenant.items()},
            }
