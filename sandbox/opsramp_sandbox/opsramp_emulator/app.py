"""The OpsRamp emulator's aiohttp application: token, AWS integration and admin endpoints, faults, rate limits."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from opsramp_sandbox.opsramp_emulator.state import ApiClient, EmulatorState, public_view
from opsramp_sandbox.opsramp_emulator.trust import TrustChecker
from opsramp_sandbox.opsramp_emulator.validation import (
    AWS_TYPE_ASSUME_ROLE,
    AWS_TYPE_EXTERNAL_ID,
    ValidationFailed,
    merge_update,
    validate_aws_install,
)

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/_emulator"
API_PREFIX = "/api/v2/tenants/{tenantId}/integrations"
MAX_PAGE_SIZE = 100
CLOUD_TYPES = frozenset({"AWS", "AZURE", "GOOGLE", "GCP"})

STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("state", EmulatorState)
CHECKER_KEY: web.AppKey[TrustChecker] = web.AppKey("checker", TrustChecker)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json", headers=headers or {})


def _error(status: int, message: str) -> web.Response:
    return _json(status, {"code": str(status), "message": message})


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return _json(status, {"error": error, "error_description": description})


def _route(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def _category(request: web.Request) -> str:
    if request.method == "GET":
        return "paged_gets" if request.path.endswith("/search") else "gets"
    return "writes"


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

    # Authentication: Spring-OAuth style bodies, which echo the offending token as OpsRamp's stack does.
    auth = request.headers.get("Authorization", "")
    if not auth.lower().startswith("bearer "):
        state.record(request.method, route, request.path, tenant_id, 401, None)
        return _oauth_error(401, "unauthorized", "Full authentication is required to access this resource")
    value = auth[7:].strip()
    token, problem = state.check_token(value)
    if token is None:
        state.record(request.method, route, request.path, tenant_id, 401, None)
        description = f"Access token expired: {value}" if problem == "expired" else f"Invalid access token: {value}"
        return _oauth_error(401, "invalid_token", description)
    if tenant_id is not None and tenant_id != token.tenant_id:
        state.record(request.method, route, request.path, tenant_id, 403, None)
        return _oauth_error(403, "access_denied", "Access is denied")

    category = _category(request)
    throttle, reset_in, retry_after = state.should_throttle()
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
        state.record(request.method, route, request.path, tenant_id, 429, category)
        return _json(429, {"error": "throttled", "error_description": "Too Many Requests"}, headers)

    status, after_apply = state.injected_error(request.method)
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
    issued = state.issue_token(str(form.get("client_id", "")), str(form.get("client_secret", "")))
    if issued is None:
        return _oauth_error(401, "unauthorized", "Bad API credentials")
    return _json(
        200,
        {
            "access_token": issued.value,
            "token_type": "bearer",
            "expires_in": state.token_lifetime_field(),
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


async def _role_check(request: web.Request, credential: dict[str, Any]) -> web.Response | None:
    """None when OpsRamp could assume the role; otherwise the 400 OpsRamp answers."""
    if credential.get("AWSType") not in (AWS_TYPE_EXTERNAL_ID, AWS_TYPE_ASSUME_ROLE):
        return None
    checker = request.app[CHECKER_KEY]
    state = request.app[STATE_KEY]
    role_arn = str(credential.get("AssumeRoleARN", ""))
    external_id = str(credential.get("ExternalId", ""))
    loop = asyncio.get_running_loop()
    verdict = await loop.run_in_executor(None, checker.check, role_arn, external_id)
    with state.lock:
        state.role_checks.append({"role_arn": role_arn, "ok": verdict.ok, "reason": verdict.reason})
    if verdict.ok:
        return None
    log.info("role check failed for %s: %s", role_arn, verdict.reason)
    # STS does not say why an AssumeRole failed, and neither does OpsRamp: one message for every cause.
    return _error(
        400,
        f"Unable to assume role {role_arn}: User: arn:aws:sts::{checker.opsramp_account}:assumed-role/"
        f"opsramp-cloud/opsramp is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
    )


def _stored(record: dict[str, Any]) -> dict[str, Any]:
    credential = record["credential"]
    credential["Name"] = f"{record['displayName']} AWS Integration"
    return record


async def install_aws(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    try:
        record = validate_aws_install(await _body(request))
    except ValidationFailed as exc:
        return _error(400, str(exc))
    failure = await _role_check(request, record["credential"])
    if failure is not None:
        return failure
    record["integration"] = {"id": "AWS", "name": "AWS"}
    stored = state.add_integration(tenant_id, _stored(record))
    return _json(200, public_view(stored))


async def install_other(request: web.Request) -> web.Response:
    return _error(400, f"Integration {request.match_info['intgId']} is not supported by this emulator")


async def get_installed(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    record = state.get_integration(request.match_info["tenantId"], request.match_info["installedIntgId"])
    if record is None:
        return _error(404, "Installed integration not found")
    return _json(200, public_view(record))


async def update_installed(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    stored = state.get_integration(tenant_id, request.match_info["installedIntgId"])
    if stored is None:
        return _error(404, "Installed integration not found")
    try:
        merged = merge_update(stored, await _body(request))
        if (stored.get("integration") or {}).get("id") == "AWS":
            merged = validate_aws_install(merged)
    except ValidationFailed as exc:
        return _error(400, str(exc))
    old = stored.get("credential") or {}
    new = merged["credential"]
    if any(old.get(k) != new.get(k) for k in ("AssumeRoleARN", "ExternalId", "AccountNumber", "AWSType")):
        failure = await _role_check(request, new)
        if failure is not None:
            return failure
    stored["displayName"] = merged["displayName"]
    stored["credential"] = new
    state.replace_integration(tenant_id, _stored(stored))
    return _json(200, public_view(stored))


async def uninstall_installed(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    integration_id = request.match_info["installedIntgId"]
    body = await _body(request)
    reason = body.get("uninstallReason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        return _error(400, "uninstallReason is required")
    if not state.remove_integration(tenant_id, integration_id):
        return _error(404, "Installed integration not found")
    # OpsRamp documents 200 with no body.
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


async def search_installed(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant_id = request.match_info["tenantId"]
    page_no = _int_param(request, "pageNo", 1)
    page_size = min(_int_param(request, "pageSize", 100), MAX_PAGE_SIZE)
    if page_no < 1 or page_size < 1:
        return _error(400, "pageNo and pageSize must be positive")
    descending = request.query.get("isDescendingOrder", "false").lower() == "true"
    sort_name = request.query.get("sortName", "name")
    pairs = _parse_query_string(request.query.get("queryString", ""))
    records = [r for r in state.list_integrations(tenant_id) if _matches(r, pairs)]
    sort_key = "displayName" if sort_name in ("name", "displayName") else sort_name
    records.sort(key=lambda r: (str(r.get(sort_key, "")), r["id"]), reverse=descending)
    total = len(records)
    total_pages = math.ceil(total / page_size) if total else 0
    page = records[(page_no - 1) * page_size : page_no * page_size]
    body: dict[str, Any] = {
        "results": [public_view(r) for r in page],
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
    return _json(200, body)


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
    return app
