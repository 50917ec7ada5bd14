"""The IAM role reconciler: observe the role and its policies, then create or change only what differs.

Pure logic over the `IamRoles` adapter of an `AwsAccount` (no SDK import here). The rules it keeps:

- Ownership before any write: every role and policy we create carries our owner tags; anything under our
  deterministic names without them (or with another owner's UID) stops the pass with `NotOwned`, and the
  whole observe phase runs before the first write, so nothing is modified in that case.
- Level-based: a pass over unchanged state makes read calls only.
- Crash-safe: names are deterministic and every create is preceded by a lookup, so a rerun after a crash
  between any two calls converges without duplicates. Our policy parts are created in ascending order and
  deleted in descending order, so the parts that exist are always `1..k` and probing `k+1` finds leftovers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from .aws import IamRoles, ObservedPolicy, ObservedRole
from .constants import (
    MANAGED_BY_VALUE,
    TAG_MANAGED_BY,
    TAG_OWNER_NAME,
    TAG_OWNER_NAMESPACE,
    TAG_OWNER_UID,
    TAG_PREFIX,
)
from .errors import NeedsAttention, NotOwned, TransientError
from .guardrails import ENV_POLICIES, glob_match
from .policies import (
    MAX_MANAGED_POLICY_CHARS,
    missing_actions,
    policies_equal,
    policy_digest,
    policy_size,
    split_policy,
    trust_problems,
)

log = logging.getLogger(__name__)

# IAM's limits that moto does not enforce (IAM User Guide, "IAM and AWS STS quotas").
MAX_ROLE_NAME_CHARS: Final = 64
MAX_PATH_CHARS: Final = 512
MAX_TAGS: Final = 50
MAX_TAG_KEY_CHARS: Final = 128
MAX_TAG_VALUE_CHARS: Final = 256
MAX_DESCRIPTION_CHARS: Final = 1000
MIN_SESSION_SECONDS: Final = 3600
MAX_SESSION_SECONDS: Final = 43200
DEFAULT_MANAGED_POLICY_QUOTA: Final = 10
# Default quota for a role's trust policy; accounts can raise it to 4096.
DEFAULT_TRUST_POLICY_CHARS: Final = 2048
# Leftover probing stops here even if IAM holds more (the quota caps what we could ever have attached).
_MAX_PARTS_PROBED: Final = 20

_ROLE_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,64}$")
_PATH_RE: Final = re.compile(r"^(/|/[\x21-\x7E]{1,510}/)$")
_POLICY_ARN_RE: Final = re.compile(
    r"^arn:aws(-[a-z]+)*:iam::([0-9]{12}|aws):policy/([\x21-\x7E]{0,510}/)?[A-Za-z0-9_+=,.@-]{1,128}$"
)
_TAG_RE: Final = re.compile(r"^[\w .:/=+@-]*$")
_DESCRIPTION_RE: Final = re.compile(r"^[\t\n\r\x20-\x7e\xa1-\xff]*$")


class Account(Protocol):
    """What the reconciler needs of an `aws.AwsAccount` (a Protocol so tests can wrap one)."""

    @property
    def iam(self) -> IamRoles: ...

    def caller_account_id(self) -> str: ...

    def partition(self) -> str: ...


@dataclass(frozen=True)
class Owner:
    """The AWSIntegration that owns a role: its UID proves ownership, namespace and name are for people."""

    uid: str
    namespace: str
    name: str

    def tags(self) -> dict[str, str]:
        """The ownership tags put on everything we create."""
        return {
            TAG_OWNER_UID: self.uid,
            TAG_OWNER_NAMESPACE: self.namespace,
            TAG_OWNER_NAME: self.name,
            TAG_MANAGED_BY: MANAGED_BY_VALUE,
        }


@dataclass(frozen=True)
class DesiredRole:
    """Everything the role should be; `tags` are the user's, ownership tags are added by the reconciler."""

    name: str
    path: str
    # Carries the External ID (sts:ExternalId): never in a repr.
    trust_policy: dict[str, Any] = field(repr=False)
    max_session_duration: int
    permissions_boundary_arn: str | None
    tags: Mapping[str, str]
    # The OpsRamp policy; None = do not attach the shipped policy (and delete ours if we made it earlier).
    permission_policy: dict[str, Any] | None
    extra_managed_policy_arns: tuple[str, ...]
    owner: Owner
    description: str = ""


@dataclass(frozen=True)
class RoleOutcome:
    """What the role is after a pass."""

    arn: str
    account_id: str
    # Ours plus the spec's extra ARNs, all attached (foreign attachments are not listed).
    policy_arns: tuple[str, ...]
    policy_digest: str
    # Human words for what was written this pass; () when nothing was.
    changes: tuple[str, ...]
    created: bool
    # When what the role grants or who may assume it last changed, as far as this pass knows: the time of
    # this pass's last such write, else the role's CreateDate (so a role a previous pass created moments ago
    # still counts as young). None only when unknown.
    last_changed: datetime | None
    # The External IDs the role's trust policy required before this pass (None: the role was created now), so
    # the integration is sent a new External ID only when it really changed, not on every trust repair.
    previous_external_ids: frozenset[str] | None = None
    # "none" / "restore": this pass took the role over (spec.adopt.role); None otherwise.
    adopted: str | None = None


