"""The AWS integration API of one OpsRamp tenant: install, read, search, update and uninstall.

`get_client` hands out one `OpsRampClient` per (endpoint, tenant, API client), so every resource of a tenant
shares its token, its rate limits and its listing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from urllib.parse import quote

from opsramp_aws_operator import failpoints
from opsramp_aws_operator.errors import NeedsAttention, TransientError

from .auth import reset_tokens
from .inventory import inventory_for, reset_inventories
from .transport import GETS, PAGED, WRITES, OpsRampLimits, OpsRampTimeouts, Transport, reset_sessions
from .wire import (
    AwsIntegrationRequest,
    InstalledIntegration,
    WireFormat,
    install_body,
    is_aws_record,
    parse_integration,
)


class OpsRampClient(Transport):
    """The AWS-integration operations of one OpsRamp tenant, through one API client's credentials."""

    def __init__(
        self,
        endpoint: str,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        *,
        limits: OpsRampLimits | None = None,
        timeouts: OpsRampTimeouts | None = None,
    ) -> None:
        super().__init__(endpoint, tenant_id, client_id, client_secret, limits=limits, timeouts=timeouts)
        self._inventory = inventory_for(self.endpoint, tenant_id, client_id)

    def __repr__(self) -> str:
        return f"OpsRampClient(endpoint={self.endpoint!r}, tenant_id={self.tenant_id!r})"

    def install_aws(self, spec: AwsIntegrationRequest) -> InstalledIntegration:
        """Install the AWS integration (External-ID type); tried once, since a retry could install twice."""
        with self._unknown_outcome_relists():
            body = self._call(
                "install",
                WRITES,
                "POST",
                WireFormat.INSTALL_AWS_PATH.format(tenant_id=self.tenant_id),
                json_body=install_body(spec),
                idempotent=False,
                secrets=[spec.external_id],
            )
            if not isinstance(body, Mapping) or not body.get("id"):
                raise TransientError(
                    "OpsRampUnavailable",
                    "OpsRamp answered the AWS install without an integration id; the next reconcile looks it up",
                )
        installed = parse_integration(body)
        self._inventory.put(installed)
        failpoints.hit("opsramp:install")
        return installed

    def get(self, integration_id: str) -> InstalledIntegration | None:
        """The installed integration with this id, or None when OpsRamp has none."""
        body = self._call(
            "get",
            GETS,
            "GET",
            self._installed_path(integration_id),
            idempotent=True,
            absent_ok=True,
        )
        if body is None:
            return None
        if not isinstance(body, Mapping) or not body.get("id"):
            # Some APIs answer 200 with an empty object for an unknown id.
            return None
        return parse_integration(body)

    def find_by_display_name(self, display_name: str) -> list[InstalledIntegration]:
        """Every AWS integration of the tenant whose displayName equals `display_name` (all pages, now)."""
        found, _ = self._list_aws()
        return [i for i in found if i.display_name == display_name]

    def named(self, display_name: str) -> list[InstalledIntegration]:
        """Like `find_by_display_name`, from the tenant's shared listing while it is fresh (see `Inventory`).

        The credentials are checked either way (a cached token was issued for this very secret, else one is
        fetched), so a wrong clientSecret fails here, before anything is created, as a listing would.
        """
        self._access_token()
        return self._inventory.named(display_name, self.limits, self._list_aws)

    def _list_aws(self) -> tuple[list[InstalledIntegration], int]:
        """Every AWS integration of the tenant (all pages), and how many pages that took."""
        found: list[InstalledIntegration] = []
        page_no = 1
        pages = 0
        path = WireFormat.SEARCH_PATH.format(tenant_id=self.tenant_id)
        for _ in range(10_000):  # a bound, so a server that always says nextPage cannot loop us forever
            params = {
                "queryString": WireFormat.SEARCH_QUERY,
                "pageNo": str(page_no),
                "pageSize": str(WireFormat.SEARCH_PAGE_SIZE),
            }
            body = self._call("search", PAGED, "GET", path, params=params, idempotent=True)
            pages += 1
            if not isinstance(body, Mapping):
                break
            results = body.get("results") or []
            for item in results if isinstance(results, list) else []:
                if isinstance(item, Mapping) and is_aws_record(item):
                    found.append(parse_integration(item))
            if not body.get("nextPage") or not results:
                break
            next_no = body.get("nextPageNo")
            page_no = int(next_no) if isinstance(next_no, int) and next_no > page_no else page_no + 1
        return found, pages

    def update(self, integration_id: str, spec: AwsIntegrationRequest) -> InstalledIntegration:
        """Set every field of an installed integration to `spec` (a full, idempotent write).

        Assumes OpsRamp accepts credential changes on update (WireFormat.UPDATE_MAY_CHANGE_CREDENTIALS); a
        404 becomes NeedsAttention("NotFound") so the reconciler can forget the recorded id and reinstall.
        """
        with self._unknown_outcome_relists():
            body = self._call(
                "update",
                WRITES,
                "POST",
                self._installed_path(integration_id),
                json_body=install_body(spec),
                idempotent=True,
                secrets=[spec.external_id],
            )
            if not isinstance(body, Mapping) or not body.get("id"):
                # Tolerate an empty 200: read the result back.
                again = self.get(integration_id)
                if again is None:
                    self._inventory.remove(integration_id)
                    raise NeedsAttention("NotFound", "the OpsRamp integration disappeared during the update")
                updated = again
            else:
                updated = parse_integration(body)
        self._inventory.put(updated)
        failpoints.hit("opsramp:update")
        return updated

    def uninstall(self, integration_id: str, reason: str) -> None:
        """Uninstall the integration with an uninstallReason; one that is already gone counts as done."""
        with self._unknown_outcome_relists():
            self._call(
                "uninstall",
                WRITES,
                "DELETE",
                self._installed_path(integration_id),
                json_body={"uninstallReason": reason or "Uninstalled by opsramp-aws-operator"},
                idempotent=True,
                absent_ok=True,
            )
        self._inventory.remove(integration_id)
        failpoints.hit("opsramp:uninstall")

    @contextmanager
    def _unknown_outcome_relists(self) -> Iterator[None]:
        """A write that failed temporarily may still have happened: the next display-name lookup lists anew."""
        try:
            yield
        except TransientError:
            self._inventory.invalidate()
            raise
        except NeedsAttention as exc:
            if exc.reason == "NotFound":  # gone behind our back: what else did we miss?
                self._inventory.invalidate()
            raise

    # -- plumbing -----------------------------------------------------------------------------------------

    def _installed_path(self, integration_id: str) -> str:
        return WireFormat.INSTALLED_PATH.format(tenant_id=self.tenant_id, integration_id=quote(integration_id, safe=""))


_clients: dict[tuple[str, str, str], OpsRampClient] = {}
_clients_lock = threading.Lock()


def get_client(
    endpoint: str,
    tenant_id: str,
    client_id: str,
    client_secret: str,
    *,
    limits: OpsRampLimits | None = None,
    timeouts: OpsRampTimeouts | None = None,
) -> OpsRampClient:
    """The cached client for (endpoint, tenant, client id); a rotated secret or new settings replace it."""
    key = (endpoint.rstrip("/"), tenant_id, client_id)
    limits = limits or OpsRampLimits()
    timeouts = timeouts or OpsRampTimeouts()
    with _clients_lock:
        client = _clients.get(key)
        if (
            client is None
            or not client._has_secret(client_secret)
            or client.limits != limits
            or client.timeouts != timeouts
        ):
            client = OpsRampClient(endpoint, tenant_id, client_id, client_secret, limits=limits, timeouts=timeouts)
            _clients[key] = client
        return client


def _reset_caches_for_tests() -> None:
    """Forget cached clients, tokens, listings and sessions (tests only)."""
    with _clients_lock:
        _clients.clear()
    reset_tokens()
    reset_inventories()
    reset_sessions()
