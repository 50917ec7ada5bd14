"""The OpsRamp emulator's aiohttp application: token, AWS integration, activity, discovery and admin endpoints,
faults, rate limits, and each tenant's answers to the open questions (its `Contract`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from opsramp_sandbox.opsramp_emulator.contract import Contract
from opsramp_sandbox.opsramp_emulator.state import ApiClient, EmulatorState, public_view
from opsramp_sandbox.opsramp_emulator.trust import TrustChecker, TrustVerdict
from opsramp_sandbox.opsramp_emulator.validation import (
    AWS_TYPE_ASSUME_ROLE,
    ValidationFailed,
    is_external_id_type,
    merge_update,
    validate_aws_install,
)

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/_emulator"
API_PREFIX = "/api/v2/tenants/{tenantId}/integrations"
DISCOVERY_PREFIX = "/api/v2/tenants/{tenantId}/policies/discovery"
# Credential keys whose change makes OpsRamp try the role again.
ROLE_KEYS = ("AssumeRoleARN", "ExternalId", "AccountNumber", "AWSType")
CLOUD_TYPES = frozenset({"AWS", "AZURE", "GOOGLE", "GCP"})

STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("state", EmulatorState)
CHECKER_KEY: web.AppKey[TrustChecker] = web.AppKey("checker", TrustChecker)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers or {})


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    return _json(status, {"code": code or str(status), "message": message})


def _contract(request: web.Request) -> Contract:
    return request.app[STATE_KEY].contract(request.match_info.get("tenantId"))


def _unknown_id(request: web.Request, what: str = "installed integration") -> web.Response:
    """The answer for an id the tenant does not know, in the status this tenant uses (Q17)."""
    status = _contract(request).unknown_id
    if status == 404:
        return _error(404, f"No {what} found")
    if status == 400:
        return _error(400, f"No {what} found with the given id", code="0002")
    # HPE's Terraform provider retries 500s whose body has code 0005 ("not ready"): the worst case to tell apart.
    return _error(500, f"No {what} found", code="0005")


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return _json(status, {"error": error, "error_description": description})


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def _category(request: web.Request) -> str:
    if request.method == "GET":
        return "paged_gets" if request.path.endswith(("/search", "/activity")) else "gets"
    return "writes"


def _token_refused(contract: Contract, problem: str, value: str) -> web.Response:
    """A missing, unknown, expired or revoked token, refused the way this tenant does it (Q9)."""
    # Spring-OAuth style bodies, which echo the offending token as OpsRamp's stack does.
    description = f"Access token expired: {value}" if problem == "expired" else f"Invalid access token: {value}"
    if contract.token_rejected == 407:
        return _oauth_error(407, "invalid_token", description)
    if contract.token_rejected == 400:
        return _error(400, f"Unable to authenticate: {description}")
    return _oauth_error(401, "invalid_token", description)


async def _drop(request: web.Request) -> web.Response:
    """Close the connection without an answer: the client sees a reset / remote disconnect."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    # aiohttp swallows the failed write of this response on the closed transport.
    return web.Response(status=500)


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Faults, auth, tenant scope and rate limits in front of every OpsRamp endpoint (not the admin API)."""
    state = request.app[STATE_KEY]
    if request.path.startswith(ADMIN_PREFIX):
        return await handler(request)
    route = _route(request)
    tenant_id = request.match_info.get("tenantId")
    faults = state.faults
    if faults.latency_seconds > 0:
        await asyncio.sleep(faults.latency_seconds)
    if state.should_drop():
        state.record(request.method, route, request.path, tenant_id, 0, None)
        return await _drop(request)
    if not request.path.startswith("/api/"):
        response = await handler(request)
        state.record(request.method, route, request.path, None, response.status, None)
        return response

    auth = request.headers.get("Authorization", "")
    if not auth.lower().startswith("bearer "):
        state.record(request.method, route, request.path, tenant_id, 401, None)
        return _oauth_error(401, "unauthorized", "Full authentication is required to access this resource")
    value = auth[7:].strip()
    token, problem = state.check_token(value)
    if token is None:
        refused = _token_refused(state.contract(tenant_id), problem, value)
        state.record(request.method, route, request.path, tenant_id, refused.status, None)
        return refused
    if tenant_id is not None and tenant_id != token.tenant_id:
        denied = state.contract(token.tenant_id).foreign_tenant
        state.record(request.method, route, request.path, tenant_id, denied, None)
        if denied == 401:
            return _oauth_error(401, "unauthorized", "Access is denied")
        return _oauth_error(403, "access_denied", "Access is denied")

    category = _category(request)
    throttle, reset_in, retry_after = state.should_throttle(tenant_id)
    if throttle:
        reset = math.ceil(time.time() + reset_in)
        headers = {"X-RateLimit-Limit": str(state.rate_limits[category]), "X-RateLimit-Remaining": "0"}
        headers["X-RateLimit-Reset"] = str(reset)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        state.record(request.method, route, request.path, tenant_id, 429, category)
        return _json(429, {"error": "throttled", "error_description": "Too Many Requests"}, headers)
    allowed, limit, remaining, reset_at = state.take_rate_slot(token.tenant_id, category)
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(math.ceil(reset_at)),
    }
    if not allowed:
        if state.contract(token.tenant_id).retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
        state.record(request.method, route, request.path, tenant_id, 429, category)
        return _json(429, {"error": "throttled", "error_description": "Too Many Requests"}, headers)

    status, after_apply = state.injected_error(request.method, request.path, tenant_id)
    if status is not None and not after_apply:
        state.record(request.method, route, request.path, tenant_id, status, category)
        return _error(status, "Internal Server Error")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        # Handlers raise these for malformed input; answer them like any other response.
        state.record(request.method, route, request.path, tenant_id, exc.status, category)
        exc.headers.update(headers)
        raise
    if status is not None:
        state.record(request.method, route, request.path, tenant_id, status, category)
        return _error(status, "Internal Server Error")
    response.headers.update(headers)
    state.record(request.method, route, request.path, tenant_id, response.status, category)
    return response


# -- token ----------------------------------------------------------------------------------------------


async def token(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if not request.content_type.startswith("application/x-www-form-urlencoded"):
        return _oauth_error(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
    form = await request.post()
    grant_type = form.get("grant_type")
    if grant_type != "client_credentials":
        shown = grant_type if isinstance(grant_type, str) else ""
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant type: {shown[:40]}")
    client_id = str(form.get("client_id", ""))
    tenant = state.client_tenant(client_id)
    if tenant is not None and request.path.startswith("/tenancy/") and state.contract(tenant).token_path == "legacy":
        # An older pod: only the legacy path exists (Q11).
        return web.Response(status=404, text="Not Found")
    issued = state.issue_token(client_id, str(form.get("client_secret", "")))
    if issued is None:
        return _oauth_error(401, "unauthorized", "Bad API credentials")
    return _json(
        200,
        {
            "access_token": issued.value,
            "token_type": "bearer",
            "expires_in": state.token_lifetime_field(issued),
            "scope": "global:manage",
        },
    )


# -- integrations ---------------------------------------------------------------------------------------


async def _body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=json.dumps({"code": "400", "message": "Malformed JSON"}), content_type="application/json"
        ) from None


def _assume_message(role_arn: str, opsramp_account: str) -> str:
    # STS does not say why an AssumeRole failed, and neither does OpsRamp: one message for every cause.
    return (
        f"Unable to assume role {role_arn}: User: arn:aws:sts::{opsramp_account}:assumed-role/"
        f"opsramp-cloud/opsramp is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
    )


async def _judge(request_app: web.Application, credential: dict[str, Any], contract: Contract) -> tuple[bool, str]:
    """Could OpsRamp assume the role of this credential now? (ok, message for an activity record or a 400)."""
    checker = request_app[CHECKER_KEY]
    state = request_app[STATE_KEY]
    role_arn = str(credential.get("AssumeRoleARN", ""))
    external_id = str(credential.get("ExternalId", ""))
    loop = asyncio.get_running_loop()
    verdict = await loop.run_in_executor(None, checker.check, role_arn, external_id)
    with state.lock:
        if any(f":{account}:" in role_arn for account in state.faults.refuse_assume_accounts):
            verdict = TrustVerdict(False, "refused in this account (fault refuse_assume_accounts)")
        state.role_checks.append({"role_arn": role_arn, "ok": verdict.ok, "reason": verdict.reason})
    if verdict.ok:
        return True, f"Assumed role {role_arn}"
    log.info("role check failed for %s: %s", role_arn, verdict.reason)
    return False, _assume_message(role_arn, checker.opsramp_account)


def _checks_role(credential: dict[str, Any], contract: Contract) -> bool:
    return is_external_id_type(credential, contract) or credential.get("AWSType") == AWS_TYPE_ASSUME_ROLE


def _effective_credential(tenant_id: str, credential: dict[str, Any], contract: Contract, state: EmulatorState) -> None:
    """Under `external_id: generated` OpsRamp keeps its own External ID, whatever the client sent (Q15)."""
    if contract.external_id == "generated" and is_external_id_type(credential, contract):
        credential["ExternalId"] = state.console_external_id(tenant_id)


async def _role_check_now(request: web.Request, credential: dict[str, Any]) -> web.Response | None:
    """The synchronous check (Q8 `sync`): None when OpsRamp could assume the role, else the 400 it answers."""
    contract = _contract(request)
    if contract.role_check != "sync" or not _checks_role(credential, contract):
        return None
    ok, message = await _judge(request.app, credential, contract)
    if ok:
        return None
    return _error(400, message)


def _schedule_role_check(app: web.Application, tenant_id: str, integration_id: str, version: int) -> None:
    """The asynchronous check (Q8 `async`): OpsRamp tries the role a little later and records the verdict."""
    state = app[STATE_KEY]
    contract = state.contract(tenant_id)

    async def run() -> None:
        record = state.get_integration(tenant_id, integration_id)
        if record is None or record.get("_version") != version:
            return  # uninstalled, or its credential changed since: that change scheduled its own check
        ok, message = await _judge(app, record["credential"], contract)
        state.add_activity(tenant_id, integration_id, ok, message)

    loop = asyncio.get_running_loop()
    loop.call_later(contract.role_check_delay_seconds, lambda: asyncio.ensure_future(run()))


def _after_credential_write(request: web.Request, tenant_id: str, record: dict[str, Any], checked_now: bool) -> None:
    """Record what OpsRamp reports after it accepted a credential: a verdict now, one later, or nothing (Q8)."""
    contract = _contract(request)
    if not _checks_role(record["credential"], contract):
        return
    if contract.role_check == "sync" and checked_now:
        request.app[STATE_KEY].add_activity(tenant_id, record["id"], True, "Processed successfully")
    elif contract.role_check == "async":
        _schedule_role_check(request.app, tenant_id, record["id"], int(record.get("_version", 0)))


def _stored(record: dict[str, Any]) -> dict[str, Any]:
    credential = record["credential"]
    credential["Name"] = f"{record['displayName']} AWS Integration"
    return record


def _same_name(state: EmulatorState, tenant_id: str, name: str, except_id: str | None = None) -> bool:
    return any(r.get("displayName") == name and r["id"] != except_id for r in state.list_integrations(tenant_id))


async def install_aws(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    contract = _contract(request)
    try:
        record = validate_aws_install(await _body(request), contract)
    except ValidationFailed as exc:
        return _error(400, str(exc))
    if contract.duplicate_names == "refused" and _same_name(state, tenant_id, record["displayName"]):
        return _error(400, f"An integration named {record['displayName'][:80]!r} already exists")
    _effective_credential(tenant_id, record["credential"], contract, state)
    failure = await _role_check_now(request, record["credential"])
    if failure is not None:
        return failure
    record["integration"] = {"id": "AWS", "name": "AWS"}
    record["_version"] = 1
    stored = state.add_integration(tenant_id, _stored(record))
    _after_credential_write(request, tenant_id, stored, checked_now=True)
    return _json(200, public_view(stored, contract))


async def install_other(request: web.Request) -> web.Response:
    return _error(400, f"Integration {request.match_info['intgId']} is not supported by this emulator")


async def get_installed(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    record = state.get_integration(request.match_info["tenantId"], request.match_info["installedIntgId"])
    if record is None:
        return _unknown_id(request)
    return _json(200, public_view(record, _contract(request)))


async def update_installed(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    contract = _contract(request)
    stored = state.get_integration(tenant_id, request.match_info["installedIntgId"])
    if stored is None:
        return _unknown_id(request)
    body = await _body(request)
    try:
        merged = merge_update(stored, body)
        if (stored.get("integration") or {}).get("id") == "AWS":
            merged = validate_aws_install(merged, contract)
    except ValidationFailed as exc:
        return _error(400, str(exc))
    if contract.duplicate_names == "refused" and _same_name(state, tenant_id, merged["displayName"], stored["id"]):
        return _error(400, f"An integration named {merged['displayName'][:80]!r} already exists")
    old = stored.get("credential") or {}
    new = merged["credential"]
    _effective_credential(tenant_id, new, contract, state)
    comparable = [k for k in new if k != "Name"]
    changed = any(old.get(k) != new.get(k) for k in comparable) or any(
        k not in new for k in old if k not in ("Name", "ExternalId")
    )
    role_changed = any(old.get(k) != new.get(k) for k in ROLE_KEYS)
    if changed and contract.credential_updates == "rejected":
        return _error(400, "The credential of an installed integration cannot be changed; uninstall and install again")
    apply_credential = changed and contract.credential_updates == "applied"
    if apply_credential and role_changed:
        failure = await _role_check_now(request, new)
        if failure is not None:
            return failure
    stored["displayName"] = merged["displayName"]
    if apply_credential:
        stored["credential"] = new
        stored["_version"] = int(stored.get("_version", 0)) + 1
    state.replace_integration(tenant_id, _stored(stored))
    if apply_credential and role_changed:
        _after_credential_write(request, tenant_id, stored, checked_now=True)
    return _json(200, public_view(stored, contract))


async def uninstall_installed(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    integration_id = request.match_info["installedIntgId"]
    body = await _body(request)
    reason = body.get("uninstallReason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        return _error(400, "uninstallReason is required")
    if not state.remove_integration(tenant_id, integration_id):
        return _unknown_id(request)
    state.remove_profiles_of(tenant_id, integration_id)
    # OpsRamp documents 200 with no body.
    return web.Response(status=200)


async def enable_installed(request: web.Request) -> web.Response:
    return _set_enabled(request, True)


async def disable_installed(request: web.Request) -> web.Response:
    return _set_enabled(request, False)


def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    state = request.app[STATE_KEY]
    if not state.set_enabled(request.match_info["tenantId"], request.match_info["installedIntgId"], enabled):
        return _unknown_id(request)
    return web.Response(status=200)


def _parse_query_string(text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split("+"):
        if not part:
            continue
        key, sep, value = part.partition(":")
        pairs.append((key.strip(), value.strip() if sep else ""))
    return pairs


def _matches(record: dict[str, Any], pairs: list[tuple[str, str]]) -> bool:
    intg_id = str((record.get("integration") or {}).get("id", ""))
    for key, value in pairs:
        if key == "category":
            category = "CLOUD_INTEGRATION" if intg_id.upper() in CLOUD_TYPES else "OTHER"
            if category != value:
                return False
        elif key == "uId":
            if intg_id != value:
                return False
        elif key == "displayName":
            if record.get("displayName") != value:
                return False
        elif key == "status" and record.get("status") != value:
            return False
        # Other keys: ignored, as a search that filters less rather than refusing.
    return True


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=json.dumps({"code": "400", "message": f"{name} must be an integer"}),
            content_type="application/json",
        ) from None


def _page_params(request: web.Request, contract: Contract) -> tuple[int, int] | web.Response:
    page_no = _int_param(request, "pageNo", 1)
    page_size = _int_param(request, "pageSize", 100)
    if page_no < 1 or page_size < 1:
        return _error(400, "pageNo and pageSize must be positive")
    if page_size > contract.max_page_size:
        if contract.oversized_page == "refuse":
            return _error(400, f"pageSize must not exceed {contract.max_page_size}")
        page_size = contract.max_page_size
    return page_no, page_size


def _envelope(items: list[Any], page_no: int, page_size: int, descending: bool) -> dict[str, Any]:
    total = len(items)
    total_pages = math.ceil(total / page_size) if total else 0
    body: dict[str, Any] = {
        "results": items[(page_no - 1) * page_size : page_no * page_size],
        "totalResults": total,
        "pageNo": page_no,
        "pageSize": page_size,
        "totalPages": total_pages,
        "nextPage": page_no < total_pages,
        "previousPageNo": page_no - 1,
        "descendingOrder": descending,
    }
    if body["nextPage"]:
        body["nextPageNo"] = page_no + 1
    return body


async def search_installed(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    contract = _contract(request)
    paging = _page_params(request, contract)
    if isinstance(paging, web.Response):
        return paging
    page_no, page_size = paging
    descending = request.query.get("isDescendingOrder", "false").lower() == "true"
    sort_name = request.query.get("sortName", "name")
    query = request.query.get("queryString", "")
    if query and contract.search_query == "refused":
        return _error(400, "Invalid queryString")
    pairs = _parse_query_string(query) if contract.search_query == "honoured" else []
    records = [r for r in state.list_integrations(tenant_id) if _matches(r, pairs)]
    sort_key = "displayName" if sort_name in ("name", "displayName") else sort_name
    records.sort(key=lambda r: (str(r.get(sort_key, "")), r["id"]), reverse=descending)
    views = [public_view(r, contract, search=True) for r in records]
    return _json(200, _envelope(views, page_no, page_size, descending))


async def activity(request: web.Request) -> web.Response:
    """GET integrations/activity: the verdicts OpsRamp recorded, filtered by queryString (installedintgId, status)."""
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    paging = _page_params(request, _contract(request))
    if isinstance(paging, web.Response):
        return paging
    page_no, page_size = paging
    descending = request.query.get("isDescendingOrder", "true").lower() == "true"
    wanted = dict((k.lower(), v) for k, v in _parse_query_string(request.query.get("queryString", "")))
    if request.query.get("installedintgId"):
        wanted["installedintgid"] = request.query["installedintgId"]
    records = [
        r
        for r in state.list_activity(tenant_id)
        if r["installedintgId"] == wanted.get("installedintgid", r["installedintgId"])
        and r["status"] == wanted.get("status", r["status"])
    ]
    records.sort(key=lambda r: r["processedTime"], reverse=descending)
    return _json(200, _envelope(records, page_no, page_size, descending))


# -- discovery profiles ---------------------------------------------------------------------------------


def _profile_problem(state: EmulatorState, tenant_id: str, profile: Any) -> str | None:
    if not isinstance(profile, dict):
        return "each discovery profile must be an object"
    if not isinstance(profile.get("name"), str) or not profile["name"].strip():
        return "name is required"
    intg = profile.get("installedIntegrationId")
    records = state.list_integrations(tenant_id)
    if intg is not None and not any(r["id"] == intg for r in records):
        return f"No installed integration found with id {str(intg)[:60]}"
    credential_set = profile.get("credentialSet")
    if intg is None and not any((r.get("credential") or {}).get("Name") == credential_set for r in records):
        return "installedIntegrationId or the credentialSet of an installed integration is required"
    policy = profile.get("policy")
    if policy is not None and not isinstance(policy, dict):
        return "policy must be an object"
    schedule = profile.get("schedule")
    if schedule is not None and (not isinstance(schedule, dict) or not schedule.get("patternType")):
        return "schedule needs a patternType"
    return None


async def create_profiles(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    body = await _body(request)
    if not isinstance(body, list) or not body:
        return _error(400, "request body must be a non-empty JSON array of discovery profiles")
    for profile in body:
        problem = _profile_problem(state, tenant_id, profile)
        if problem:
            return _error(400, problem)
    return _json(200, [state.add_profile(tenant_id, profile) for profile in body])


async def update_profiles(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    body = await _body(request)
    if not isinstance(body, list) or not body:
        return _error(400, "request body must be a non-empty JSON array of discovery profiles")
    for profile in body:
        problem = _profile_problem(state, tenant_id, profile)
        if problem:
            return _error(400, problem)
        if state.get_profile(tenant_id, profile.get("id")) is None:
            return _unknown_id(request, "discovery profile")
    return _json(200, [state.replace_profile(tenant_id, profile) for profile in body])


async def list_profiles(request: web.Request) -> web.Response:
    return _json(200, request.app[STATE_KEY].list_profiles(request.match_info["tenantId"]))


def _profile_id(request: web.Request) -> int | None:
    try:
        return int(request.match_info["discoveryProfileId"])
    except ValueError:
        return None


async def get_profile(request: web.Request) -> web.Response:
    profile_id = _profile_id(request)
    state = request.app[STATE_KEY]
    found = None if profile_id is None else state.get_profile(request.match_info["tenantId"], profile_id)
    if found is None:
        return _unknown_id(request, "discovery profile")
    return _json(200, found)


async def delete_profile(request: web.Request) -> web.Response:
    profile_id = _profile_id(request)
    state = request.app[STATE_KEY]
    if profile_id is None or not state.remove_profile(request.match_info["tenantId"], profile_id):
        return _unknown_id(request, "discovery profile")
    entity = f"Removed discovery profile with id  : {profile_id}"
    return _json(200, {"status": 200, "entity": entity, "metadata": {}, "length": -1, "actualEntity": entity})


async def search_profiles(request: web.Request) -> web.Response:
    name = request.query.get("name", "")
    profiles = request.app[STATE_KEY].list_profiles(request.match_info["tenantId"])
    return _json(200, [p for p in profiles if p.get("name") == name])


async def rescan_profile(request: web.Request) -> web.Response:
    """GET .../action/scan/{id}: OpsRamp scans again, and (asynchronous tenants) tries the role again."""
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    profile_id = _profile_id(request)
    found = None if profile_id is None else state.get_profile(tenant_id, profile_id)
    if found is None:
        return _unknown_id(request, "discovery profile")
    record = state.get_integration(tenant_id, str(found.get("installedIntegrationId", "")))
    if record is not None and state.contract(tenant_id).role_check == "async":
        _schedule_role_check(request.app, tenant_id, record["id"], int(record.get("_version", 0)))
    entity = "Request to scan the discoveryprofile has been initiated"
    return _json(200, {"status": 200, "entity": entity, "metadata": {}, "length": -1, "actualEntity": entity})


# -- admin ----------------------------------------------------------------------------------------------


async def admin_state(request: web.Request) -> web.Response:
    return _json(200, request.app[STATE_KEY].snapshot())


async def admin_health(request: web.Request) -> web.Response:
    return _json(200, {"ok": True})


async def admin_set_faults(request: web.Request) -> web.Response:
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("body must be an object")
        return _json(200, request.app[STATE_KEY].set_faults(changes))
    except ValueError as exc:
        return _error(400, str(exc))


async def admin_clear_faults(request: web.Request) -> web.Response:
    request.app[STATE_KEY].clear_faults()
    return _json(200, {"ok": True})


async def admin_expire_tokens(request: web.Request) -> web.Response:
    return _json(200, {"expired": request.app[STATE_KEY].expire_tokens()})


async def admin_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return _json(200, {"ok": True})


async def admin_add_client(request: web.Request) -> web.Response:
    body = await request.json()
    try:
        client = ApiClient(str(body["tenant_id"]), str(body["client_id"]), str(body["client_secret"]))
    except (KeyError, TypeError):
        return _error(400, "tenant_id, client_id and client_secret are required")
    request.app[STATE_KEY].add_client(client)
    return _json(200, {"ok": True})


async def admin_seed_integration(request: web.Request) -> web.Response:
    body = await request.json()
    if not isinstance(body, dict):
        return _error(400, "body must be an integration object")
    stored = request.app[STATE_KEY].add_integration(request.match_info["tenantId"], body)
    return _json(200, public_view(stored))


async def admin_assume(request: web.Request) -> web.Response:
    """OpsRamp's assume attempt, now: `{"roleArn", "externalId"}`, or `{"tenant", "displayName"}` for what that
    integration holds. Answers `{"ok", "reason"}` (and the integration's id and a hash of its External ID)."""
    body = await request.json()
    if not isinstance(body, dict):
        return _error(400, "body must be an object")
    state = request.app[STATE_KEY]
    extra: dict[str, Any] = {}
    if "displayName" in body:
        found = [
            r
            for r in state.list_integrations(str(body.get("tenant") or ""))
            if r.get("displayName") == body["displayName"]
        ]
        if not found:
            return _json(200, {"ok": False, "reason": "no integration of that name", "integrationId": None})
        credential = found[0].get("credential") or {}
        role_arn, external_id = str(credential.get("AssumeRoleARN", "")), str(credential.get("ExternalId", ""))
        extra = {"integrationId": found[0]["id"], "externalIdSha256": hashlib.sha256(external_id.encode()).hexdigest()}
    else:
        role_arn, external_id = str(body.get("roleArn", "")), str(body.get("externalId", ""))
    checker = request.app[CHECKER_KEY]
    verdict = await asyncio.get_running_loop().run_in_executor(None, checker.check, role_arn, external_id)
    return _json(200, {"ok": verdict.ok, "reason": verdict.reason, **extra})


async def admin_get_contract(request: web.Request) -> web.Response:
    return _json(200, request.app[STATE_KEY].contracts.snapshot())


async def admin_set_contract(request: web.Request) -> web.Response:
    """Switch answers to the open questions: {"tenant": optional, "profile": optional, <switch>: value, ...}."""
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("body must be an object")
        changes = dict(body)
        tenant = changes.pop("tenant", None)
        request.app[STATE_KEY].contracts.change(changes, str(tenant) if tenant else None)
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc))
    return _json(200, request.app[STATE_KEY].contracts.snapshot())


