"""An OpsRamp API emulator on aiohttp: the token and AWS-integration endpoints, with faults, for the sandbox.

It serves what the operator uses, as documented in reference/opsramp-api.md and OpsRamp's OpenAPI files:

- ``POST /tenancy/auth/oauth/token`` (and the legacy ``/auth/oauth/token``): form-encoded client credentials;
  ``{"access_token","token_type":"bearer","expires_in":"<seconds-1>","scope":"global:manage"}``; 401
  ``{"error":"unauthorized","error_description":"Bad API credentials"}`` for bad credentials.
- ``/api/v2/tenants/{tenantId}/integrations/``: ``POST install/AWS``, ``GET installed/{id}``,
  ``POST installed/{id}`` (partial update), ``DELETE installed/{id}`` (JSON body with ``uninstallReason``,
  else 400), ``GET installed/search`` (``queryString`` ``key:value`` pairs joined by ``+``; keys ``category``,
  ``uId``, ``displayName``, ``status``; ``pageNo``, ``pageSize`` ≤ 100, ``sortName``, ``isDescendingOrder``;
  the documented envelope ``results``, ``totalResults``, ``pageNo``, ``pageSize``, ``totalPages``,
  ``nextPage``, ``nextPageNo`` (when there is one), ``previousPageNo``, ``descendingOrder``).
- Bearer tokens: 401 ``invalid_token`` for a missing, unknown or expired token (the body echoes the token, as
  Spring OAuth does, so clients must scrub it); 403 ``access_denied`` for another tenant's path.
- Rate limits per tenant and category (GET 500, paged GET 50, writes 50 per window; window configurable):
  ``X-RateLimit-Limit``, ``X-RateLimit-Remaining``, ``X-RateLimit-Reset`` (epoch seconds) on every answer;
  429 ``{"error":"throttled","error_description":"Too Many Requests"}`` past the limit.
- Install and credential-changing updates of the External-ID type are validated (display name, 12-digit
  account, role ARN format and account, regions, External ID) and the role is read from IAM
  (``iam_endpoint_url``, moto in the sandbox): the trust policy must let ``arn:aws:iam::<opsramp account>:root``
  (or the bare account id) assume it with ``StringEquals``/``StringLike`` ``sts:ExternalId`` equal to the
  install's External ID, and the role (or its last trust-policy change the emulator saw) must be older than
  ``propagation_delay_seconds``. Otherwise: 400 ``{"code":"400","message":"Unable to assume role <arn>: ..."}``.

Admin API (JSON, under ``/_emulator``, a prefix OpsRamp does not use; no auth, loopback only):

- ``GET  /_emulator/health`` → ``{"ok": true}``
- ``GET  /_emulator/state`` → ``{"tenants": {tid: {"integrations": [...]}}, "requests": {"METHOD route": n},
  "request_log": [{"at","method","route","path","tenant_id","status","category"}], "throttled": n,
  "role_checks": [{"role_arn","ok","reason"}], "faults": {...}, "rate_limits": {...}, ...}`` (no secrets)
- ``POST /_emulator/faults`` with any of ``error_rate`` (0..1), ``error_status``, ``error_next`` (count),
  ``error_method`` (only that method), ``error_route`` (only paths containing it), ``error_tenant`` (only that
  tenant), ``error_after_apply`` (apply, then fail), ``throttle_next`` (count of
  429s), ``throttle_reset_seconds``, ``throttle_retry_after`` (adds Retry-After), ``latency_seconds``,
  ``drop_rate`` (0..1), ``drop_next`` (count of closed connections), ``seed`` → the fault settings
- ``DELETE /_emulator/faults`` → all faults off
- ``POST /_emulator/expire-tokens`` → every issued token expires now: ``{"expired": n}``
- ``POST /_emulator/reset`` → integrations, tokens, counters and faults cleared (clients and config kept)
- ``POST /_emulator/clients`` ``{"tenant_id","client_id","client_secret"}`` → adds an API client
- ``POST /_emulator/tenants/{tenantId}/integrations`` with a raw integration object → stored as is (to seed
  integrations the operator did not make)
- ``GET|POST /_emulator/config`` ``{"propagation_delay_seconds","require_external_id_condition",
  "token_lifetime","rate_window_seconds","rate_limits":{"gets","paged_gets","writes"},"expires_in_as_string"}``
- ``GET /_emulator/contract`` → the default contract and the per-tenant ones (each with its profile name)
- ``POST /_emulator/contract`` ``{"tenant": optional, "profile": optional, <switch>: value, ...}`` → changes how
  OpsRamp answers the open questions (opsramp_emulator/contract.py names each switch and its values), for
  every tenant or for one; ``DELETE /_emulator/contract[?tenant=T]`` → back to the defaults
- ``GET /_emulator/tenants/{tenantId}/console`` → ``{"externalId","awsAccountId"}`` as OpsRamp's console shows them
  on the "Install AWS Integration" page

Also served: ``POST installed/{id}/enable|disable``, ``GET integrations/activity`` (role-check verdicts, paged),
and the discovery-profile API under ``/api/v2/tenants/{tenantId}/policies/discovery`` (``POST``/``PUT`` arrays,
``GET`` list, ``GET|DELETE /{id}``, ``GET /search?name=``, ``GET /action/scan/{id}``).

The same controls are methods on `OpsRampEmulator` for in-process tests. Standalone:
``python -m opsramp_sandbox.opsramp --port 0 --tenant-id client_1 --client-id K --client-secret S
--opsramp-aws-account-id 123456789012 --iam-endpoint http://127.0.0.1:5000`` prints ``READY <url>`` and serves
until SIGTERM or SIGINT; ``--config clients.json`` takes ``{"clients": [{"tenant_id","client_id",
"client_secret"}, ...]}`` (plus optional ``opsramp_aws_account_id``, ``iam_endpoint_url``, ``token_lifetime``,
``rate_window_seconds``, ``propagation_delay_seconds``, ``contract``); ``--contract PROFILE`` and
``--contract-json '{"switch": value}'`` set the default contract at start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
from typing import Any

from aiohttp import web

from opsramp_sandbox.opsramp_emulator.app import apply_config, build_app, current_config
from opsramp_sandbox.opsramp_emulator.contract import PROFILES, Contract
from opsramp_sandbox.opsramp_emulator.state import ApiClient, EmulatorState, public_view
from opsramp_sandbox.opsramp_emulator.trust import RoleReader, TrustChecker

__all__ = ["ApiClient", "OpsRampEmulator", "main"]

log = logging.getLogger(__name__)


class OpsRampEmulator:
    """The emulator as an object: `start()` serves on a background thread with its own event loop."""

    def __init__(
        self,
        *,
        clients: list[ApiClient],
        opsramp_aws_account_id: str,
        iam_endpoint_url: str | None,
        host: str = "127.0.0.1",
        port: int = 0,
        token_lifetime: float = 3600,
        rate_window_seconds: float = 60.0,
        propagation_delay_seconds: float = 0.0,
        rate_limits: dict[str, int] | None = None,
        require_external_id_condition: bool = True,
        contract: dict[str, Any] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.opsramp_aws_account_id = opsramp_aws_account_id
        self.iam_endpoint_url = iam_endpoint_url
        self._state = EmulatorState(
            clients,
            token_lifetime=token_lifetime,
            rate_window_seconds=rate_window_seconds,
            rate_limits=rate_limits,
        )
        if contract:
            self._state.contracts.change(contract)
        reader = RoleReader(iam_endpoint_url) if iam_endpoint_url else None
        self._checker = TrustChecker(
            reader,
            opsramp_aws_account_id,
            propagation_delay=propagation_delay_seconds,
            require_external_id_condition=require_external_id_condition,
        )
        self._app = build_app(self._state, self._checker)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The endpoint the operator uses, e.g. http://127.0.0.1:PORT."""
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"{self.url}/_emulator"

    def start(self) -> None:
        """Serve in a background thread; returns once the socket listens (port 0 is resolved by then)."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        self._thread = threading.Thread(target=self._serve, name="opsramp-emulator", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._startup_error is not None:
            raise RuntimeError("OpsRamp emulator failed to start") from self._startup_error
        if not self._ready.is_set():
            raise RuntimeError("OpsRamp emulator did not start within 30 s")

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            loop.run_until_complete(site.start())
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

    def stop(self) -> None:
        """Stop serving and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._thread = None
        self._loop = None

    def __enter__(self) -> OpsRampEmulator:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- in-process controls (the admin API's twins) -------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The admin state snapshot (no secrets)."""
        return self._state.snapshot()

    def integrations(self, tenant_id: str) -> list[dict[str, Any]]:
        """Integrations of one tenant as OpsRamp would return them (no External IDs)."""
        return [public_view(r) for r in self._state.list_integrations(tenant_id)]

    def request_count(self, method: str, route: str) -> int:
        """Requests seen for `METHOD route`, e.g. ("POST", "/api/v2/tenants/{tenantId}/integrations/install/AWS")."""
        with self._state.lock:
            return self._state.request_counts.get(f"{method} {route}", 0)

    def set_faults(self, **changes: Any) -> dict[str, Any]:
        """Switch faults on or off (see the module docstring for the names)."""
        return self._state.set_faults(changes)

    def clear_faults(self) -> None:
        self._state.clear_faults()

    def expire_tokens(self) -> int:
        """Expire every issued token now; returns how many."""
        return self._state.expire_tokens()

    def reset(self) -> None:
        """Forget integrations, tokens, counters and faults."""
        self._state.reset()

    def add_client(self, client: ApiClient) -> None:
        self._state.add_client(client)

    def seed_integration(self, tenant_id: str, record: dict[str, Any]) -> dict[str, Any]:
        """Store a raw integration as if someone had installed it by hand; returns it with its id."""
        return public_view(self._state.add_integration(tenant_id, record))

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change run-time settings (names as in GET /_emulator/config)."""
        apply_config(self._app, changes)
        return current_config(self._app)

    def set_contract(self, tenant: str | None = None, **changes: Any) -> Contract:
        """Switch answers to the open questions for every tenant or one (`profile=` starts from a named one)."""
        return self._state.contracts.change(changes, tenant)

    def contract(self, tenant: str | None = None) -> Contract:
        return self._state.contract(tenant)

    def clear_contract(self, tenant: str | None = None) -> None:
        self._state.contracts.clear(tenant)

    def console_external_id(self, tenant_id: str) -> str:
        """The External ID OpsRamp's console shows for this tenant (the one `external_id: generated` uses)."""
        return self._state.console_external_id(tenant_id)

    def uninstall(self, tenant_id: str, integration_id: str) -> bool:
        """Uninstall an integration as a person in the console would (its discovery profiles go with it)."""
        removed = self._state.remove_integration(tenant_id, integration_id)
        self._state.remove_profiles_of(tenant_id, integration_id)
        return removed

    def set_enabled(self, tenant_id: str, integration_id: str, enabled: bool) -> bool:
        """Enable or disable an integration as a person in the console would."""
        return self._state.set_enabled(tenant_id, integration_id, enabled)

    def assume(self, role_arn: str, external_id: str) -> bool:
        """Could OpsRamp assume `role_arn` with `external_id` now (the check its installs get)?"""
        return self._checker.check(role_arn, external_id).ok

    def discovery_profiles(self, tenant_id: str) -> list[dict[str, Any]]:
        return self._state.list_profiles(tenant_id)

    def activity(self, tenant_id: str) -> list[dict[str, Any]]:
        return self._state.list_activity(tenant_id)


def _load_config(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise SystemExit("config file must hold a JSON object")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opsramp_sandbox.opsramp", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", help="JSON file with clients and settings")
    parser.add_argument("--tenant-id")
    parser.add_argument("--client-id")
    parser.add_argument("--client-secret")
    parser.add_argument("--opsramp-aws-account-id")
    parser.add_argument("--iam-endpoint", help="IAM endpoint URL for the role check (omit to skip it)")
    parser.add_argument("--token-lifetime", type=float)
    parser.add_argument("--rate-window-seconds", type=float)
    parser.add_argument("--propagation-delay-seconds", type=float)
    parser.add_argument("--contract", choices=sorted(PROFILES), help="how OpsRamp answers the open questions")
    parser.add_argument("--contract-json", help='contract switches as JSON, e.g. \'{"role_check": "async"}\'')
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)

    config = _load_config(args.config) if args.config else {}
    clients = [
        ApiClient(str(c["tenant_id"]), str(c["client_id"]), str(c["client_secret"])) for c in config.get("clients", [])
    ]
    if args.tenant_id or args.client_id or args.client_secret:
        if not (args.tenant_id and args.client_id and args.client_secret):
            parser.error("--tenant-id, --client-id and --client-secret go together")
        clients.append(ApiClient(args.tenant_id, args.client_id, args.client_secret))
    if not clients:
        parser.error("give at least one API client (--config or --tenant-id/--client-id/--client-secret)")
    account = args.opsramp_aws_account_id or config.get("opsramp_aws_account_id")
    if not account:
        parser.error("--opsramp-aws-account-id is required")

    def pick(flag: float | None, key: str, default: float) -> float:
        return float(flag if flag is not None else config.get(key, default))

    contract: dict[str, Any] = dict(config.get("contract") or {})
    if args.contract:
        contract["profile"] = args.contract
    if args.contract_json:
        contract.update(json.loads(args.contract_json))
    emulator = OpsRampEmulator(
        clients=clients,
        opsramp_aws_account_id=str(account),
        iam_endpoint_url=args.iam_endpoint or config.get("iam_endpoint_url"),
        host=args.host,
        port=args.port,
        token_lifetime=pick(args.token_lifetime, "token_lifetime", 3600),
        rate_window_seconds=pick(args.rate_window_seconds, "rate_window_seconds", 60.0),
        propagation_delay_seconds=pick(args.propagation_delay_seconds, "propagation_delay_seconds", 0.0),
        contract=contract or None,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator.start()
    print(f"READY {emulator.url}", flush=True)
    while not stop.wait(0.5):
        pass
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