def trust_external_ids(trust_policy: Mapping[str, Any]) -> frozenset[str]:
    """Every sts:ExternalId value a trust policy's conditions name."""
    found: set[str] = set()
    statements = trust_policy.get("Statement")
    for statement in statements if isinstance(statements, list) else [statements]:
        condition = statement.get("Condition") if isinstance(statement, Mapping) else None
        for clauses in condition.values() if isinstance(condition, Mapping) else ():
            if not isinstance(clauses, Mapping):
                continue
            for key, value in clauses.items():
                if str(key).lower() == "sts:externalid":
                    found.update(str(v) for v in (value if isinstance(value, list) else [value]))
    return frozenset(found)


def policy_name(role_name: str, index: int) -> str:
    """The deterministic name of our `index`-th (1-based) policy part for a role."""
    return f"{role_name}-opsramp-{index}"


def policy_arn(partition: str, account_id: str, path: str, role_name: str, index: int) -> str:
    """The ARN our `index`-th policy part has (policies live on the role's path)."""
    return f"arn:{partition}:iam::{account_id}:policy{path}{policy_name(role_name, index)}"


@dataclass(frozen=True)
class _Parts:
    """Where a role's policy parts live: ARN of part i is `prefix + str(i)`."""

    prefix: str

    @classmethod
    def of(cls, account: Account, path: str, role_name: str) -> _Parts:
        return cls(policy_arn(account.partition(), account.caller_account_id(), path, role_name, 0)[:-1])

    def arn(self, index: int) -> str:
        return f"{self.prefix}{index}"

    def index_of(self, arn: str) -> int | None:
        suffix = arn[len(self.prefix) :] if arn.startswith(self.prefix) else ""
        return int(suffix) if suffix.isdigit() else None


def desired_policy_documents(desired: DesiredRole) -> list[dict[str, Any]]:
    """The documents of our policy parts: the permission policy split to IAM's size limit (or none)."""
    if desired.permission_policy is None:
        return []
    try:
        return split_policy(desired.permission_policy, MAX_MANAGED_POLICY_CHARS)
    except ValueError as exc:
        raise NeedsAttention("InvalidSpec", f"the permission policy cannot be stored in IAM: {exc}") from None


def validate_desired(
    desired: DesiredRole,
    *,
    max_managed_policies: int = DEFAULT_MANAGED_POLICY_QUOTA,
    max_trust_policy_chars: int = DEFAULT_TRUST_POLICY_CHARS,
) -> None:
    """Refuse, before any AWS call, what IAM would refuse but moto does not; one message lists every problem."""
    problems: list[str] = []
    if not _ROLE_NAME_RE.match(desired.name):
        problems.append(
            f"role name {desired.name!r} must be 1-{MAX_ROLE_NAME_CHARS} characters of letters, digits and +=,.@_-"
        )
    if len(desired.path) > MAX_PATH_CHARS or not _PATH_RE.match(desired.path):
        problems.append(
            f"role path {desired.path!r} must start and end with '/' and hold only printable ASCII "
            f"(at most {MAX_PATH_CHARS} characters)"
        )
    if not MIN_SESSION_SECONDS <= desired.max_session_duration <= MAX_SESSION_SECONDS:
        problems.append(
            f"maxSessionDuration {desired.max_session_duration} must be between {MIN_SESSION_SECONDS} "
            f"and {MAX_SESSION_SECONDS} seconds"
        )
    if len(desired.description) > MAX_DESCRIPTION_CHARS or not _DESCRIPTION_RE.match(desired.description):
        problems.append(f"description must be at most {MAX_DESCRIPTION_CHARS} printable Latin-1 characters")
    trust_chars = policy_size(desired.trust_policy)
    if trust_chars > max_trust_policy_chars:
        problems.append(f"trust policy has {trust_chars} characters, IAM allows {max_trust_policy_chars}")
    if desired.permissions_boundary_arn is not None and not _POLICY_ARN_RE.match(desired.permissions_boundary_arn):
        problems.append(f"permissionsBoundaryArn {desired.permissions_boundary_arn!r} is not a policy ARN")
    for arn in desired.extra_managed_policy_arns:
        if not _POLICY_ARN_RE.match(arn):
            problems.append(f"managedPolicyArns entry {arn!r} is not a policy ARN")
    problems.extend(_tag_problems(desired))
    parts: list[dict[str, Any]] = []
    try:
        parts = desired_policy_documents(desired)
    except NeedsAttention as exc:
        problems.append(exc.message)
    for index, part in enumerate(parts, start=1):
        size = policy_size(part)
        if size > MAX_MANAGED_POLICY_CHARS:
            problems.append(
                f"permission policy part {index} has {size} characters, IAM allows {MAX_MANAGED_POLICY_CHARS}"
            )
    attached = len(parts) + len(set(desired.extra_managed_policy_arns))
    if attached > max_managed_policies:
        problems.append(
            f"the role would have {attached} managed policies attached ({len(parts)} for OpsRamp's policy, "
            f"{len(set(desired.extra_managed_policy_arns))} extra); the account's quota is {max_managed_policies}"
        )
    if problems:
        raise NeedsAttention("InvalidSpec", "; ".join(problems))