async def admin_clear_contract(request: web.Request) -> web.Response:
    request.app[STATE_KEY].contracts.clear(request.query.get("tenant") or None)
    return _json(200, request.app[STATE_KEY].contracts.snapshot())


async def admin_console(request: web.Request) -> web.Response:
    """What OpsRamp's console shows on the tenant's "Install AWS Integration" page (External ID, AWS account)."""
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    return _json(
        200,
        {"externalId": state.console_external_id(tenant_id), "awsAccountId": request.app[CHECKER_KEY].opsramp_account},
    )


async def admin_config(request: web.Request) -> web.Response:
    body = await request.json()
    if not isinstance(body, dict):
        return _error(400, "body must be an object")
    try:
        apply_config(request.app, body)
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc))
    return _json(200, current_config(request.app))


async def admin_get_config(request: web.Request) -> web.Response:
    return _json(200, current_config(request.app))


def apply_config(app: web.Application, changes: dict[str, Any]) -> None:
    """Change run-time settings: propagation delay, token lifetime, rate window/limits, strictness."""
    state = app[STATE_KEY]
    checker = app[CHECKER_KEY]
    with state.lock:
        for key, value in changes.items():
            if key == "propagation_delay_seconds":
                checker.propagation_delay = float(value)
            elif key == "require_external_id_condition":
                checker.require_external_id_condition = bool(value)
            elif key == "token_lifetime":
                state.token_lifetime = float(value)
            elif key == "rate_window_seconds":
                state.rate_window_seconds = float(value)
                state.windows.clear()
            elif key == "rate_limits":
                state.rate_limits.update({str(k): int(v) for k, v in dict(value).items()})
            elif key == "expires_in_as_string":
                state.expires_in_as_string = bool(value)
            else:
                raise ValueError(f"unknown setting: {key}")


