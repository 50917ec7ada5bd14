"""What a pass would change, as data: built from the reconcilers' own plans, shown by Observe and `plan`.

`Service.plan` reads AWS, OpsRamp and Kubernetes with the same functions a pass uses (`plan_role`,
`plan_integration`, `plan_monitoring`) and gathers their answers into a `ResourcePlan`: one `PlannedChange` per object
the pass would write, each with the fields it changes and the API operations it would send. Observe turns a plan
into `status.differences` (one line per field); `opsramp-aws-operator plan` prints it like `terraform plan`.

Nothing here holds a secret: trust policies are masked (`mask_external_ids`) before they enter a plan.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import NeedsAttention
from .integrations import IntegrationPlan
from .monitoring import MonitoringPlan
from .opsramp import Verdict
from .policies import mask_external_ids, policy_actions, policy_digest, policy_text
from .roles import RolePlan, Write

# Fields whose values are policy documents: shown as a JSON diff, summarised as "differs" in one-line forms.
DOCUMENT_FIELDS = frozenset({"trust policy", "document", "role"})

SYMBOLS = {"create": "+", "delete": "-", "replace": "-/+", "update": "~", "adopt": "~", "enable": "~", "disable": "~"}


@dataclass(frozen=True)
class FieldChange:
    """One field of one object: what it is (None: absent) and what the spec wants. No secrets."""

    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class PlannedChange:
    """One object a pass would write."""

    system: str  # "kubernetes", "iam" or "opsramp"
    action: str  # "create", "update", "replace", "delete", "adopt", "enable", "disable"
    target: str  # e.g. "role opsramp-team-a_prod", "integration INTG-1", "Secret team-a/x"
    fields: tuple[FieldChange, ...] = ()
    operations: tuple[str, ...] = ()  # the API operations it takes, e.g. ("iam:CreateRole",)
    note: str = ""

    def lines(self) -> list[str]:
        """One line per difference, for status.differences and Events."""
        head = f"{self.system} {self.target}"
        if self.action in ("create", "delete", "replace", "adopt", "enable", "disable") and not self.fields:
            return [f"{head}: would {self.action}" + (f" ({self.note})" if self.note else "")]
        if self.action == "create":
            return [f"{head}: does not exist (would create)" + (f"; {self.note}" if self.note else "")]
        out = []
        for change in self.fields:
            if change.name in DOCUMENT_FIELDS:
                out.append(f"{head}: {change.name} differs from the spec")
            else:
                out.append(f"{head}: {change.name} is {_short(change.before)}, the spec wants {_short(change.after)}")
        if self.note:
            out.append(f"{head}: {self.note}")
        return out


@dataclass
class ResourcePlan:
    """Everything one resource's pass would write, and why it would stop instead (if it would)."""

    namespace: str
    name: str
    changes: list[PlannedChange] = field(default_factory=list)
    # Why Manage would stop at an object (NotOwned, AdoptionRefused, ...), by side ("role", "integration").
    blocked: list[tuple[str, NeedsAttention]] = field(default_factory=list)
    # Facts worth saying that are not changes (e.g. OpsRamp's last verdict).
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    # How many of `changes` (the first ones) are the role's side; the integration OpsRamp has now; its verdict.
    role_changes: int = 0
    integration_id: str | None = None
    verdict: Verdict | None = None

    @property
    def action(self) -> str:
        """The resource's verdict: error, create, replace, update or none."""
        if self.error is not None or self.blocked:
            return "error"
        actions = {c.action for c in self.changes}
        if not actions:
            return "none"
        if any(c.system == "iam" and c.action == "create" and c.target.startswith("role ") for c in self.changes) and (
            any(
                c.system == "opsramp" and c.action == "create" and c.target.startswith("integration")
                for c in self.changes
            )
        ):
            return "create"
        if "replace" in actions or (
            "delete" in actions and any(c.target.startswith("role ") and c.action == "delete" for c in self.changes)
        ):
            return "replace"
        return "update"

    def differences(self) -> list[str]:
        lines = [f"Manage would stop here: {b.reason}: {b.message}" for _, b in self.blocked]
        for change in self.changes:
            lines.extend(change.lines())
        return lines

    def operations(self) -> dict[str, int]:
        """How many of each API operation the pass would send (what the sandbox's counters count)."""
        counts: dict[str, int] = {}
        for change in self.changes:
            for op in change.operations:
                counts[op] = counts.get(op, 0) + 1
        return counts

    def as_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "action": self.action,
            "error": self.error,
            "blocked": [{"side": side, "reason": b.reason, "message": b.message} for side, b in self.blocked],
            "changes": [
                {
                    "system": c.system,
                    "action": c.action,
                    "target": c.target,
                    "fields": [{"name": f.name, "before": f.before, "after": f.after} for f in c.fields],
                    "operations": list(c.operations),
                    "note": c.note,
                }
                for c in self.changes
            ],
            "operations": self.operations(),
            "notes": self.notes,
        }


def _short(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, sort_keys=True, default=str)


# --- from the reconcilers' plans -----------------------------------------------------------------------------


