"""`opsramp-aws-operator probe`: ask a real tenant each open question about OpsRamp's API and name its variant.

Read-only by default (tokens, listings, an unknown id, the activity and discovery APIs). With `--scratch` it also
installs one test integration (and, for the role-check question, a second one with a role that does not exist),
changes it, and uninstalls everything it made, whatever happens. The answers use the switch names of
`variants.Contract`, the same ones the sandbox emulator plays, so a tenant's answers can be replayed in tests.

Credentials come from the environment (OPSRAMP_CLIENT_ID, OPSRAMP_CLIENT_SECRET, and for --scratch the External ID
the test role trusts in OPSRAMP_PROBE_EXTERNAL_ID), never from the command line; no secret, token or External ID is
ever printed: only field names, status codes and the values OpsRamp uses for types and states.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import requests

from .variants import ECHO_FIELDS, PROFILES, Contract, describe
from .wire import Scrubber, WireFormat, error_text, mentions

UNKNOWN_ID = "INTG-00000000-0000-0000-0000-000000000000"
ECHO_SWITCHES = ("echo", "search_echo")
# Whether OpsRamp shows this key is the linked-accounts question (Q3), not part of the echo questions.
LINKED_FIELD = "credential." + WireFormat.LINKED_ACCOUNTS_KEY
FOREIGN_TENANT = "client_999999999"


@dataclass
class Answer:
    number: str  # the question's number in docs/opsramp-api-assumptions.md
    question: str
    switch: str | None  # the Contract field it sets, if any
    value: Any  # the answer in the switch's terms; None: not found out
    note: str = ""


@dataclass
class Probe:
    """One run against one tenant."""

    endpoint: str
    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)
    timeout: float = 30.0
    http: requests.Session = field(default_factory=requests.Session, repr=False)
    answers: list[Answer] = field(default_factory=list)
    token_path: str = WireFormat.TOKEN_PATH
    _token: str = field(default="", repr=False)
    _secrets: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.endpoint = self.endpoint.rstrip("/")
        self._secrets.append(self.client_secret)

    # -- plumbing -----------------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        return Scrubber([*self._secrets, self._token])(text)

    def answer(self, number: str, question: str, switch: str | None, value: Any, note: str = "") -> None:
        self.answers.append(Answer(number, question, switch, value, self.scrub(note)))

    def grant(self, path: str) -> requests.Response:
        return self.http.post(
            self.endpoint + path,
            data={"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret},
            headers={"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
            timeout=self.timeout,
        )

    def token(self) -> str:
        if not self._token:
            response = self.grant(self.token_path)
            response.raise_for_status()
            self._token = str(response.json()["access_token"])
            self._secrets.append(self._token)
        return self._token

    def call(
        self, method: str, path: str, *, token: str | None = None, retry_auth: bool = True, **kwargs: Any
    ) -> requests.Response:
        url = self.endpoint + path.format(tenant_id=self.tenant_id)
        for _ in range(5):
            headers = {"Authorization": f"Bearer {token or self.token()}", "Accept": "application/json"}
            response = self.http.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            if response.status_code == 429:
                time.sleep(min(30.0, float(response.headers.get("Retry-After") or 2)))
                continue
            if retry_auth and token is None and response.status_code in (401, 407):
                self._token = ""  # expired meanwhile: one new token
                continue
            return response
        return response

    # -- read-only questions --------------------------------------------------------------------------------

    def probe_tokens(self) -> None:
        first = self.grant(WireFormat.TOKEN_PATH)
        if first.status_code == 404:
            first = self.grant(WireFormat.LEGACY_TOKEN_PATH)
            self.token_path = WireFormat.LEGACY_TOKEN_PATH
            self.answer("11", "Token path", "token_path", "legacy" if first.ok else None)
        else:
            self.answer("11", "Token path", "token_path", "tenancy" if first.ok else None)
        if not first.ok:
            raise SystemExit(
                f"the token endpoint answered HTTP {first.status_code}: check the endpoint and credentials"
            )
        body = first.json()
        self._token = str(body["access_token"])
        self._secrets.append(self._token)
        expires = body.get("expires_in")
        self.answer("10", "expires_in type", "expires_in", "string" if isinstance(expires, str) else "integer")
        second = self.grant(self.token_path)
        reused = second.ok and str(second.json().get("access_token")) == self._token
        if second.ok:
            self._secrets.append(str(second.json().get("access_token")))
        self.answer("-", "A second grant returns the same token until it expires", "token_reuse", reused)
        invalid = self.call(
            "GET", WireFormat.SEARCH_PATH, token="probe-invalid-" + secrets.token_hex(8), params={"pageSize": "1"}
        )
        self.answer(
            "9",
            "How an invalid or expired token is refused",
            "token_rejected",
            invalid.status_code if invalid.status_code in (400, 401, 407) else None,
            f"HTTP {invalid.status_code}",
        )
        foreign = self.http.get(
            self.endpoint + WireFormat.SEARCH_PATH.format(tenant_id=FOREIGN_TENANT),
            headers={"Authorization": f"Bearer {self.token()}"},
            params={"pageSize": "1"},
            timeout=self.timeout,
        )
        self.answer(
            "19",
            "A token used on another tenant's path",
            "foreign_tenant",
            foreign.status_code if foreign.status_code in (401, 403) else None,
            f"HTTP {foreign.status_code}",
        )

    def probe_listing(self) -> list[Mapping[str, Any]]:
        query = self.call(
            "GET", WireFormat.SEARCH_PATH, params={"queryString": WireFormat.SEARCH_QUERY, "pageSize": "100"}
        )
        plain = self.call("GET", WireFormat.SEARCH_PATH, params={"pageSize": "100"})
        if query.status_code == 400:
            self.answer("12", "installed/search honours queryString", "search_query", "refused")
        elif query.ok and plain.ok:
            with_query = query.json().get("results") or []
            everything = plain.json().get("results") or []
            non_aws = [r for r in everything if str((r.get("integration") or {}).get("id", "")).upper() != "AWS"]
            if not non_aws:
                self.answer("12", "installed/search honours queryString", "search_query", None, "no other types")
            else:
                honoured = len(with_query) < len(everything)
                self.answer(
                    "12", "installed/search honours queryString", "search_query", "honoured" if honoured else "ignored"
                )
        big = self.call("GET", WireFormat.SEARCH_PATH, params={"pageSize": "500"})
        if big.status_code == 400:
            self.answer("13", "pageSize above the maximum", "oversized_page", "refuse")
        elif big.ok:
            size = big.json().get("pageSize")
            self.answer(
                "13",
                "pageSize above the maximum",
                "oversized_page",
                "clamp" if isinstance(size, int) and size < 500 else None,
                f"answered pageSize {size}",
            )
            if isinstance(size, int):
                self.answer("13", "Largest pageSize", "max_page_size", size)
        listing = plain.json().get("results") if plain.ok else []
        return [r for r in listing or [] if isinstance(r, Mapping)]

    def probe_unknown_id(self) -> None:
        response = self.call("GET", WireFormat.INSTALLED_PATH.replace("{integration_id}", UNKNOWN_ID))
        status = response.status_code
        self.answer(
            "17",
            "Answer for an unknown installed id",
            "unknown_id",
            status if status in (400, 404, 500) else None,
            f"HTTP {status}: {error_text(response.text)[:80]}",
        )

    def probe_apis(self) -> None:
        activity = self.call("GET", WireFormat.ACTIVITY_PATH, params={"pageSize": "1"})
        self.answer("8", "integrations/activity answers", None, activity.ok, f"HTTP {activity.status_code}")
        discovery = self.call("GET", WireFormat.DISCOVERY_PATH)
        self.answer("-", "policies/discovery answers", None, discovery.ok, f"HTTP {discovery.status_code}")

    # -- scratch questions (installs) -----------------------------------------------------------------------

    def scratch(self, account: str, role_arn: str, external_id: str, bad_role_arn: str, wait: float) -> None:
        self._secrets.append(external_id)
        made: list[str] = []
        name = f"opsramp-probe-{secrets.token_hex(4)}"
        try:
            self._scratch(name, account, role_arn, external_id, bad_role_arn, wait, made)
        finally:
            for integration_id in made:
                self.call(
                    "DELETE",
                    WireFormat.INSTALLED_PATH.replace("{integration_id}", integration_id),
                    json={"uninstallReason": "opsramp-aws-operator probe: scratch integration"},
                )

    def _body(self, name: str, account: str, role: str, external_id: str, aws_type: str, empty: bool) -> dict[str, Any]:
        credential: dict[str, Any] = {
            "credentialType": WireFormat.CREDENTIAL_TYPE,
            "AWSType": aws_type,
            "AccountNumber": account,
            "AssumeRoleARN": role,
            "ExternalId": external_id,
            "Regions": "us-east-1",
        }
        if empty:
            credential.update(dict.fromkeys(WireFormat.KEY_FIELDS, ""))
        return {"displayName": name, "credential": credential}

    def _install(self, body: Mapping[str, Any]) -> requests.Response:
        return self.call("POST", WireFormat.INSTALL_AWS_PATH, json=body)

    def _get(self, integration_id: str) -> Mapping[str, Any]:
        response = self.call("GET", WireFormat.INSTALLED_PATH.replace("{integration_id}", integration_id))
        return response.json() if response.ok else {}

    def _scratch(
        self,
        name: str,
        account: str,
        role_arn: str,
        external_id: str,
        bad_role_arn: str,
        wait: float,
        made: list[str],
    ) -> None:
        # Q1, Q2: which AWSType, and the access-key fields absent or empty.
        installed: Mapping[str, Any] | None = None
        assume_refused = False
        chosen: tuple[str | None, bool | None] = (None, None)
        for aws_type in WireFormat.AWS_TYPE_CHOICES:
            for empty in (False, True):
                response = self._install(self._body(name, account, role_arn, external_id, aws_type, empty))
                text = error_text(response.text)
                if response.ok and response.json().get("id"):
                    installed = response.json()
                    made.append(str(installed["id"]))
                    chosen = (aws_type, empty)
                    break
                if mentions(text, WireFormat.ASSUME_ROLE_FAILURE_MARKERS):
                    assume_refused, chosen = True, (aws_type, empty)
                    break
            if installed is not None or assume_refused:
                break
        self.answer("1", "AWSType of the External-ID install", "aws_type", chosen[0])
        self.answer(
            "2",
            "AccessKey/SecurityKey",
            "access_keys",
            None if chosen[1] is None else ("empty" if chosen[1] else "absent"),
        )
        if installed is None:
            if assume_refused:
                self.answer("8", "When OpsRamp checks the role", "role_check", "sync")
                self.answer(
                    "15",
                    "OpsRamp uses the client's External ID",
                    "external_id",
                    "generated",
                    "OpsRamp could not assume a role that trusts it with this External ID (if the role is right)",
                )
            return
        integration_id = str(installed["id"])
        # Q5, Q6, Q20, Q4: what GET and search show.
        got = self._get(integration_id)
        echo = _fields(got)
        listing = self.call("GET", WireFormat.SEARCH_PATH, params={"pageSize": "100"})
        results = (listing.json().get("results") or []) if listing.ok else []
        listed: Mapping[str, Any] = next((r for r in results if str(r.get("id")) == integration_id), {})
        self.answer("5", "Fields GET shows", "echo", sorted(echo))
        search_echo = _fields(listed)
        self.answer("5", "Fields search shows", "search_echo", None if search_echo == echo else sorted(search_echo))
        regions = (got.get("credential") or {}).get("Regions")
        self.answer(
            "4",
            "Regions in answers",
            "regions_echo",
            None if regions is None else ("list" if isinstance(regions, list) else "string"),
        )
        status = got.get("status")
        if isinstance(status, str):
            self.answer(
                "20", "Status values", "status_values", "ENABLED/DISABLED" if status.isupper() else "enabled/disabled"
            )
        path = WireFormat.INSTALLED_PATH.replace("{integration_id}", integration_id)
        # Q3: the linked-accounts key, on an install of its own (an update may not change the credential at all).
        aws_type, empty = str(chosen[0]), bool(chosen[1])
        body = self._body(name + "-linked", account, role_arn, external_id, aws_type, empty)
        body["credential"][WireFormat.LINKED_ACCOUNTS_KEY] = "false"
        response = self._install(body)
        if response.status_code == 400 and WireFormat.LINKED_ACCOUNTS_KEY.lower() in response.text.lower():
            linked: str | None = "rejected"
        elif response.ok and response.json().get("id"):
            made.append(str(response.json()["id"]))
            shown = WireFormat.LINKED_ACCOUNTS_KEY in (self._get(str(response.json()["id"])).get("credential") or {})
            full = {"displayName", "status", "credential.AssumeRoleARN"} <= echo
            linked = "honoured" if shown else ("ignored" if full else None)
        else:
            linked = None
        self.answer("3", "credential.InstallAllLinkedAccounts", "linked_accounts", linked)
        # Q7: does an update change the credential?
        body = self._body(name, account, role_arn, external_id, aws_type, empty)
        body["credential"]["Regions"] = "us-east-1,us-west-2"
        response = self.call("POST", path, json=body)
        if response.status_code == 400 and mentions(error_text(response.text), WireFormat.CREDENTIAL_IMMUTABLE_MARKERS):
            updates: str | None = "rejected"
        elif response.ok:
            after = (self._get(integration_id).get("credential") or {}).get("Regions")
            if after is None:
                updates = None
            else:
                text = ",".join(after) if isinstance(after, list) else str(after)
                updates = "applied" if "us-west-2" in text else "ignored"
        else:
            updates = None
        self.answer("7", "An update changes the credential", "credential_updates", updates)
        # Q14: a second integration of the same name.
        second = self._install(self._body(name, account, role_arn, external_id, aws_type, empty))
        if second.ok and second.json().get("id"):
            made.append(str(second.json()["id"]))
            self.answer("14", "Duplicate display names", "duplicate_names", "allowed")
        elif second.status_code == 400:
            self.answer("14", "Duplicate display names", "duplicate_names", "refused")
        # Enable / disable.
        off = self.call("POST", path + "/disable")
        on = self.call("POST", path + "/enable")
        self.answer("-", "enable/disable answer", None, off.ok and on.ok, f"HTTP {off.status_code}/{on.status_code}")
        # Q8 and Q15: when OpsRamp checks the role, and with whose External ID.
        bad = self._install(self._body(name + "-badrole", account, bad_role_arn, external_id, aws_type, empty))
        if bad.status_code == 400 and mentions(error_text(bad.text), WireFormat.ASSUME_ROLE_FAILURE_MARKERS):
            self.answer("8", "When OpsRamp checks the role", "role_check", "sync")
            self.answer("15", "OpsRamp uses the client's External ID", "external_id", "client")
            return
        if not (bad.ok and bad.json().get("id")):
            self.answer("8", "When OpsRamp checks the role", "role_check", None, f"HTTP {bad.status_code}")
            return
        bad_id = str(bad.json()["id"])
        made.append(bad_id)
        deadline = time.monotonic() + wait
        bad_verdict = good_verdict = None
        while time.monotonic() < deadline and (bad_verdict is None or good_verdict is None):
            bad_verdict = bad_verdict or self._verdict(bad_id)
            good_verdict = good_verdict or self._verdict(integration_id)
            if bad_verdict is None or good_verdict is None:
                time.sleep(min(2.0, wait / 10))
        if bad_verdict == "FAILED":
            self.answer("8", "When OpsRamp checks the role", "role_check", "async")
        else:
            self.answer("8", "When OpsRamp checks the role", "role_check", "never", f"no verdict within {wait:.0f}s")
        external = {"SUCCESS": "client", "FAILED": "generated"}.get(good_verdict or "")
        self.answer("15", "OpsRamp uses the client's External ID", "external_id", external)

    def _verdict(self, integration_id: str) -> str | None:
        response = self.call(
            "GET",
            WireFormat.ACTIVITY_PATH,
            params={"queryString": f"installedintgId:{integration_id}", "pageSize": "10"},
        )
        if not response.ok:
            return None
        for record in response.json().get("results") or []:
            status = str(record.get("status", "")).upper()
            if status in WireFormat.ACTIVITY_OK:
                return "SUCCESS"
            if status in WireFormat.ACTIVITY_FAILED:
                return "FAILED"
        return None

    # -- the verdict -----------------------------------------------------------------------------------------

    def known(self) -> dict[str, Any]:
        """The switch values found out (later answers to the same switch win)."""
        out: dict[str, Any] = {}
        for answer in self.answers:
            if answer.switch and answer.value is not None:
                out[answer.switch] = frozenset(answer.value) if answer.switch in ECHO_SWITCHES else answer.value
        return out

    def variant(self) -> str:
        """The named profile the answers fit, else the switches that differ from the defaults."""
        known = self.known()

        def fits(contract: Contract, key: str, value: Any) -> bool:
            have = getattr(contract, key)
            if key == "search_echo" and have is None:
                have = contract.echo
            if key in ECHO_SWITCHES:
                return bool(frozenset(have) - {LINKED_FIELD} == frozenset(value) - {LINKED_FIELD})
            return bool(have == value)

        matches = [name for name, c in PROFILES.items() if all(fits(c, k, v) for k, v in known.items())]
        if len(matches) == 1:
            return matches[0]
        default = Contract()
        differing = {k: v for k, v in known.items() if not fits(default, k, v)}
        if not differing:
            return "default"
        if "echo" in differing:
            differing["echo"] = frozenset(differing["echo"]) | (default.echo & {LINKED_FIELD})
        return describe(differing)


def _fields(record: Mapping[str, Any]) -> frozenset[str]:
    shown = {k for k in record if k in ECHO_FIELDS}
    credential = record.get("credential")
    if isinstance(credential, Mapping):
        shown |= {f"credential.{k}" for k in credential if f"credential.{k}" in ECHO_FIELDS}
    return frozenset(shown)


def render(probe: Probe, out: TextIO) -> None:
    for answer in probe.answers:
        value = answer.value if answer.value is not None else "unknown"
        switch = f" [{answer.switch}]" if answer.switch else ""
        note = f" ({answer.note})" if answer.note else ""
        out.write(f"Q{answer.number:>2} {answer.question}: {value}{switch}{note}\n")
    out.write(f"Variant: {probe.variant()}\n")


def main(argv: list[str] | None = None, *, env: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    env = os.environ if env is None else env
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="opsramp-aws-operator probe",
        description="Answer the open questions about OpsRamp's API (docs/opsramp-api-assumptions.md) for one tenant "
        "and name its variant. Credentials: OPSRAMP_CLIENT_ID and OPSRAMP_CLIENT_SECRET in the environment.",
    )
    parser.add_argument("--endpoint", required=True, help="the tenant's API host, e.g. https://acme.api.opsramp.com")
    parser.add_argument("--tenant-id", required=True)
    parser.add_argument(
        "--scratch",
        action="store_true",
        help="also install (and remove) test integrations: needs --account-number, --role-arn and the External ID "
        "that role trusts in OPSRAMP_PROBE_EXTERNAL_ID",
    )
    parser.add_argument("--account-number", help="the AWS account of --role-arn")
    parser.add_argument("--role-arn", help="a role OpsRamp's AWS account may assume with OPSRAMP_PROBE_EXTERNAL_ID")
    parser.add_argument("--bad-role-arn", help="a role OpsRamp cannot assume (default: a name that does not exist)")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for an asynchronous role check")
    parser.add_argument("--json", action="store_true", help="print the answers as JSON")
    args = parser.parse_args(argv)
    client_id, client_secret = env.get("OPSRAMP_CLIENT_ID", ""), env.get("OPSRAMP_CLIENT_SECRET", "")
    if not client_id or not client_secret:
        parser.error("set OPSRAMP_CLIENT_ID and OPSRAMP_CLIENT_SECRET in the environment")
    probe = Probe(args.endpoint, args.tenant_id, client_id, client_secret)
    steps: list[Callable[[], Any]] = [probe.probe_tokens, probe.probe_listing, probe.probe_unknown_id, probe.probe_apis]
    if args.scratch:
        external_id = env.get("OPSRAMP_PROBE_EXTERNAL_ID", "")
        if not (args.account_number and args.role_arn and external_id):
            parser.error("--scratch needs --account-number, --role-arn and OPSRAMP_PROBE_EXTERNAL_ID")
        bad = (
            args.bad_role_arn or f"arn:aws:iam::{args.account_number}:role/opsramp-probe-missing-{secrets.token_hex(4)}"
        )
        steps.append(lambda: probe.scratch(args.account_number, args.role_arn, external_id, bad, args.wait))
    try:
        for run in steps:
            run()
    except requests.RequestException as exc:
        out.write(f"probe stopped: {type(exc).__name__} talking to {args.endpoint}\n")
        render(probe, out)
        return 1
    if args.json:
        payload = {
            "answers": [a.__dict__ for a in probe.answers],
            "variant": probe.variant(),
        }
        out.write(probe.scrub(json.dumps(payload, default=sorted, indent=2)) + "\n")
    else:
        render(probe, out)
    return 0
