"""The AWSIntegration contract: pydantic models for spec and status, the one source the CRD is generated from.

Every field carries a description (it becomes `kubectl explain` text) and the validation the API server can
do on its own. Defaults live here and therefore in the CRD schema: the operator never writes them into spec.
Rules a structural schema cannot express (CEL) are attached as `x-kubernetes-validations` and repeated as
pydantic validators, so a cluster without CEL and the operator itself refuse the same input.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .constants import DEFAULT_ROLE_PATH, TAG_PREFIX

# --- patterns (Go RE2 and Python re agree on all of them) -------------------------------------------------
ACCOUNT_ID_PATTERN = r"^[0-9]{12}$"
REGION_PATTERN = r"^(All|[a-z]{2}(-[a-z]+)+-[1-9][0-9]?)$"
TENANT_ID_PATTERN = (
    r"^(client_[0-9]+|msp_[0-9]+|"
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
# https for real tenants; plain http is accepted only for loopback hosts (local emulators, port-forwards).
ENDPOINT_PATTERN = (
    r"^(https://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?"
    r"|http://(localhost|127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})(:[0-9]{1,5})?)/?$"
)
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ROLE_NAME_PATTERN = r"^[A-Za-z0-9_+=,.@-]+$"  # IAM's [\w+=,.@-], ASCII only
ROLE_PATH_PATTERN = r"^(/|/[\x21-\x7E]{1,510}/)$"
ROLE_ARN_PATTERN = r"^arn:aws(-[a-z]+)*:iam::[0-9]{12}:role/([\x21-\x7E]{0,510}/)?[A-Za-z0-9_+=,.@-]{1,64}$"
POLICY_ARN_PATTERN = r"^arn:aws(-[a-z]+)*:iam::([0-9]{12}|aws):policy/([\x21-\x7E]{0,510}/)?[A-Za-z0-9_+=,.@-]{1,128}$"
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9_+=,.@:/-]+$"
TAG_KEY_PATTERN = r"^[A-Za-z0-9 _.:/=+@-]{1,128}$"
TAG_VALUE_PATTERN = r"^[A-Za-z0-9 _.:/=+@-]{0,256}$"
RESOURCE_TYPE_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"
START_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$"
DISPLAY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.:()@/-]{0,127}$"
# AWS Organizations ids: the root (r-...) and organizational units (ou-<root>-<suffix>).
ORG_PARENT_PATTERN = r"^(r-[0-9a-z]{4,32}|ou-[0-9a-z]{4,32}-[a-z0-9]{8,32})$"
MEMBER_ROLE_NAME_PATTERN = r"^[A-Za-z0-9_+=,.@-]{1,64}$"
MAX_ACCOUNTS = 1000  # explicit spec.accounts; an organization selector may select more

BYO_EXCLUSIVE_MESSAGE = (
    "role.arn (a role someone else manages) excludes role.name, role.permissionsBoundaryArn, "
    "role.managedPolicyArns and role.tags"
)

ADOPT_BYO_MESSAGE = "adopt.role takes over a role to manage it; role.arn names one managed elsewhere: not both"

FLEET_EXCLUSIVE_MESSAGE = (
    "accounts and organization give the role to many accounts: role.arn, adopt, installAllLinkedAccounts and "
    "managementPolicy Observe apply to one account only, not together with them"
)
FLEET_CEL = (
    "!((has(self.accounts) && size(self.accounts) > 0) || has(self.organization)) || "
    "(!(has(self.role) && has(self.role.arn)) && !(has(self.adopt) && ((has(self.adopt.role) && self.adopt.role) || "
    "(has(self.adopt.integration) && self.adopt.integration))) && "
    "!(has(self.installAllLinkedAccounts) && self.installAllLinkedAccounts) && "
    "!(has(self.managementPolicy) && self.managementPolicy == 'Observe'))"
)

MAX_USER_TAGS = 45  # IAM allows 50 tags per role; the operator adds its own ownership tags.
MAX_EXTRA_POLICIES = 9  # 10 managed policies per role by default quota; one is at least ours.


class _Model(BaseModel):
    """Frozen, camelCase on the wire, unknown fields refused (like strict field validation)."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        strict=True,  # like the API server: "3600" is not an integer, "yes" is not a boolean
    )


