"""Discovery profiles (OpenAPI `/policies/discovery`): what OpsRamp discovers and manages through an integration.

Without a profile an installed AWS integration discovers nothing, so the operator keeps one per integration: the
resource types and tag filters from the spec, a schedule, and whether discovered resources are managed ("MANAGE
DEVICE"). `profile_body` is the wire form (its tag rules are a guess, see `WireFormat`); `profile_differences`
compares a profile as OpsRamp returns it with what is wanted, ignoring what OpsRamp adds (ids, uids).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsramp_aws_operator import failpoints
from opsramp_aws_operator.errors import TransientError

from .transport import GETS, PAGED, WRITES, MaybeAbsent
from .wire import WireFormat

ANY_RESOURCE = "ANY_CLOUD_RESOURCE"


@dataclass(frozen=True)
class DiscoveryRequest:
    """The discovery profile one integration should have."""

    name: str
    integration_id: str
    credential_set: str  # the credential set the install created: "<displayName> AWS Integration"
    resource_types: tuple[str, ...] = (ANY_RESOURCE,)
    tags: tuple[tuple[str, str], ...] = ()
    pattern_type: str = "HOURLY"
    pattern: str = "1"
    start_time: str = "00:00:00"
    manage_devices: bool = True


def _rules(request: DiscoveryRequest) -> list[dict[str, Any]]:
    if not request.tags:
        return [{"filterType": t} for t in request.resource_types]
    # With tags there is one resource type (the model allows no more): every tag must match.
    (resource_type,) = request.resource_types
    return [
        {
            "filterType": resource_type,
            "key": WireFormat.DISCOVERY_TAG_KEY_PREFIX + key,
            "operator": "Equals",
            "value": value,
        }
        for key, value in request.tags
    ]


def profile_body(request: DiscoveryRequest, profile_id: int | None = None) -> dict[str, Any]:
    """The profile as `POST`/`PUT /policies/discovery` take it (one element of their array)."""
    body: dict[str, Any] = {
        "name": request.name,
        "installedIntegrationId": request.integration_id,
        "credentialSet": request.credential_set,
        "policy": {
            "name": request.name,
            "entityType": "ALL",
            "matchType": "ALL" if request.tags else "ANY",
            "rules": _rules(request),
            "actions": [{"action": WireFormat.DISCOVERY_MANAGE_ACTION, "items": []}] if request.manage_devices else [],
        },
        "schedule": {"patternType": request.pattern_type, "pattern": request.pattern, "startTime": request.start_time},
    }
    if profile_id is not None:
        body["id"] = profile_id
    return body


def _rule_key(rule: Any) -> tuple[str, ...]:
    if not isinstance(rule, Mapping):
        return ()
    return tuple(str(rule.get(k) or "") for k in ("filterType", "key", "operator", "value"))


def profile_differences(current: Mapping[str, Any], request: DiscoveryRequest) -> list[str]:
    """What differs between a profile OpsRamp returned and the wanted one (fields it leaves out are not compared)."""
    wanted = profile_body(request)
    diffs: list[str] = []
    if current.get("name") not in (None, wanted["name"]):
        diffs.append("name")
    if current.get("installedIntegrationId") not in (None, request.integration_id):
        diffs.append("integration")
    policy = current.get("policy")
    if isinstance(policy, Mapping):
        want = wanted["policy"]
        if policy.get("matchType") not in (None, want["matchType"]):
            diffs.append("match type")
        rules = policy.get("rules")
        if isinstance(rules, list) and sorted(map(_rule_key, rules)) != sorted(map(_rule_key, want["rules"])):
            diffs.append("rules")
        actions = policy.get("actions")
        if isinstance(actions, list):
            have = sorted(str(a.get("action")) for a in actions if isinstance(a, Mapping))
            if have != sorted(a["action"] for a in want["actions"]):
                diffs.append("actions")
    elif policy is None and "policy" in current:
        diffs.append("rules")
    schedule = current.get("schedule")
    if isinstance(schedule, Mapping):
        want_schedule = wanted["schedule"]
        if any(str(schedule.get(k)) != str(v) for k, v in want_schedule.items() if schedule.get(k) is not None):
            diffs.append("schedule")
    return diffs


def belongs_to(profile: Mapping[str, Any], request: DiscoveryRequest) -> bool:
    """Whether a profile found by name is the one for our integration (by id, else by its credential set)."""
    integration = profile.get("installedIntegrationId")
    if integration is not None:
        return str(integration) == request.integration_id
    return profile.get("credentialSet") == request.credential_set


class DiscoveryProfiles:
    """The discovery-profile calls, mixed into `OpsRampClient` (which provides `_call` and `tenant_id`)."""

    tenant_id: str

    if TYPE_CHECKING:

        def _call(self, *args: Any, **kwargs: Any) -> Any: ...  # provided by Transport

    def _profile_path(self, profile_id: int) -> str:
        return WireFormat.DISCOVERY_PROFILE_PATH.format(tenant_id=self.tenant_id, profile_id=int(profile_id))

    def get_profile(self, profile_id: int) -> dict[str, Any] | None:
        body = self._call("get_profile", GETS, "GET", self._profile_path(profile_id), idempotent=True, absent_ok=True)
        if body is None or isinstance(body, MaybeAbsent):
            return None if body is None or self._profile_gone(profile_id) else self._profile_unclear(profile_id)
        return dict(body) if isinstance(body, Mapping) and body.get("id") is not None else None

    def _profile_gone(self, profile_id: int) -> bool:
        listed = self._call(
            "list_profiles", GETS, "GET", WireFormat.DISCOVERY_PATH.format(tenant_id=self.tenant_id), idempotent=True
        )
        items = listed if isinstance(listed, list) else []
        return all(not isinstance(p, Mapping) or str(p.get("id")) != str(profile_id) for p in items)

    def _profile_unclear(self, profile_id: int) -> dict[str, Any]:
        raise TransientError(
            "OpsRampUnavailable", f"OpsRamp said 'not found' for discovery profile {profile_id} but still lists it"
        )

    def find_profiles(self, name: str) -> list[dict[str, Any]]:
        body = self._call(
            "search_profiles",
            PAGED,
            "GET",
            WireFormat.DISCOVERY_SEARCH_PATH.format(tenant_id=self.tenant_id),
            params={"name": name},
            idempotent=True,
        )
        items = body.get("results") if isinstance(body, Mapping) else body
        return [dict(p) for p in items if isinstance(p, Mapping)] if isinstance(items, list) else []

    def create_profile(self, request: DiscoveryRequest) -> dict[str, Any]:
        """POST one profile; tried once (a create), the next pass finds it by name if the answer is lost."""
        body = self._call(
            "create_profile",
            WRITES,
            "POST",
            WireFormat.DISCOVERY_PATH.format(tenant_id=self.tenant_id),
            json_body=[profile_body(request)],
            idempotent=False,
        )
        created = _first(body)
        failpoints.hit("opsramp:create_profile")
        return created

    def update_profile(self, profile_id: int, request: DiscoveryRequest) -> dict[str, Any]:
        body = self._call(
            "update_profile",
            WRITES,
            "PUT",
            WireFormat.DISCOVERY_PATH.format(tenant_id=self.tenant_id),
            json_body=[profile_body(request, profile_id)],
            idempotent=True,
        )
        return _first(body)

    def delete_profile(self, profile_id: int) -> None:
        body = self._call(
            "delete_profile", WRITES, "DELETE", self._profile_path(profile_id), idempotent=True, absent_ok=True
        )
        if isinstance(body, MaybeAbsent) and not self._profile_gone(profile_id):
            self._profile_unclear(profile_id)
        failpoints.hit("opsramp:delete_profile")

    def rescan(self, profile_id: int) -> None:
        """GET .../action/scan/{id}: asks OpsRamp to discover again (and so to try the role again)."""
        self._call(
            "rescan",
            GETS,
            "GET",
            WireFormat.DISCOVERY_SCAN_PATH.format(tenant_id=self.tenant_id, profile_id=int(profile_id)),
            idempotent=True,
            absent_ok=True,
        )


def _first(body: Any) -> dict[str, Any]:
    items = body if isinstance(body, list) else [body]
    for item in items:
        if isinstance(item, Mapping) and item.get("id") is not None:
            return dict(item)
    raise TransientError("OpsRampUnavailable", "OpsRamp answered a discovery-profile write without a profile id")