def role_changes(plan: RolePlan, labels: Mapping[str, str]) -> list[PlannedChange]:
    """The role plan's writes grouped by object; trust policies masked with `labels` (External ID -> label)."""
    grouped: dict[str, list[Write]] = {}
    for write in plan.writes:
        grouped.setdefault(write.target, []).append(write)
    out: list[PlannedChange] = []
    for target, writes in grouped.items():
        methods = {w.method for w in writes}
        if "create_role" in methods or "create_policy" in methods:
            action = "create"
        elif methods <= {"delete_policy", "detach"} and "delete_policy" in methods:
            action = "delete"
        elif any(w.words.startswith("adopted") for w in writes):
            action = "adopt"
        else:
            action = "update"
        fields: list[FieldChange] = []
        for write in writes:
            if write.method == "create_role":
                fields.append(FieldChange("path", None, plan.desired.path))
                fields.append(FieldChange("trust policy", None, _masked(write.after, labels)))
                fields.append(FieldChange("maxSessionDuration", None, plan.desired.max_session_duration))
                if plan.desired.permissions_boundary_arn:
                    fields.append(FieldChange("permissions boundary", None, plan.desired.permissions_boundary_arn))
                continue
            name = write.attribute or write.words
            before, after = write.before, write.after
            if name == "trust policy":
                before, after = _masked(before, labels), _masked(after, labels)
            elif name == "maxSessionDuration, description":
                for label, old, new in zip(("maxSessionDuration", "description"), before, after, strict=True):
                    if old != new:
                        fields.append(FieldChange(label, old, new))
                continue
            elif name == "managed policies":
                before = None
            elif name == "tags" and isinstance(after, Mapping) and not after:
                after = {k: None for k in before or {}}
            fields.append(FieldChange(name, before, after))
        out.append(PlannedChange("iam", action, target, tuple(fields), tuple(w.operation for w in writes)))
    return out


def _masked(document: Any, labels: Mapping[str, str]) -> Any:
    if isinstance(document, Mapping):
        return mask_external_ids(document, labels)
    return document


def integration_change(plan: IntegrationPlan, display_name: str) -> PlannedChange | None:
    """The OpsRamp integration's change, or None when it matches."""
    if plan.action == "none" and plan.how != "adopted":
        return None
    fields = tuple(FieldChange(name, before, after) for name, before, after in plan.fields)
    target = f"integration {display_name!r}" + (f" ({plan.integration_id})" if plan.integration_id else "")
    action = {"install": "create"}.get(plan.action, plan.action)
    note = ""
    if plan.how == "adopted":
        note = "taken over (spec.adopt.integration)"
        if plan.action == "none":
            action = "adopt"
    elif plan.action == "replace":
        note = "OpsRamp does not apply this change on update: uninstalled and installed again"
    return PlannedChange("opsramp", action, target, fields, plan.operations, note)


def monitoring_changes(plans: Iterable[MonitoringPlan]) -> list[PlannedChange]:
    return [
        PlannedChange(
            "opsramp",
            p.action,
            p.target,
            tuple(FieldChange(n, b, a) for n, b, a in p.fields),
            p.operations,
        )
        for p in plans
    ]


# --- showing a plan ---------------------------------------------------------------------------------------------


def _value_lines(value: Any, indent: str) -> list[str]:
    text = policy_text(value) if isinstance(value, Mapping) else json.dumps(value, sort_keys=True, default=str)
    return [indent + line for line in text.splitlines()]


def _summary(document: Mapping[str, Any]) -> str:
    statements = document.get("Statement")
    count = len(statements) if isinstance(statements, list) else 1
    return f"{count} statement(s), {len(policy_actions(document))} action(s), {policy_digest(dict(document))}"


def render_change(change: PlannedChange, *, show_documents: bool = False) -> list[str]:
    symbol = SYMBOLS.get(change.action, "~")
    head = f"  {symbol} {change.system} {change.target}"
    if change.note:
        head += f"  # {change.note}"
    out = [head]
    for item in change.fields:
        if item.name in DOCUMENT_FIELDS and (isinstance(item.before, Mapping) or isinstance(item.after, Mapping)):
            if item.before is None:
                if item.name == "document" and not show_documents and isinstance(item.after, Mapping):
                    # A whole permission policy is long: its size and digest (--show-documents prints it).
                    out.append(f"      + {item.name}: {_summary(item.after)}")
                    continue
                out.append(f"      + {item.name}:")
                out.extend(_value_lines(item.after, "          "))
                continue
            out.append(f"      ~ {item.name}:")
            diff = difflib.unified_diff(
                policy_text(item.before).splitlines(),
                policy_text(item.after).splitlines() if item.after is not None else [],
                "live",
                "desired",
                lineterm="",
            )
            out.extend("          " + line for line in diff)
            continue
        if item.before is None:
            out.append(f"      + {item.name}: {_short(item.after)}")
        elif item.after is None:
            out.append(f"      - {item.name}: {_short(item.before)}")
        else:
            out.append(f"      ~ {item.name}: {_short(item.before)} -> {_short(item.after)}")
    return out


HEADLINES = {
    "create": "will be created",
    "update": "will be updated in place",
    "replace": "will be replaced in part",
    "none": "has no changes",
    "error": "cannot be planned",
}


def render(plans: Sequence[ResourcePlan], *, show_documents: bool = False) -> str:
    """Terraform-plan-like text for every resource, and the summary line."""
    out: list[str] = []
    for plan in plans:
        out.append(f"# awsintegration {plan.namespace}/{plan.name} {HEADLINES[plan.action]}")
        if plan.error is not None:
            out.append(f"  ! {plan.error}")
        for _, blocked in plan.blocked:
            out.append(f"  ! the operator would stop: {blocked.reason}: {blocked.message}")
        for change in plan.changes:
            out.extend(render_change(change, show_documents=show_documents))
        for note in plan.notes:
            out.append(f"  # {note}")
        out.append("")
    counts = {key: sum(1 for p in plans if p.action == key) for key in HEADLINES}
    out.append(
        f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['replace']} to replace, "
        f"{counts['none']} unchanged, {counts['error']} with errors."
    )
    return "\n".join(out) + "\n"