AccountId = Annotated[str, StringConstraints(pattern=ACCOUNT_ID_PATTERN)]
Region = Annotated[str, StringConstraints(pattern=REGION_PATTERN)]
SecretName = Annotated[str, StringConstraints(pattern=SECRET_NAME_PATTERN, min_length=1, max_length=253)]
PolicyArn = Annotated[str, StringConstraints(pattern=POLICY_ARN_PATTERN, max_length=2048)]
TagValue = Annotated[str, StringConstraints(pattern=TAG_VALUE_PATTERN, max_length=256)]


class SecretRef(_Model):
    """A Secret in the resource's own namespace."""

    name: SecretName = Field(description="Name of a Secret in the same namespace as the AWSIntegration.")


class OpsRampSpec(_Model):
    """Where the OpsRamp tenant is and how to authenticate to it."""

    endpoint: str = Field(
        pattern=ENDPOINT_PATTERN,
        max_length=2048,
        description=(
            "Base URL of the tenant's OpsRamp API host, e.g. https://acme.api.opsramp.com "
            "(the 'API Endpoint' shown on the OpsRamp custom integration). Must be https; plain http is "
            "accepted only for loopback hosts."
        ),
        examples=["https://acme.api.opsramp.com"],
    )
    tenant_id: str = Field(
        pattern=TENANT_ID_PATTERN,
        description="OpsRamp tenant id: client_<n>, msp_<n> or a UUID (OpsRamp Setup > Accounts).",
    )
    credentials_secret_ref: SecretRef = Field(
        description=(
            "Secret in the same namespace with keys clientId and clientSecret: the key and secret of an "
            "OpsRamp API client allowed to manage integrations."
        ),
    )
    aws_account_id: AccountId | None = Field(
        default=None,
        description=(
            "OpsRamp's own 12-digit AWS account id, the principal the role trusts (shown on OpsRamp's "
            "'Install AWS Integration' page). Defaults to the operator's configured value."
        ),
    )