def _tag_problems(desired: DesiredRole) -> list[str]:
    problems: list[str] = []
    for key, value in desired.tags.items():
        if not key or len(key) > MAX_TAG_KEY_CHARS or not _TAG_RE.match(key):
            problems.append(
                f"tag key {key!r} must be 1-{MAX_TAG_KEY_CHARS} characters of letters, digits and _.:/=+-@ or spaces"
            )
        elif key.lower().startswith(("aws:", TAG_PREFIX)):
            problems.append(f"tag key {key!r} uses a reserved prefix ('aws:' or '{TAG_PREFIX}')")
        if len(value) > MAX_TAG_VALUE_CHARS or not _TAG_RE.match(value):
            problems.append(
                f"tag {key!r} value must be at most {MAX_TAG_VALUE_CHARS} characters of letters, digits "
                "and _.:/=+-@ or spaces"
            )
    owner_tags = desired.owner.tags()
    for key, value in owner_tags.items():
        if len(value) > MAX_TAG_VALUE_CHARS or not _TAG_RE.match(value):
            problems.append(f"ownership tag {key} cannot hold {value!r}")
    total = len(set(desired.tags) | set(owner_tags))
    if total > MAX_TAGS:
        problems.append(
            f"the role would carry {total} tags ({len(desired.tags)} from the spec, {len(owner_tags)} for "
            f"ownership); IAM allows {MAX_TAGS}"
        )
    return problems


def check_account(account: Account, expected_account_id: str | None) -> str:
    """Return the account the credentials act in; `AccountMismatch` when the spec names another one."""
    actual = account.caller_account_id()
    if expected_account_id and expected_account_id != actual:
        raise NeedsAttention(
            "AccountMismatch",
            f"the operator's AWS credentials act in account {actual}, but spec.aws.accountId is "
            f"{expected_account_id}; nothing was written (fix accountId or aws.assumeRoleArn)",
        )
    return actual


def _ownership(kind: str, name: str, tags: Mapping[str, str], owner: Owner) -> str:
    """ "ours"; "none" (no ownership tag); "restore" (tagged for this namespace and name under another UID: the
    resource was deleted and re-created, e.g. by a backup restore). Another resource's raises `NotOwned`."""
    uid = tags.get(TAG_OWNER_UID)
    if uid == owner.uid:
        return "ours"
    if uid is None:
        return "none"
    if (tags.get(TAG_OWNER_NAMESPACE), tags.get(TAG_OWNER_NAME)) == (owner.namespace, owner.name):
        return "restore"
    # Which resource owns it is another tenant's business: the operator's log says, the condition does not.
    log.info(
        "IAM %s %s is owned by %s/%s (uid %s)", kind, name, tags.get(TAG_OWNER_NAMESPACE), tags.get(TAG_OWNER_NAME), uid
    )
    raise NotOwned(f"IAM {kind} {name} belongs to another AWSIntegration; choose another spec.role.name")


def _not_owned(kind: str, name: str, state: str) -> NotOwned:
    if state == "restore":
        return NotOwned(
            f"IAM {kind} {name} was created for this namespace and name by an AWSIntegration with another UID (deleted "
            "and re-created, e.g. by a backup restore), so it is not proven this resource's; set spec.adopt.role: true "
            "to take it over, or choose another spec.role.name"
        )
    return NotOwned(
        f"IAM {kind} {name} already exists and carries no {TAG_OWNER_UID} tag, so this operator did not "
        f"create it and will not change it; choose another spec.role.name or delete the {kind}, or set "
        "spec.adopt.role: true to take it over (after checks)"
    )


def _check_owned(kind: str, name: str, tags: Mapping[str, str], owner: Owner) -> None:
    state = _ownership(kind, name, tags, owner)
    if state != "ours":
        raise _not_owned(kind, name, state)


def _is_owned(tags: Mapping[str, str], owner: Owner) -> bool:
    return tags.get(TAG_OWNER_UID) == owner.uid


@dataclass
class _Pass:
    """Bookkeeping of one pass: what was written, and when the last usability-relevant write happened."""

    changes: list[str] = field(default_factory=list)
    last_grant_change: datetime | None = None

    def wrote(self, words: str, *, affects_grants: bool = True) -> None:
        self.changes.append(words)
        if affects_grants:
            self.last_grant_change = datetime.now(UTC)


def _find_leftovers(
    iam: IamRoles,
    parts: _Parts,
    first_index: int,
    attached: Iterable[str],
    owner: Owner,
    *,
    probe: bool = True,
) -> list[ObservedPolicy]:
    """Our policies beyond the desired parts: probe `first_index, first_index+1, ...` and scan attachments."""
    found: dict[str, ObservedPolicy] = {}
    index = first_index
    while probe and index <= _MAX_PARTS_PROBED:
        policy = iam.get_policy(parts.arn(index))
        if policy is None:
            break
        if _is_owned(policy.tags, owner):
            found[policy.arn] = policy
        index += 1
    # Attached parts past a gap (should not happen with ascending create / descending delete, but cheap).
    for arn in attached:
        index_of = parts.index_of(arn)
        if index_of is not None and index_of >= first_index and arn not in found:
            policy = iam.get_policy(arn)
            if policy is not None and _is_owned(policy.tags, owner):
                found[arn] = policy
    return sorted(found.values(), key=lambda p: -_part_index(p.name))


