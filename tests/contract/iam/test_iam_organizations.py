"""AWS Organizations in moto, over the wire: the adapter's account listing, and member-account credentials that act in
the member account (moto maps an assumed role's keys to the role's account) or are refused when the member role is
gone (the sandbox answers AccessDenied as AWS does)."""

from __future__ import annotations

import pytest

from opsramp_aws_operator.aws import AwsSessions
from opsramp_aws_operator.errors import NeedsAttention
from opsramp_sandbox.aws import DEFAULT_ACCOUNT_ID, MEMBER_ROLE, MotoHandle, create_organization, member_iam

TRUST = '{"Version": "2012-10-17", "Statement": []}'


def test_accounts_under_an_ou_include_nested_ous_and_only_them(moto: MotoHandle, sessions: AwsSessions) -> None:
    """accounts_under(OU) lists that OU's accounts and its nested OUs' accounts, no others; the root lists all."""
    org = create_organization(moto.url, {"a": 2, "b": 1})
    client = org.client()
    nested = client.create_organizational_unit(ParentId=org.units["a"], Name="a-nested")["OrganizationalUnit"]["Id"]
    org.units["a-nested"] = nested
    deep = org.add_account("a-nested", "deep")
    organizations = sessions.default().organizations
    under_a = {a.account_id for a in organizations.accounts_under(org.units["a"])}
    assert under_a == {*org.accounts["a"], deep}
    assert {a.account_id for a in organizations.accounts_under(org.units["b"])} == set(org.accounts["b"])
    (root,) = organizations.roots()
    everything = {a.account_id for a in organizations.accounts_under(root)}
    assert {*org.all_accounts} <= everything
    assert DEFAULT_ACCOUNT_ID in everything  # the management account is a member of its organization


def test_member_role_credentials_write_in_the_member_account(moto: MotoHandle, sessions: AwsSessions) -> None:
    """A role created through the assumed member role exists in the member account, not in the management account."""
    org = create_organization(moto.url, {"a": 1})
    (member,) = org.accounts["a"]
    account = sessions.for_target(f"arn:aws:iam::{member}:role/{MEMBER_ROLE}")
    assert account.caller_account_id() == member
    account.iam.client.create_role(RoleName="landed-here", AssumeRolePolicyDocument=TRUST)
    assert (
        member_iam(moto.url, member)
        .get_role(RoleName="landed-here")["Role"]["Arn"]
        .startswith(f"arn:aws:iam::{member}:")
    )
    assert sessions.default().iam.get_role("landed-here") is None


def test_assume_is_refused_once_the_member_role_is_gone(moto: MotoHandle, sessions: AwsSessions) -> None:
    """Without OrganizationAccountAccessRole in the member account, AssumeRole is AccessDenied (needs a person)."""
    org = create_organization(moto.url, {"a": 2})
    broken, healthy = org.accounts["a"]
    org.break_member_role(broken)
    with pytest.raises(NeedsAttention) as refused:
        sessions.for_target(f"arn:aws:iam::{broken}:role/{MEMBER_ROLE}").caller_account_id()
    assert refused.value.reason == "AwsAccessDenied"
    assert sessions.for_target(f"arn:aws:iam::{healthy}:role/{MEMBER_ROLE}").caller_account_id() == healthy