class RoleSpec(_Model):
    """The IAM role OpsRamp assumes in the AWS account."""

    model_config = ConfigDict(
        **_Model.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": (
                        "!has(self.arn) || (!has(self.name) && !has(self.permissionsBoundaryArn) && "
                        "(!has(self.managedPolicyArns) || size(self.managedPolicyArns) == 0) && "
                        "(!has(self.tags) || size(self.tags) == 0))"
                    ),
                    "message": BYO_EXCLUSIVE_MESSAGE,
                }
            ]
        },
    )

    arn: str | None = Field(
        default=None,
        pattern=ROLE_ARN_PATTERN,
        max_length=2048,
        description=(
            "Bring your own role: the ARN of an existing role someone else manages (in the account the operator "
            "acts in). The operator writes nothing in IAM: it checks that the role's trust lets OpsRamp's account "
            "assume it with this resource's External ID and that its policies grant OpsRamp's read-only policy, "
            "and manages only the OpsRamp side. Excludes name, permissionsBoundaryArn, managedPolicyArns and tags "
            "(path, maxSessionDuration and attachOpsRampPolicy are ignored)."
        ),
    )
    name: str | None = Field(
        default=None,
        pattern=ROLE_NAME_PATTERN,
        min_length=1,
        max_length=64,
        description=(
            "IAM role name (letters, digits and +=,.@_-, at most 64). Defaults to a name derived from the "
            "resource's namespace and name. Changing it creates the new role, moves the integration, then "
            "deletes the old role."
        ),
    )
    path: str = Field(
        default=DEFAULT_ROLE_PATH,
        pattern=ROLE_PATH_PATTERN,
        max_length=512,
        description="IAM path of the role and of the policies the operator creates; starts and ends with '/'.",
    )
    permissions_boundary_arn: PolicyArn | None = Field(
        default=None,
        description="ARN of a managed policy set as the role's permissions boundary. Unset: no boundary.",
    )
    max_session_duration: int = Field(
        default=3600,
        ge=3600,
        le=43200,
        description="Maximum session duration in seconds for OpsRamp's sessions on the role (3600 to 43200).",
    )
    tags: dict[str, TagValue] = Field(
        default_factory=dict,
        max_length=MAX_USER_TAGS,
        description=(
            "Extra IAM tags for the role and the policies the operator creates. Keys must not start with "
            f"'aws:' or '{TAG_PREFIX}' (reserved for ownership tags)."
        ),
        json_schema_extra={
            "maxProperties": MAX_USER_TAGS,
            "x-kubernetes-validations": [
                {
                    "rule": (
                        "self.all(k, k.matches('" + TAG_KEY_PATTERN.replace("\\", "\\\\") + "') && "
                        f"!k.startsWith('aws:') && !k.startsWith('{TAG_PREFIX}'))"
                    ),
                    "message": (
                        "tag keys are 1-128 characters of letters, digits, spaces and _.:/=+-@ and must not "
                        f"start with 'aws:' or '{TAG_PREFIX}'"
                    ),
                }
            ],
        },
    )
    managed_policy_arns: list[PolicyArn] = Field(
        default_factory=list,
        max_length=MAX_EXTRA_POLICIES,
        description="ARNs of extra managed policies to attach to the role, besides OpsRamp's policy.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    attach_opsramp_policy: bool = Field(
        default=True,
        alias="attachOpsRampPolicy",
        description=(
            "Attach the read-only permission policy the operator ships for OpsRamp (as customer-managed "
            "policies named after the role). Set false to grant permissions only via managedPolicyArns."
        ),
    )

    @model_validator(mode="after")
    def _own_role_fields(self) -> RoleSpec:
        if self.arn is not None and (
            self.name is not None or self.permissions_boundary_arn is not None or self.managed_policy_arns or self.tags
        ):
            raise ValueError(BYO_EXCLUSIVE_MESSAGE)
        return self

    @field_validator("tags")
    @classmethod
    def _check_tag_keys(cls, tags: dict[str, str]) -> dict[str, str]:
        for key in tags:
            if not re.match(TAG_KEY_PATTERN, key):
                raise ValueError(f"tag key {key!r} must be 1-128 characters of letters, digits, spaces and _.:/=+-@")
            if key.startswith(("aws:", TAG_PREFIX)):
                raise ValueError(f"tag key {key!r} uses a reserved prefix ('aws:' or '{TAG_PREFIX}')")
        return tags


class AwsSpec(_Model):
    """Which AWS account the operator acts in, and how it gets there."""

    account_id: AccountId | None = Field(
        default=None,
        description=(
            "The customer's 12-digit AWS account id the role must live in. When set, the operator checks with "
            "STS GetCallerIdentity that it acts in this account and refuses to write anything otherwise."
        ),
    )
    assume_role_arn: str | None = Field(
        default=None,
        pattern=ROLE_ARN_PATTERN,
        max_length=2048,
        description=(
            "Role the operator assumes to act in another AWS account (central cluster, many accounts). Unset: "
            "the operator's own credentials (IRSA, EKS Pod Identity or environment)."
        ),
    )
    external_id_secret_ref: SecretRef | None = Field(
        default=None,
        description=(
            "Secret (same namespace, key externalId) holding the External ID that assumeRoleArn's trust policy "
            "requires, if any (at least 16 characters)."
        ),
    )
    external_id: str | None = Field(
        default=None,
        pattern=EXTERNAL_ID_PATTERN,
        min_length=2,
        max_length=1224,
        description=(
            "Deprecated and refused: an External ID is a secret and does not belong in a spec anyone who may read "
            "the resource can see. Put it in a Secret and set externalIdSecretRef."
        ),
    )

    @model_validator(mode="after")
    def _external_id_needs_role(self) -> AwsSpec:
        if self.assume_role_arn is None:
            for field_name, value in (
                ("externalId", self.external_id),
                ("externalIdSecretRef", self.external_id_secret_ref),
            ):
                if value is not None:
                    raise ValueError(f"aws.{field_name} is only used together with aws.assumeRoleArn")
        return self