def _part_index(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


@dataclass(frozen=True)
class Adoption:
    """spec.adopt.role, with what proves a role adoptable by this resource (see `adoption_problems`)."""

    requested: bool
    opsramp_accounts: tuple[str, ...]
    # The resource's External ID: the role's trust must require it. Never in a repr.
    external_id: str = field(repr=False)
    # Managed policies a role may carry here (the guardrails' ArnLike patterns).
    allowed_policy_patterns: tuple[str, ...] = ()


def adoption_problems(
    iam: IamRoles, role: ObservedRole, attached: Iterable[str], adoption: Adoption, ours: Collection[str]
) -> list[str]:
    """Why a role this resource did not create may not be adopted by it; [] when it may.

    The proof: its trust requires this resource's External ID (a secret only whoever holds it knows) for an
    OpsRamp account the cluster allows. Only then is anything else said about it (principals besides OpsRamp's,
    foreign policies), so a tenant naming another tenant's role learns nothing of it. `ours`: attached ARNs that are
    fine (our policy parts, the spec's allowed extras).
    """
    admits, problems = trust_problems(role.trust_policy, adoption.opsramp_accounts, adoption.external_id)
    if not admits:
        return [
            "its trust policy does not let an allowed OpsRamp AWS account assume it with this resource's External ID"
        ]
    for arn in attached:
        if arn not in ours and not any(glob_match(p, arn) for p in adoption.allowed_policy_patterns):
            problems.append(f"managed policy {arn} is attached, which roles may not carry here ({ENV_POLICIES})")
    problems.extend(
        f"inline policy {inline} is attached (the operator attaches OpsRamp's policy itself)"
        for inline in iam.list_inline(role.name)
    )
    return problems


@dataclass(frozen=True)
class Write:
    """One IAM write a pass makes (or, planned or observed, would make): the `IamRoles` call and its description."""

    operation: str  # the IAM action, e.g. "iam:UpdateAssumeRolePolicy"
    target: str  # "role NAME" or "policy NAME"
    words: str  # what the operator logs once it is done
    method: str
    args: tuple[Any, ...] = field(default=(), repr=False)
    kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # For plans and Observe: the field and its values (trust policies carry External IDs: never in a repr).
    attribute: str | None = None
    before: Any = field(default=None, repr=False)
    after: Any = field(default=None, repr=False)
    affects_grants: bool = True


@dataclass
class RolePlan:
    """The role as observed and the writes that make it match the spec (`apply_role_plan` makes them)."""

    desired: DesiredRole
    account_id: str
    role: ObservedRole | None
    documents: list[dict[str, Any]]
    our_arns: list[str]
    extras: tuple[str, ...]
    writes: list[Write]
    previous_external_ids: frozenset[str] | None
    # "none" / "restore": the role is taken over by this plan (spec.adopt.role); None: ours, or created.
    adopted: str | None = None
    # Observe (strict=False): why Manage would refuse this role instead of writing; None when it would not.
    blocked: NeedsAttention | None = None


def plan_role(
    account: Account,
    desired: DesiredRole,
    *,
    previously_attached: Collection[str] = (),
    adoption: Adoption | None = None,
    strict: bool = True,
) -> RolePlan:
    """Observe the role and its policies (reads only) and list the writes that would make them match `desired`.

    Every ownership check happens here, before the first write. `strict=False` (Observe) records why Manage would
    refuse in `blocked` and still lists the differences, instead of raising.
    """
    iam = account.iam
    owner = desired.owner
    account_id = account.caller_account_id()
    documents = desired_policy_documents(desired)
    parts = _Parts.of(account, desired.path, desired.name)
    our_arns = [parts.arn(i) for i in range(1, len(documents) + 1)]
    extras = tuple(dict.fromkeys(desired.extra_managed_policy_arns))
    blocked: list[NeedsAttention] = []

    def refuse(error: NeedsAttention) -> None:
        if strict:
            raise error
        blocked.append(error)

    # --- observe (reads only; every ownership check happens before the first write) -------------------------
    role = iam.get_role(desired.name)
    previous_external_ids = trust_external_ids(role.trust_policy) if role is not None else None
    attached: tuple[str, ...] = ()
    adopted: str | None = None
    if role is not None:
        try:
            state = _ownership("role", role.name, role.tags, owner)
        except NotOwned as exc:
            refuse(exc)
            state = "foreign"
        if role.path != desired.path:
            refuse(
                NeedsAttention(
                    "RolePathChanged",
                    f"IAM role {role.name} lives on path {role.path} but the spec asks for {desired.path}; IAM "
                    "cannot move a role: set spec.role.path back, or change spec.role.name to create a new role",
                )
            )
        attached = iam.list_attached(desired.name) or ()
        if state in ("none", "restore"):
            if adoption is None or not adoption.requested:
                refuse(_not_owned("role", role.name, state))
            else:
                fine = {*our_arns, *(a for a in attached if parts.index_of(a) is not None), *extras}
                problems = adoption_problems(iam, role, attached, adoption, fine)
                if problems:
                    refuse(
                        NeedsAttention(
                            "AdoptionRefused",
                            f"IAM role {role.name} cannot be adopted (spec.adopt.role): {'; '.join(problems)}. Nothing "
                            "was changed. Fix the role (or ask the cluster admin to allow its policies), or choose "
                            "another spec.role.name.",
                        )
                    )
                else:
                    adopted = state
    observed_parts: list[ObservedPolicy | None] = []
    for arn in our_arns:
        policy = iam.get_policy(arn)
        if policy is not None:
            try:
                part_state = _ownership("policy", policy.name, policy.tags, owner)
            except NotOwned as exc:
                refuse(exc)
                part_state = "foreign"
            if part_state == "none" or (part_state == "restore" and adopted is None):
                refuse(_not_owned("policy", policy.name, part_state))
        observed_parts.append(policy)
    # Probing for parts beyond the desired ones costs a read per pass. It is skipped when there is no role (parts
    # are created after it and deleted before it) and when the last completed pass ended with exactly these
    # parts (it deleted any beyond them); only a change in the number of parts since makes leftovers possible.
    ours_before = {arn for arn in previously_attached if parts.index_of(arn) is not None}
    probe = role is not None and ours_before != set(our_arns)
    leftovers = _find_leftovers(iam, parts, len(documents) + 1, attached, owner, probe=probe)

    writes = _role_writes(desired, role, adopted, observed_parts, documents, our_arns, extras, attached, leftovers)
    for arn in previously_attached:
        if arn in attached and arn not in {*our_arns, *extras} and not any(arn == p.arn for p in leftovers):
            # Extras an earlier pass attached that the spec dropped (foreign attachments are never in that list).
            writes.append(
                Write("iam:DetachRolePolicy", f"role {desired.name}", f"detached {arn}", "detach", (desired.name, arn))
            )
    # Our parts that are no longer desired go last: highest index first, keeping the existing ones a prefix 1..k.
    for policy in leftovers:
        if policy.arn in attached:
            writes.append(
                Write(
                    "iam:DetachRolePolicy",
                    f"role {desired.name}",
                    f"detached {policy.arn}",
                    "detach",
                    (desired.name, policy.arn),
                )
            )
        writes.append(
            Write(
                "iam:DeletePolicy",
                f"policy {policy.name}",
                f"deleted policy {policy.name}",
                "delete_policy",
                (policy.arn,),
                affects_grants=False,
            )
        )
    return RolePlan(
        desired=desired,
        account_id=account_id,
        role=role,
        documents=documents,
        our_arns=our_arns,
        extras=extras,
        writes=writes,
        previous_external_ids=previous_external_ids,
        adopted=adopted,
        blocked=blocked[0] if blocked else None,
    )


def _role_writes(
    desired: DesiredRole,
    role: ObservedRole | None,
    adopted: str | None,
    observed_parts: list[ObservedPolicy | None],
    documents: list[dict[str, Any]],
    our_arns: list[str],
    extras: tuple[str, ...],
    attached: tuple[str, ...],
    leftovers: list[ObservedPolicy],
) -> list[Write]:
    """The writes, in the order IAM needs them, that bring the observed role and parts to `desired`."""
    name = desired.name
    owner_tags = desired.owner.tags()
    role_tags = {**desired.tags, **owner_tags}
    writes: list[Write] = []
    if role is None:
        writes.append(
            Write(
                "iam:CreateRole",
                f"role {name}",
                f"created role {name}",
                "create_role",
                (name,),
                {
                    "path": desired.path,
                    "trust_policy": desired.trust_policy,
                    "max_session_duration": desired.max_session_duration,
                    "description": desired.description,
                    "permissions_boundary_arn": desired.permissions_boundary_arn,
                    "tags": role_tags,
                },
                attribute="role",
                after=desired.trust_policy,
            )
        )
    else:
        if adopted is not None:
            # Tagged as ours first: a crash after this leaves a role the next pass knows as its own.
            writes.append(
                Write(
                    "iam:TagRole",
                    f"role {name}",
                    f"adopted role {name} (tagged as this resource's)",
                    "tag_role",
                    (name, owner_tags),
                    attribute="ownership tags",
                    before=role.tags.get(TAG_OWNER_UID),
                    after=desired.owner.uid,
                    affects_grants=False,
                )
            )
        writes.extend(_update_role_writes(role, desired, {} if adopted is None else owner_tags, role_tags))
    policy_tags = {**desired.tags, **owner_tags}
    for index, (arn, document, observed) in enumerate(zip(our_arns, documents, observed_parts, strict=True), 1):
        pname = policy_name(name, index)
        target = f"policy {pname}"
        if observed is None:
            description = (
                f"OpsRamp read-only permissions for IAM role {name}, part {index}; managed by {MANAGED_BY_VALUE}"
            )
            writes.append(
                Write(
                    "iam:CreatePolicy",
                    target,
                    f"created policy {pname}",
                    "create_policy",
                    (pname, desired.path, document, description, policy_tags),
                    attribute="document",
                    after=document,
                )
            )
            continue
        if not policies_equal(observed.document, document):
            writes.append(
                Write(
                    "iam:CreatePolicyVersion",
                    target,
                    f"updated policy {pname}",
                    "create_policy_version",
                    (arn, document),
                    {"set_as_default": True},
                    attribute="document",
                    before=observed.document,
                    after=document,
                )
            )
        missing = {k: v for k, v in policy_tags.items() if observed.tags.get(k) != v}
        surplus = {k for k in observed.tags if k not in policy_tags and not k.lower().startswith("aws:")}
        if missing:
            writes.append(
                Write(
                    "iam:TagPolicy",
                    target,
                    f"tagged policy {pname}",
                    "tag_policy",
                    (arn, missing),
                    attribute="tags",
                    before={k: observed.tags.get(k) for k in missing},
                    after=missing,
                    affects_grants=False,
                )
            )
        if surplus:
            writes.append(
                Write(
                    "iam:UntagPolicy",
                    target,
                    f"untagged policy {pname}",
                    "untag_policy",
                    (arn, surplus),
                    attribute="tags",
                    before={k: observed.tags[k] for k in surplus},
                    after={},
                    affects_grants=False,
                )
            )
    attached_set = set(attached)
    for arn in (*our_arns, *extras):
        if arn not in attached_set:
            writes.append(
                Write(
                    "iam:AttachRolePolicy",
                    f"role {name}",
                    f"attached {arn}",
                    "attach",
                    (name, arn),
                    attribute="managed policies",
                    after=arn,
                )
            )
    return writes


def _update_role_writes(
    role: ObservedRole, desired: DesiredRole, already_tagged: Mapping[str, str], role_tags: Mapping[str, str]
) -> list[Write]:
    """The writes that bring an existing (owned or adopted) role's trust, settings, boundary and tags in line."""
    name = desired.name
    target = f"role {name}"
    writes: list[Write] = []
    if not policies_equal(role.trust_policy, desired.trust_policy):
        writes.append(
            Write(
                "iam:UpdateAssumeRolePolicy",
                target,
                "updated trust policy",
                "update_trust",
                (name, desired.trust_policy),
                attribute="trust policy",
                before=role.trust_policy,
                after=desired.trust_policy,
            )
        )
    if role.max_session_duration != desired.max_session_duration or role.description != desired.description:
        writes.append(
            Write(
                "iam:UpdateRole",
                target,
                "updated max session duration and description",
                "update_role",
                (name, desired.max_session_duration, desired.description),
                attribute="maxSessionDuration, description",
                before=(role.max_session_duration, role.description),
                after=(desired.max_session_duration, desired.description),
                affects_grants=False,
            )
        )
    if desired.permissions_boundary_arn is None:
        if role.permissions_boundary_arn is not None:
            writes.append(
                Write(
                    "iam:DeleteRolePermissionsBoundary",
                    target,
                    "removed permissions boundary",
                    "delete_boundary",
                    (name,),
                    attribute="permissions boundary",
                    before=role.permissions_boundary_arn,
                )
            )
    elif role.permissions_boundary_arn != desired.permissions_boundary_arn:
        writes.append(
            Write(
                "iam:PutRolePermissionsBoundary",
                target,
                "set permissions boundary",
                "put_boundary",
                (name, desired.permissions_boundary_arn),
                attribute="permissions boundary",
                before=role.permissions_boundary_arn,
                after=desired.permissions_boundary_arn,
            )
        )
    seen = {**role.tags, **already_tagged}
    to_set = {k: v for k, v in role_tags.items() if seen.get(k) != v}
    # The spec owns the role's whole tag set; "aws:" tags belong to AWS services and cannot be removed.
    to_remove = {k for k in seen if k not in role_tags and not k.lower().startswith("aws:")}
    if to_set:
        writes.append(
            Write(
                "iam:TagRole",
                target,
                f"tagged role ({', '.join(sorted(to_set))})",
                "tag_role",
                (name, to_set),
                attribute="tags",
                before={k: seen.get(k) for k in to_set},
                after=to_set,
                affects_grants=False,
            )
        )
    if to_remove:
        writes.append(
            Write(
                "iam:UntagRole",
                target,
                f"untagged role ({', '.join(sorted(to_remove))})",
                "untag_role",
                (name, to_remove),
                attribute="tags",
                before={k: seen[k] for k in to_remove},
                after={},
                affects_grants=False,
            )
        )
    return writes


def apply_role_plan(account: Account, plan: RolePlan) -> RoleOutcome:
    """Make the plan's writes, in order, and report the role as it is after them."""
    if plan.blocked is not None:
        raise plan.blocked
    iam = account.iam
    run = _Pass()
    role = plan.role
    created = False
    for write in plan.writes:
        result = getattr(iam, write.method)(*write.args, **write.kwargs)
        words = write.words
        if write.method == "create_role":
            role = result
            created = True
        elif write.method == "create_policy_version":
            words = f"{words} (version {result})"
        elif write.method == "delete_policy" and not result:
            continue
        run.wrote(words, affects_grants=write.affects_grants)
    assert role is not None
    last_changed = role.create_date
    if run.last_grant_change is not None and (last_changed is None or run.last_grant_change > last_changed):
        last_changed = run.last_grant_change
    return RoleOutcome(
        arn=role.arn,
        account_id=plan.account_id,
        policy_arns=(*plan.our_arns, *plan.extras),
        policy_digest=policy_digest(plan.documents) if plan.documents else "",
        changes=tuple(run.changes),
        created=created,
        last_changed=last_changed,
        previous_external_ids=plan.previous_external_ids,
        adopted=plan.adopted,
    )


def ensure_role(
    account: Account,
    desired: DesiredRole,
    *,
    max_managed_policies: int = DEFAULT_MANAGED_POLICY_QUOTA,
    previously_attached: Collection[str] = (),
    adoption: Adoption | None = None,
    fresh: bool = False,
) -> RoleOutcome:
    """Make the role, its trust, its tags and its permissions match `desired`, writing only what differs.

    `previously_attached` are the ARNs an earlier pass reported in `RoleOutcome.policy_arns`: extra ARNs
    among them that the spec no longer lists are detached (IAM cannot tell us which attachments were ours,
    and foreign ones must stay). `adoption`: spec.adopt.role and what proves a role adoptable. `fresh`: nothing was
    ever recorded for this resource, so the role is most likely new: create first and let IAM's EntityAlreadyExists
    say otherwise (see `_create_fresh`); never with `adoption` (a role to take over exists by definition, and must
    pass its checks before any write).
    """
    validate_desired(desired, max_managed_policies=max_managed_policies)
    if fresh and adoption is None:
        documents = desired_policy_documents(desired)
        parts = _Parts.of(account, desired.path, desired.name)
        our_arns = [parts.arn(i) for i in range(1, len(documents) + 1)]
        extras = tuple(dict.fromkeys(desired.extra_managed_policy_arns))
        created_now = _create_fresh(account.iam, desired, account.caller_account_id(), documents, our_arns, extras)
        if created_now is not None:
            return created_now
    plan = plan_role(account, desired, previously_attached=previously_attached, adoption=adoption)
    return apply_role_plan(account, plan)


def verify_role(
    account: Account,
    arn: str,
    *,
    opsramp_accounts: tuple[str, ...],
    external_id: str | None,
    required_actions: list[str],
    owner: Owner,
) -> RoleOutcome:
    """A role someone else manages (spec.role.arn): reads only. It must let OpsRamp in with this resource's External
    ID, and nobody else, and grant every action of OpsRamp's read-only policy; otherwise the reason says what is
    missing (by action). `external_id` None: not known yet (Observe before one was generated)."""
    iam = account.iam
    account_id = account.caller_account_id()
    name = arn.rsplit("/", 1)[-1]
    role = iam.get_role(name)
    if role is None or role.arn != arn:
        raise NeedsAttention(
            "RoleNotFound",
            f"IAM role {arn} (spec.role.arn) does not exist in account {account_id}: create it (it is managed "
            "outside this operator), or fix spec.role.arn.",
        )
    uid = role.tags.get(TAG_OWNER_UID)
    if uid is not None and uid != owner.uid:
        log.info("IAM role %s named in spec.role.arn is managed for AWSIntegration uid %s", arn, uid)
        raise NotOwned(
            f"IAM role {arn} is managed by this operator for another AWSIntegration; spec.role.arn must name a role "
            "managed outside the operator"
        )
    accounts = ", ".join(opsramp_accounts)
    admits, problems = trust_problems(role.trust_policy, opsramp_accounts, external_id)
    if not admits:
        raise NeedsAttention(
            "RoleTrustInvalid",
            f"IAM role {arn}'s trust policy does not let OpsRamp's AWS account ({accounts}) assume it with this "
            "resource's External ID: it needs an Allow of sts:AssumeRole for arn:aws:iam::<OpsRamp's account>:root "
            "on the condition StringEquals sts:ExternalId = the value in the External ID Secret. The operator "
            "writes nothing in IAM for a role named in spec.role.arn: ask whoever manages the role.",
        )
    if problems:
        raise NeedsAttention(
            "RoleTrustInvalid",
            f"IAM role {arn}'s trust policy lets OpsRamp assume it with this resource's External ID, but "
            f"{'; '.join(problems)}: remove those statements (whoever manages the role; the operator writes "
            "nothing in IAM for a role named in spec.role.arn).",
        )
    documents: list[dict[str, Any]] = []
    for policy_arn in iam.list_attached(name) or ():
        policy = iam.get_policy(policy_arn)
        if policy is not None:
            documents.append(policy.document)
    for inline in iam.list_inline(name):
        document = iam.get_inline(name, inline)
        if document is not None:
            documents.append(document)
    boundary = None
    if role.permissions_boundary_arn:
        fence = iam.get_policy(role.permissions_boundary_arn)
        boundary = fence.document if fence is not None else None
    missing = missing_actions(required_actions, documents, boundary)
    if missing:
        fence_hint = " or its permissions boundary" if boundary is not None else ""
        raise NeedsAttention(
            "RolePermissionsMissing",
            f"IAM role {arn} does not grant {len(missing)} of the {len(required_actions)} actions of OpsRamp's "
            f"read-only policy (docs/permission-policy.md) on every resource: {', '.join(missing)}. Attach a "
            f"policy granting them (or remove what denies them{fence_hint}); the operator writes nothing in IAM "
            "for a role named in spec.role.arn.",
        )
    return RoleOutcome(
        arn=role.arn,
        account_id=account_id,
        policy_arns=(),
        policy_digest=policy_digest(documents) if documents else "",
        changes=(),
        created=False,
        last_changed=role.create_date,
        previous_external_ids=trust_external_ids(role.trust_policy),
    )


ALREADY_EXISTS = "AwsEntityAlreadyExists"


def _create_fresh(
    iam: IamRoles,
    desired: DesiredRole,
    account_id: str,
    documents: list[dict[str, Any]],
    our_arns: list[str],
    extras: tuple[str, ...],
) -> RoleOutcome | None:
    """Create the role and its policies without looking first; None when IAM says something already exists.

    Looking first (GetRole, GetPolicy) cost two reads per new resource, on the API that bounds a fleet's creation.
    Ownership is kept all the same: CreateRole fails on any existing role, so an existing one (ours after a crash,
    or someone else's) goes through the observing path and its checks; a policy name someone else holds is found
    before anything is attached, and what this pass created is deleted again before NotOwned is raised, so nothing
    is left half-created.
    """
    owner = desired.owner
    tags = {**desired.tags, **owner.tags()}
    try:
        role = iam.create_role(
            desired.name,
            path=desired.path,
            trust_policy=desired.trust_policy,
            max_session_duration=desired.max_session_duration,
            description=desired.description,
            permissions_boundary_arn=desired.permissions_boundary_arn,
            tags=tags,
        )
    except TransientError as exc:
        if exc.reason == ALREADY_EXISTS:
            return None
        raise
    run = _Pass()
    run.wrote(f"created role {desired.name}")
    made: list[str] = []
    for index, (arn, document) in enumerate(zip(our_arns, documents, strict=True), 1):
        name = policy_name(desired.name, index)
        try:
            iam.create_policy(
                name,
                desired.path,
                document,
                f"OpsRamp read-only permissions for IAM role {desired.name}, part {index}; managed by "
                f"{MANAGED_BY_VALUE}",
                tags,
            )
        except TransientError as exc:
            if exc.reason != ALREADY_EXISTS:
                raise
            existing = iam.get_policy(arn)
            if existing is not None and not _is_owned(existing.tags, owner):
                for undo in reversed(made):
                    iam.delete_policy(undo)
                iam.delete_role(desired.name)
                _check_owned("policy", existing.name, existing.tags, owner)
            return None  # ours (left by a crash) or gone again: the observing path takes it from here
        made.append(arn)
        run.wrote(f"created policy {name}")
    for arn in (*our_arns, *extras):
        iam.attach(desired.name, arn)
        run.wrote(f"attached {arn}")
    last_changed = run.last_grant_change or role.create_date
    return RoleOutcome(
        arn=role.arn,
        account_id=account_id,
        policy_arns=(*our_arns, *extras),
        policy_digest=policy_digest(documents) if documents else "",
        changes=tuple(run.changes),
        created=True,
        last_changed=last_changed,
        previous_external_ids=None,
    )


def _update_role(
    iam: IamRoles, role: ObservedRole, desired: DesiredRole, role_tags: Mapping[str, str], run: _Pass
) -> None:
    """Bring an existing (owned) role's trust, settings, boundary and tags to the desired state."""
    name = desired.name
    if not policies_equal(role.trust_policy, desired.trust_policy):
        iam.update_trust(name, desired.trust_policy)
        run.wrote("updated trust policy")
    if role.max_session_duration != desired.max_session_duration or role.description != desired.description:
        iam.update_role(name, desired.max_session_duration, desired.description)
        run.wrote("updated max session duration and description", affects_grants=False)
    if desired.permissions_boundary_arn is None:
        if role.permissions_boundary_arn is not None:
            iam.delete_boundary(name)
            run.wrote("removed permissions boundary")
    elif role.permissions_boundary_arn != desired.permissions_boundary_arn:
        iam.put_boundary(name, desired.permissions_boundary_arn)
        run.wrote("set permissions boundary")
    to_set = {k: v for k, v in role_tags.items() if role.tags.get(k) != v}
    # The spec owns the role's whole tag set; "aws:" tags belong to AWS services and cannot be removed.
    to_remove = {k for k in role.tags if k not in role_tags and not k.lower().startswith("aws:")}
    if to_set:
        iam.tag_role(name, to_set)
        run.wrote(f"tagged role ({', '.join(sorted(to_set))})", affects_grants=False)
    if to_remove:
        iam.untag_role(name, to_remove)
        run.wrote(f"untagged role ({', '.join(sorted(to_remove))})", affects_grants=False)


def delete_role(account: Account, name: str, path: str, owner: Owner) -> bool:
    """Remove the role and the policies we created, in the order IAM requires; True if anything was deleted.

    A role that is not ours raises `NotOwned` before anything is touched; a role already gone is success
    (its leftover policies, e.g. from a crash during create, are still cleaned up).
    """
    iam = account.iam
    parts = _Parts.of(account, path, name)
    role = iam.get_role(name)
    attached: tuple[str, ...] = ()
    if role is not None:
        _check_owned("role", role.name, role.tags, owner)
        attached = iam.list_attached(name) or ()
    ours = _find_leftovers(iam, parts, 1, attached, owner)
    deleted = False
    if role is not None:
        # Every managed policy goes, foreign ones included: IAM refuses to delete a role with attachments.
        for arn in attached:
            deleted |= iam.detach(name, arn)
        for inline in iam.list_inline(name):
            deleted |= iam.delete_inline(name, inline)
        for profile in iam.list_instance_profiles(name):
            deleted |= iam.remove_from_instance_profile(name, profile)
    for policy in ours:  # highest part first
        deleted |= iam.delete_policy(policy.arn)
    if role is not None:
        deleted |= iam.delete_role(name)
    return deleted


def ensure_role_usable(outcome: RoleOutcome, now: datetime, settle_seconds: float) -> None:
    """Raise `RolePropagating` (temporary) while the role's last grant change is younger than `settle_seconds`.

    IAM is eventually consistent: a new role or trust policy can take seconds to be assumable. Waiting is the
    caller's retry with `retry_after`, never a sleep inside a handler.
    """
    if outcome.last_changed is None or settle_seconds <= 0:
        return
    age = (now - outcome.last_changed).total_seconds()
    if age >= settle_seconds:
        return
    # A clock behind AWS's makes the age negative: never ask for more than one full settle period.
    remaining = min(settle_seconds, settle_seconds - age)
    raise TransientError(
        "RolePropagating",
        f"IAM role {outcome.arn} changed {max(0.0, age):.0f}s ago; waiting for IAM to propagate it",
        retry_after=max(1.0, remaining),
    )