def current_config(app: web.Application) -> dict[str, Any]:
    state = app[STATE_KEY]
    checker = app[CHECKER_KEY]
    return {
        "propagation_delay_seconds": checker.propagation_delay,
        "require_external_id_condition": checker.require_external_id_condition,
        "token_lifetime": state.token_lifetime,
        "rate_window_seconds": state.rate_window_seconds,
        "rate_limits": dict(state.rate_limits),
        "expires_in_as_string": state.expires_in_as_string,
        "opsramp_aws_account_id": checker.opsramp_account,
    }


def build_app(state: EmulatorState, checker: TrustChecker) -> web.Application:
    app = web.Application(middlewares=[api_middleware])
    app[STATE_KEY] = state
    app[CHECKER_KEY] = checker
    r = app.router
    r.add_post("/tenancy/auth/oauth/token", token)
    r.add_post("/auth/oauth/token", token)
    r.add_post(API_PREFIX + "/install/AWS", install_aws)
    r.add_post(API_PREFIX + "/install/{intgId}", install_other)
    r.add_get(API_PREFIX + "/installed/search", search_installed)
    r.add_get(API_PREFIX + "/installed/{installedIntgId}", get_installed)
    r.add_post(API_PREFIX + "/installed/{installedIntgId}", update_installed)
    r.add_delete(API_PREFIX + "/installed/{installedIntgId}", uninstall_installed)
    r.add_post(API_PREFIX + "/installed/{installedIntgId}/enable", enable_installed)
    r.add_post(API_PREFIX + "/installed/{installedIntgId}/disable", disable_installed)
    r.add_get(API_PREFIX + "/activity", activity)
    r.add_post(DISCOVERY_PREFIX, create_profiles)
    r.add_put(DISCOVERY_PREFIX, update_profiles)
    r.add_get(DISCOVERY_PREFIX, list_profiles)
    r.add_get(DISCOVERY_PREFIX + "/search", search_profiles)
    r.add_get(DISCOVERY_PREFIX + "/action/scan/{discoveryProfileId}", rescan_profile)
    r.add_get(DISCOVERY_PREFIX + "/{discoveryProfileId}", get_profile)
    r.add_delete(DISCOVERY_PREFIX + "/{discoveryProfileId}", delete_profile)
    r.add_get(ADMIN_PREFIX + "/health", admin_health)
    r.add_get(ADMIN_PREFIX + "/state", admin_state)
    r.add_post(ADMIN_PREFIX + "/faults", admin_set_faults)
    r.add_delete(ADMIN_PREFIX + "/faults", admin_clear_faults)
    r.add_post(ADMIN_PREFIX + "/expire-tokens", admin_expire_tokens)
    r.add_post(ADMIN_PREFIX + "/reset", admin_reset)
    r.add_post(ADMIN_PREFIX + "/clients", admin_add_client)
    r.add_post(ADMIN_PREFIX + "/config", admin_config)
    r.add_get(ADMIN_PREFIX + "/config", admin_get_config)
    r.add_post(ADMIN_PREFIX + "/tenants/{tenantId}/integrations", admin_seed_integration)
    r.add_get(ADMIN_PREFIX + "/tenants/{tenantId}/console", admin_console)
    r.add_post(ADMIN_PREFIX + "/assume", admin_assume)
    r.add_get(ADMIN_PREFIX + "/contract", admin_get_contract)
    r.add_post(ADMIN_PREFIX + "/contract", admin_set_contract)
    r.add_delete(ADMIN_PREFIX + "/contract", admin_clear_contract)
    return app
