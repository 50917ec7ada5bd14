"""The AWS integration API of one OpsRamp tenant: install, read, search, update, uninstall, enable and disable.

`get_client` hands out one `OpsRampClient` per (endpoint, tenant, API client), so every resource of a tenant
shares its token, its rate limits and its listing. What the client learns about a tenant's dialect (`Dialect`:
which AWSType it takes, how big a page may be, whether updates change credentials) is kept per (endpoint, tenant)
for the life of the process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.parse import quote

from opsramp_aws_operator import failpoints
from opsramp_aws_operator.errors import NeedsAttention, TransientError

from .activity import ActivityFeed, Verdict, activity_feed_for, reset_activity_feeds
from .auth import reset_tokens
from .discovery import DiscoveryProfiles
from .inventory import inventory_for, reset_inventories
from .transport import (
    GETS,
    PAGED,
    WRITES,
    MaybeAbsent,
    OpsRampLimits,
    OpsRampTimeouts,
    Transport,
    reset_sessions,
)
from .wire import (
    AwsIntegrationRequest,
    Dialect,
    InstalledIntegration,
    WireFormat,
    install_body,
    is_aws_record,
    mentions,
    parse_integration,
)


class OpsRampClient(Transport, DiscoveryProfiles):
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
        self.dialect = dialect_for(self.endpoint, tenant_id)
        self._activity: ActivityFeed = activity_feed_for(self.endpoint, tenant_id, client_id)

    def __repr__(self) -> str:
        return f"OpsRampClient(endpoint={self.endpoint!r}, tenant_id={self.tenant_id!r})"

    # -- install ------------------------------------------------------------------------------------------

    def install_aws(self, spec: AwsIntegrationRequest) -> InstalledIntegration:
        """Install the AWS integration (External-ID type); tried once, since a retry could install twice.

        A 400 that names a field the tenant wants otherwise (the AWSType string, the access-key fields) is
        refused before anything is created, so the install goes again in the tenant's dialect, which is kept.
        """
        for _ in range(2 * len(WireFormat.AWS_TYPE_CHOICES) + 1):
            dialect = self.dialect
            try:
                with self._unknown_outcome_relists():
                    body = self._call(
                        "install",
                        WRITES,
                        "POST",
                        WireFormat.INSTALL_AWS_PATH.format(tenant_id=self.tenant_id),
                        json_body=install_body(spec, dialect),
                        idempotent=False,
                        secrets=[spec.external_id],
                    )
            except NeedsAttention as exc:
                if self._learned_from(exc, spec):
                    continue
                raise
            if not isinstance(body, Mapping) or not body.get("id"):
                self._inventory.invalidate()
                raise TransientError(
                    "OpsRampUnavailable",
                    "OpsRamp answered the AWS install without an integration id; the next reconcile looks it up",
                )
            installed = parse_integration(body)
            self._inventory.put(installed, name=spec.display_name)
            failpoints.hit("opsramp:install")
            return installed
        raise NeedsAttention("OpsRampRejected", "OpsRamp refused every form of the AWS install the operator knows")

    def _learned_from(self, exc: NeedsAttention, spec: AwsIntegrationRequest) -> bool:
        """Adjust the tenant's dialect from a refused body; True when another form is worth sending."""
        if exc.reason != "OpsRampRejected":
            return False
        text = exc.message.lower()
        dialect = self.dialect
        if WireFormat.LINKED_ACCOUNTS_KEY.lower() in text:
            raise NeedsAttention(
                "LinkedAccountsUnsupported",
                f"OpsRamp refused credential.{WireFormat.LINKED_ACCOUNTS_KEY}, the operator's guess for 'Install "
                "All Linked Accounts' (docs/opsramp-api-assumptions.md, question 3): this tenant's API has no such "
                "field. Set spec.installAllLinkedAccounts to false, or install linked accounts in the console.",
            ) from None
        if mentions(text, WireFormat.DUPLICATE_MARKERS):
            # Refused because the name is taken: after a lost install answer that is most likely our own install.
            self._inventory.invalidate()
            raise NeedsAttention(
                "DuplicateRefused", f"OpsRamp refused a second integration named {spec.display_name!r}"
            ) from None
        if "awstype" in text and dialect.aws_type_index + 1 < len(WireFormat.AWS_TYPE_CHOICES):
            dialect.aws_type_index += 1
            return True
        if any(k.lower() in text for k in WireFormat.KEY_FIELDS):
            if "not allowed" in text or "unrecognized" in text:
                if dialect.empty_keys:
                    dialect.empty_keys = False
                    return True
            elif not dialect.empty_keys:
                dialect.empty_keys = True
                return True
        return False

    # -- read ---------------------------------------------------------------------------------------------

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
        if isinstance(body, MaybeAbsent) and not self._confirmed_absent(integration_id):
            self._still_there(integration_id, body)
        if body is None or isinstance(body, MaybeAbsent) or not isinstance(body, Mapping) or not body.get("id"):
            # Gone (some APIs answer 200 with an empty object for an unknown id): gone from the listing too, and
            # whatever else happened behind our back shows at the next lookup.
            self._inventory.remove(integration_id)
            self._inventory.invalidate()
            return None
        found = parse_integration(body)
        self._inventory.put(found)
        return found

    def _confirmed_absent(self, integration_id: str) -> bool:
        """A 400/5xx "not found" is believed only when a listing of the tenant agrees (Q17)."""
        found, _ = self._list_aws()
        return all(i.id != integration_id for i in found)

    def _still_there(self, integration_id: str, answer: MaybeAbsent) -> NoReturn:
        raise TransientError(
            "OpsRampUnavailable",
            f"OpsRamp answered HTTP {answer.status} 'not found' for integration {integration_id}, which its listing "
            "still shows; retrying",
            retry_after=15.0,
        )

    def find_by_display_name(self, display_name: str) -> list[InstalledIntegration]:
        """Every AWS integration of the tenant named `display_name` (all pages, now)."""
        found, _ = self._list_aws()
        return [i for i in found if i.name == display_name]

    def named(self, display_name: str) -> list[InstalledIntegration]:
        """Like `find_by_display_name`, from the tenant's shared listing while it is fresh (see `Inventory`).

        The credentials are checked either way (a cached token was issued for this very secret, else one is
        fetched), so a wrong clientSecret fails here, before anything is created, as a listing would.
        """
        self._access_token()
        return self._inventory.named(display_name, self.limits, self._list_aws)

    def unnamed(self) -> list[InstalledIntegration]:
        """AWS integrations whose listing entry shows no name (a tenant whose search leaves names out)."""
        self._access_token()
        return self._inventory.named(None, self.limits, self._list_aws)

    def _list_aws(self) -> tuple[list[InstalledIntegration], int]:
        """Every AWS integration of the tenant (all pages), and how many pages that took."""
        for _ in range(8):
            try:
                return self._list_pages()
            except NeedsAttention as exc:
                if not self._learned_listing(exc):
                    raise
        raise NeedsAttention("OpsRampRejected", "OpsRamp refused every form of installed/search the operator knows")

    def _learned_listing(self, exc: NeedsAttention) -> bool:
        if exc.reason != "OpsRampRejected":
            return False
        text = exc.message.lower()
        dialect = self.dialect
        if "pagesize" in text and dialect.page_size > 10:
            dialect.page_size = max(10, dialect.page_size // 2)
            return True
        if "querystring" in text and dialect.search_query:
            dialect.search_query = False
            return True
        return False

    def _list_pages(self) -> tuple[list[InstalledIntegration], int]:
        found: list[InstalledIntegration] = []
        page_no = 1
        pages = 0
        path = WireFormat.SEARCH_PATH.format(tenant_id=self.tenant_id)
        for _ in range(10_000):  # a bound, so a server that always says nextPage cannot loop us forever
            params = {"pageNo": str(page_no), "pageSize": str(self.dialect.page_size)}
            if self.dialect.search_query:
                params["queryString"] = WireFormat.SEARCH_QUERY
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

    # -- write --------------------------------------------------------------------------------------------

    def update(self, integration_id: str, spec: AwsIntegrationRequest) -> InstalledIntegration:
        """Send every field of `spec` to an installed integration and read the result back.

        Whether OpsRamp applies credential changes this way is an open question (Q7): the reconciler compares
        what this returns with what it sent. A 404 becomes NeedsAttention("NotFound") so the reconciler can
        forget the recorded id and reinstall; a refusal to change the credential, "CredentialImmutable".
        """
        try:
            with self._unknown_outcome_relists():
                body = self._call(
                    "update",
                    WRITES,
                    "POST",
                    self._installed_path(integration_id),
                    json_body=install_body(spec, self.dialect),
                    idempotent=True,
                    absent_ok=True,
                    secrets=[spec.external_id],
                )
        except NeedsAttention as exc:
            if exc.reason == "OpsRampRejected" and mentions(exc.message, WireFormat.CREDENTIAL_IMMUTABLE_MARKERS):
                self.dialect.credential_updates = "rejected"
                raise NeedsAttention("CredentialImmutable", exc.message) from None
            if exc.reason == "OpsRampRejected" and mentions(exc.message, WireFormat.DUPLICATE_MARKERS):
                raise NeedsAttention(
                    "DisplayNameInUse",
                    f"OpsRamp refused to rename the integration to {spec.display_name!r}: another integration has "
                    "that name. Set spec.displayName to a unique name, or uninstall the other one in OpsRamp.",
                ) from None
            raise
        if body is None or (isinstance(body, MaybeAbsent) and self._confirmed_absent(integration_id)):
            self._inventory.remove(integration_id)
            self._inventory.invalidate()
            raise NeedsAttention("NotFound", f"OpsRamp has no integration {integration_id} (update)")
        if isinstance(body, MaybeAbsent):
            self._still_there(integration_id, body)
        # Read back: an update's answer may show what was sent rather than what OpsRamp kept.
        again = self.get(integration_id)
        if again is None:
            self._inventory.remove(integration_id)
            raise NeedsAttention("NotFound", "the OpsRamp integration disappeared during the update")
        self._inventory.put(again, name=spec.display_name)
        failpoints.hit("opsramp:update")
        return again

    def uninstall(self, integration_id: str, reason: str) -> None:
        """Uninstall the integration with an uninstallReason; one that is already gone counts as done."""
        with self._unknown_outcome_relists():
            body = self._call(
                "uninstall",
                WRITES,
                "DELETE",
                self._installed_path(integration_id),
                json_body={"uninstallReason": reason or "Uninstalled by opsramp-aws-operator"},
                idempotent=True,
                absent_ok=True,
            )
            if isinstance(body, MaybeAbsent) and not self._confirmed_absent(integration_id):
                self._still_there(integration_id, body)
        self._inventory.remove(integration_id)
        failpoints.hit("opsramp:uninstall")

    def set_enabled(self, integration_id: str, enabled: bool) -> None:
        """POST installed/{id}/enable or /disable (documented, no body)."""
        path = (WireFormat.ENABLE_PATH if enabled else WireFormat.DISABLE_PATH).format(
            tenant_id=self.tenant_id, integration_id=quote(integration_id, safe="")
        )
        body = self._call("enable" if enabled else "disable", WRITES, "POST", path, idempotent=True, absent_ok=True)
        if body is None or (isinstance(body, MaybeAbsent) and self._confirmed_absent(integration_id)):
            self._inventory.invalidate()
            raise NeedsAttention("NotFound", f"OpsRamp has no integration {integration_id} (enable/disable)")
        if isinstance(body, MaybeAbsent):
            self._still_there(integration_id, body)

    # -- activity -----------------------------------------------------------------------------------------

    def verdict(self, integration_id: str, since: float) -> Verdict | None:
        """OpsRamp's latest role-check verdict on this integration newer than `since` (epoch seconds), if any."""
        return self._activity.verdict(integration_id, since, self)

    def activity_page(self, integration_id: str | None, page_size: int, page_no: int = 1) -> list[Mapping[str, Any]]:
        """One page of integrations/activity, newest first (optionally for one integration)."""
        params = {
            "pageNo": str(page_no),
            "pageSize": str(min(page_size, self.dialect.page_size)),
            "isDescendingOrder": "true",
        }
        if integration_id:
            params["queryString"] = f"installedintgId:{integration_id}"
        body = self._call(
            "activity",
            PAGED,
            "GET",
            WireFormat.ACTIVITY_PATH.format(tenant_id=self.tenant_id),
            params=params,
            idempotent=True,
        )
        results = body.get("results") if isinstance(body, Mapping) else body
        return [r for r in results if isinstance(r, Mapping)] if isinstance(results, list) else []

    # -- plumbing -----------------------------------------------------------------------------------------

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

    def _installed_path(self, integration_id: str) -> str:
        return WireFormat.INSTALLED_PATH.format(tenant_id=self.tenant_id, integration_id=quote(integration_id, safe=""))


_dialects: dict[tuple[str, str], Dialect] = {}
_clients: dict[tuple[str, str, str], OpsRampClient] = {}
_clients_lock = threading.Lock()


def dialect_for(endpoint: str, tenant_id: str) -> Dialect:
    """What this process has learned about one tenant's answers (shared by every API client of the tenant)."""
    with _clients_lock:
        return _dialects.setdefault((endpoint.rstrip("/"), tenant_id), Dialect())


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
        with _clients_lock:
            _clients[key] = client
    return client


def _reset_caches_for_tests() -> None:
    """Forget cached clients, dialects, tokens, listings, activity and sessions (tests only)."""
    with _clients_lock:
        _clients.clear()
        _dialects.clear()
    reset_tokens()
    reset_inventories()
    reset_activity_feeds()
    reset_sessions()