class ScheduleSpec(_Model):
    """When OpsRamp runs discovery (the profile's schedule)."""

    pattern_type: Literal["MINUTES", "HOURLY", "DAILY", "WEEKLY", "MONTHLY"] = Field(
        default="HOURLY", description="How often discovery runs: MINUTES, HOURLY, DAILY, WEEKLY or MONTHLY."
    )
    pattern: str = Field(
        default="1",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9, ]+$",
        description="The pattern for patternType, e.g. 30 (every 30 minutes), 2 (every 2 hours), MON,WED (weekly).",
    )
    start_time: str = Field(
        default="00:00:00", pattern=START_TIME_PATTERN, description="Time of day discovery starts (HH:MM:SS)."
    )


class DiscoverySpec(_Model):
    """The discovery profile the operator keeps for the integration: what OpsRamp discovers and manages."""

    resource_types: list[Annotated[str, StringConstraints(pattern=RESOURCE_TYPE_PATTERN)]] = Field(
        default_factory=lambda: ["ANY_CLOUD_RESOURCE"],
        min_length=1,
        max_length=32,
        description=(
            "OpsRamp resource types to discover (filterType, e.g. EC2, RDS, LAMBDA, LOAD_BALANCER), or "
            "ANY_CLOUD_RESOURCE for all."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    tags: dict[str, TagValue] = Field(
        default_factory=dict,
        max_length=10,
        description=(
            "Discover only resources carrying every one of these AWS tags. With tags, resourceTypes may name one "
            "type (or ANY_CLOUD_RESOURCE)."
        ),
        json_schema_extra={"maxProperties": 10},
    )
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec, description="When discovery runs.")
    manage_devices: bool = Field(
        default=True,
        description="Manage what is discovered (OpsRamp's 'MANAGE DEVICE' action), so OpsRamp monitors it.",
    )

    @model_validator(mode="after")
    def _tags_need_one_type(self) -> DiscoverySpec:
        if self.tags and len(self.resource_types) > 1:
            raise ValueError("discovery.tags can be combined with one resource type only")
        for key in self.tags:
            if not re.match(TAG_KEY_PATTERN, key):
                raise ValueError(f"discovery tag key {key!r} must be 1-128 characters of letters, digits and _.:/=+-@")
        return self


class MonitoringSpec(_Model):
    """Whether OpsRamp monitors through the integration, and what it discovers."""

    enabled: bool = Field(
        default=True,
        description=(
            "Enable (true) or disable (false) the integration in OpsRamp. The operator re-enables an integration "
            "disabled by hand while this is true, and reports it."
        ),
    )
    discovery: DiscoverySpec = Field(default_factory=DiscoverySpec, description="The discovery profile.")


class AdoptSpec(_Model):
    """Take over what exists but the operator did not create (or created for this resource before a restore)."""

    role: bool = Field(
        default=False,
        description=(
            "Take over the existing IAM role named by role.name (or the default name): one without ownership tags "
            "(made by hand, a StackSet, AFT, Control Tower), or one tagged for this namespace and name under an "
            "older UID (a backup restore). Only after checks: its trust admits only an allowed OpsRamp account, "
            "with this resource's External ID; it carries no inline policy and no managed policy the cluster's "
            "rules do not allow. Then it is tagged as this resource's and managed (and deleted) like one the "
            "operator created. Recorded in status.adopted and an Event."
        ),
    )
    integration: bool = Field(
        default=False,
        description=(
            "Take over the existing OpsRamp AWS integration with this resource's display name although it uses "
            "another role (an integration installed by hand); it must be for the same AWS account. Recorded in "
            "status.adopted and an Event."
        ),
    )


class OrganizationSpec(_Model):
    """Select member accounts of the AWS Organization the operator's credentials (spec.aws) manage."""

    organizational_units: list[Annotated[str, StringConstraints(pattern=ORG_PARENT_PATTERN)]] = Field(
        default_factory=list,
        max_length=100,
        description=(
            "Organizational unit ids (ou-...) or the root id (r-...) whose accounts, nested OUs included, are "
            "selected. Empty: every account of the organization."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    include_accounts: list[AccountId] = Field(
        default_factory=list,
        max_length=MAX_ACCOUNTS,
        description="Member accounts selected besides those of organizationalUnits (they must be in the organization).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    exclude_accounts: list[AccountId] = Field(
        default_factory=list,
        max_length=MAX_ACCOUNTS,
        description="Accounts never selected (their role and integration are removed as deletionPolicy says).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )


class AWSIntegrationSpec(_Model):
    """Desired state: one IAM role trusted by OpsRamp plus one OpsRamp AWS integration using it."""

    model_config = ConfigDict(
        **_Model.model_config,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": (
                        "!(has(self.externalIdSecretRef) && has(self.generateExternalId) && self.generateExternalId)"
                    ),
                    "message": "set externalIdSecretRef or generateExternalId, not both",
                },
                {
                    "rule": "!(has(self.role) && has(self.role.arn) && has(self.adopt) && self.adopt.role)",
                    "message": ADOPT_BYO_MESSAGE,
                },
                {
                    "rule": FLEET_CEL,
                    "message": FLEET_EXCLUSIVE_MESSAGE,
                },
            ]
        },
    )

    display_name: str | None = Field(
        default=None,
        pattern=DISPLAY_NAME_PATTERN,
        max_length=128,
        description="Name of the integration in OpsRamp. Defaults to <namespace>/<name>.",
    )
    regions: list[Region] = Field(
        min_length=1,
        max_length=64,
        description='AWS region codes OpsRamp monitors (e.g. ["us-east-1", "eu-west-1"]), or ["All"].',
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "x-kubernetes-validations": [
                {
                    "rule": "!('All' in self) || size(self) == 1",
                    "message": "'All' cannot be combined with regions",
                }
            ],
        },
    )
    install_all_linked_accounts: bool = Field(
        default=False,
        description="OpsRamp's 'Install All Linked Accounts': also monitor the organization's linked accounts.",
    )
    opsramp: OpsRampSpec = Field(description="The OpsRamp tenant and its API credentials.")
    external_id_secret_ref: SecretRef | None = Field(
        default=None,
        description=(
            "Secret (same namespace, key externalId) holding the External ID shown on OpsRamp's 'Install AWS "
            "Integration' page: the recommended way. Set this or generateExternalId."
        ),
    )
    generate_external_id: bool = Field(
        default=False,
        description=(
            "Instead of externalIdSecretRef: the operator generates an External ID and keeps it in a Secret it owns "
            "(status.externalIdSecretName). Works only if OpsRamp honours an External ID chosen by the client; if "
            "it does not, the resource never becomes Ready and says so."
        ),
    )
    monitoring: MonitoringSpec = Field(
        default_factory=MonitoringSpec, description="Whether OpsRamp monitors, and what it discovers."
    )
    role: RoleSpec = Field(default_factory=RoleSpec, description="The IAM role OpsRamp assumes.")
    aws: AwsSpec = Field(
        default_factory=AwsSpec,
        description="The AWS account the operator acts in.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.externalId) || has(self.assumeRoleArn)",
                    "message": "aws.externalId is only used together with aws.assumeRoleArn",
                }
            ],
        },
    )
    deletion_policy: Literal["Delete", "Retain"] = Field(
        default="Delete",
        description=(
            "Delete: on deletion, uninstall the integration and remove the role and the policies the operator "
            "created. Retain: leave both in place."
        ),
    )
    suspend: bool = Field(
        default=False,
        description="Stop acting on this resource (no writes to AWS or OpsRamp); status is kept.",
    )
    management_policy: Literal["Manage", "Observe"] = Field(
        default="Manage",
        description=(
            "Manage: make AWS and OpsRamp match the spec. Observe: read both sides and report every difference "
            "from the spec (status.differences, conditions, Events) while writing nothing, not even a finalizer; "
            "deleting an Observe resource touches nothing."
        ),
    )
    adopt: AdoptSpec = Field(
        default_factory=AdoptSpec,
        description="Take over an existing IAM role and/or OpsRamp integration the operator did not create.",
    )
    accounts: list[AccountId] = Field(
        default_factory=list,
        max_length=MAX_ACCOUNTS,
        description=(
            "Many accounts (docs/organizations.md): the AWS accounts that each get the same IAM role and an OpsRamp "
            "integration of their own. The operator reaches each through memberRoleName. Empty (and no "
            "organization): the one account of spec.aws."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    organization: OrganizationSpec | None = Field(
        default=None,
        description=(
            "Many accounts from AWS Organizations: the accounts of the organization (or of some of its OUs) that "
            "spec.aws's credentials manage, scanned again every organization scan interval (an operator setting)."
        ),
    )
    member_role_name: str | None = Field(
        default=None,
        pattern=MEMBER_ROLE_NAME_PATTERN,
        description=(
            "With accounts or organization: the role the operator assumes in each member account to manage the "
            "OpsRamp role there. Unset: the operator's setting (OrganizationAccountAccessRole by default)."
        ),
    )

    @model_validator(mode="after")
    def _one_external_id_source(self) -> AWSIntegrationSpec:
        # Neither is allowed here (a resource from before generateExternalId existed must still be cleaned up); the
        # operator reports it as ExternalIdSourceUnset before touching anything.
        if self.external_id_secret_ref is not None and self.generate_external_id:
            raise ValueError("set externalIdSecretRef or generateExternalId, not both")
        if self.role.arn is not None and self.adopt.role:
            raise ValueError(ADOPT_BYO_MESSAGE)
        if self.fleet and (
            self.role.arn is not None
            or self.adopt.role
            or self.adopt.integration
            or self.install_all_linked_accounts
            or self.observe_only
        ):
            raise ValueError(FLEET_EXCLUSIVE_MESSAGE)
        return self

    @field_validator("regions")
    @classmethod
    def _all_alone(cls, regions: list[str]) -> list[str]:
        if "All" in regions and len(regions) > 1:
            raise ValueError("'All' cannot be combined with regions")
        if len(set(regions)) != len(regions):
            raise ValueError("regions must not repeat")
        return regions

    def effective_display_name(self, namespace: str, name: str) -> str:
        return self.display_name or default_display_name(namespace, name)

    def effective_role_name(self, namespace: str, name: str) -> str:
        if self.role.arn is not None:
            return self.role.arn.rsplit("/", 1)[-1]
        return self.role.name or default_role_name(namespace, name)

    def effective_role_path(self) -> str:
        if self.role.arn is not None:
            path = self.role.arn.split(":role", 1)[1]
            return path[: path.rfind("/") + 1]
        return self.role.path

    @property
    def observe_only(self) -> bool:
        return self.management_policy == "Observe"

    @property
    def fleet(self) -> bool:
        """Many accounts (spec.accounts and/or spec.organization): one role per account, one integration each."""
        return bool(self.accounts) or self.organization is not None


_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(name: str) -> str:
    """`name` as a valid label value (≤ 63, alphanumeric at both ends): shortened with a hash when it is not one."""
    if len(name) <= 63 and _LABEL_VALUE_RE.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    head = re.sub(r"[^A-Za-z0-9]+$", "", name[:52])
    return f"{head}-{digest}" if head else digest


def _digest(namespace: str, name: str) -> str:
    return hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:12]


def default_role_name(namespace: str, name: str) -> str:
    """`opsramp-<namespace>_<name>`, or a prefix of it plus `+<hash>` when that would exceed 64 characters.

    `_` and `+` never occur in Kubernetes names, so two resources never share a default (team-a/prod is
    `opsramp-team-a_prod`, team/a-prod is `opsramp-team_a-prod`), and a shortened name never equals a whole one.
    """
    base = f"opsramp-{namespace}_{name}"
    if len(base) <= 64:
        return base
    return f"{base[:51]}+{_digest(namespace, name)}"


def default_display_name(namespace: str, name: str) -> str:
    """`<namespace>/<name>`, or a prefix of it plus `:<hash>` when that would exceed 128 characters (injective)."""
    base = f"{namespace}/{name}"
    if len(base) <= 128:
        return base
    return f"{base[:115]}:{_digest(namespace, name)}"


# --- status -------------------------------------------------------------------------------------------------

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(_Model):
    """A metav1.Condition."""

    type: str = Field(
        description="Condition type: Ready, RoleReady, IntegrationReady, Monitoring, Reconciling or Stalled."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.", pattern=r"^[A-Za-z]([A-Za-z0-9_]*)$")
    message: str = Field(default="", max_length=32768, description="What happened and, if needed, what to fix.")
    last_transition_time: str = Field(
        description="When the status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the condition was computed for."
    )


class AppliedIntegration(_Model):
    """The integration fields the operator last had OpsRamp accept."""

    display_name: str = Field(description="displayName sent.")
    role_arn: str = Field(description="credential.AssumeRoleARN sent.")
    regions: list[str] = Field(description="credential.Regions sent.")
    install_all_linked_accounts: bool = Field(description="Whether linked accounts were asked for.")
    account_number: str = Field(description="credential.AccountNumber sent.")
    enabled: bool | None = Field(default=None, description="Whether the integration was last enabled or disabled.")


class AdoptedObject(_Model):
    """One object the operator took over (spec.adopt)."""

    name: str = Field(description="The role's ARN or the integration's id.")
    time: str = Field(description="When it was adopted (RFC 3339).", json_schema_extra={"format": "date-time"})
    previous_owner: Literal["none", "restore", "integration"] = Field(
        description=(
            "What it carried before: none (no ownership tag), restore (this namespace and name's tags under an older "
            "UID), integration (an OpsRamp integration using another role)."
        )
    )


class AdoptedStatus(_Model):
    """What this resource adopted (spec.adopt)."""

    role: AdoptedObject | None = Field(default=None, description="The IAM role taken over.")
    integration: AdoptedObject | None = Field(default=None, description="The OpsRamp integration taken over.")


class RotationStatus(_Model):
    """Where an External ID rotation is; values never appear, only digests."""

    phase: Literal["Overlapping", "Switching", "Verifying", "Completed", "RolledBack"] = Field(
        description=(
            "Overlapping: the trust policy accepts the old and the new External ID; Switching: OpsRamp is being moved "
            "to the new one; Verifying: waiting for OpsRamp's verdict with the new one (Monitoring); Completed: the "
            "old one is dropped; RolledBack: the rotation could not complete, the old one is back (see message)."
        )
    )
    from_digest: str = Field(description="Digest of the External ID rotated from.")
    to_digest: str = Field(description="Digest of the External ID rotated to.")
    started_time: str = Field(
        description="When the rotation started (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    message: str = Field(default="", max_length=4096, description="What happened (why it rolled back).")
    request: str | None = Field(
        default=None,
        max_length=256,
        description="The value of the rotate-external-id annotation this rotation answered, if any.",
    )
    count: int = Field(default=0, ge=0, description="Rotations completed by this resource.")


class AccountStatus(_Model):
    """One member account of a many-account resource (status.accounts)."""

    account_id: str = Field(description="The AWS account.")
    state: Literal["Ready", "Installed", "Pending", "Failed", "Removing", "Disabled"] = Field(
        description=(
            "Ready: the role and the integration match the spec and OpsRamp monitors through it (its verdict on the "
            "role, or no failure reported within the grace); Installed: role and integration in place, OpsRamp's "
            "verdict on the role not known yet; Pending: in progress; Failed: this account needs attention (reason, "
            "message), the others go on; Removing: no longer selected, being cleaned up; Disabled: "
            "spec.monitoring.enabled is false."
        )
    )
    role_arn: str | None = Field(default=None, description="The role in this account.")
    integration_id: str | None = Field(default=None, description="This account's integration in OpsRamp.")
    discovery_profile_id: int | None = Field(default=None, description="This account's discovery profile in OpsRamp.")
    credentials_applied_time: str | None = Field(
        default=None, description="When the credentials were last written to this account's integration."
    )
    reason: str | None = Field(
        default=None,
        description="Ready: OpsRamp's verdict (RoleAssumed, NoFailureReported); otherwise why not Ready (CamelCase).",
    )
    message: str | None = Field(default=None, max_length=1024, description="What to fix, when Failed.")


class AWSIntegrationStatus(_Model):
    """Observed state, written only by the operator."""

    observed_generation: int | None = Field(default=None, description="The last metadata.generation acted on.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (summary), RoleReady, IntegrationReady, Monitoring, Reconciling and Stalled.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    role_arn: str | None = Field(default=None, description="ARN of the IAM role OpsRamp assumes.")
    integration_id: str | None = Field(default=None, description="Id of the installed integration in OpsRamp.")
    account_id: str | None = Field(default=None, description="AWS account the role lives in.")
    external_id_secret_name: str | None = Field(
        default=None, description="Secret holding the External ID (the referenced one or the generated one)."
    )
    policy_digest: str | None = Field(
        default=None, description="Digest of the permission policy documents attached by the operator."
    )
    discovery_profile_id: int | None = Field(
        default=None, description="Id of the discovery profile the operator keeps for the integration in OpsRamp."
    )
    credentials_applied_time: str | None = Field(
        default=None,
        description=(
            "When OpsRamp last accepted the integration's credentials (install or credential change); Monitoring "
            "waits for OpsRamp's verdict on them (RFC 3339)."
        ),
        json_schema_extra={"format": "date-time"},
    )
    applied_integration: AppliedIntegration | None = Field(
        default=None,
        description="What the operator last sent OpsRamp (no secrets), for the fields OpsRamp's answers leave out.",
    )
    attached_policy_arns: list[str] | None = Field(
        default=None,
        description=(
            "Managed policies the operator attached to the role (its own and spec.role.managedPolicyArns), so "
            "an ARN removed from the spec is detached while policies attached by others are left alone."
        ),
    )
    external_id_digest: str | None = Field(
        default=None,
        description=(
            "Digest of the External ID OpsRamp was last given (keyed by the resource's UID; never the value): how a "
            "changed External ID is recognised."
        ),
    )
    external_id_rotation: RotationStatus | None = Field(
        default=None, description="The last or current External ID rotation."
    )
    handled_rotation_request: str | None = Field(
        default=None,
        max_length=256,
        description="The value of the rotate-external-id annotation the operator last acted on.",
    )
    adopted: AdoptedStatus | None = Field(default=None, description="What was taken over through spec.adopt.")
    differences: list[str] | None = Field(
        default=None,
        description=(
            "managementPolicy Observe: every difference between AWS / OpsRamp and the spec, one per line "
            "(what Manage would change)."
        ),
    )
    accounts: list[AccountStatus] | None = Field(
        default=None,
        description=(
            "Many accounts: one row per account, those not Ready first, at most the operator's status limit "
            "(accountsOmitted counts the Ready rows left out, so the object stays small at thousands of accounts)."
        ),
    )
    account_ids: list[str] | None = Field(
        default=None,
        description=(
            "Many accounts: every account the operator has acted in for this resource (recorded before its first "
            "write there), so an account no longer selected, and every account on delete, is cleaned up."
        ),
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    accounts_ready: str | None = Field(default=None, description="Many accounts: Ready accounts / selected accounts.")
    accounts_omitted: int | None = Field(default=None, ge=0, description="Ready rows left out of status.accounts.")
    last_sync_time: str | None = Field(
        default=None,
        description=(
            "When a pass last made AWS and OpsRamp match the spec: it changed something, or the resource became "
            "Ready (RFC 3339). Resyncs that find everything matching leave status untouched."
        ),
        json_schema_extra={"format": "date-time"},
    )
    kopf: dict[str, Any] | None = Field(
        default=None,
        description="Internal bookkeeping of the kopf framework.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
