"""Transport and limits: connection pools, rate limits per tenant, retries and error classification.

`Transport` sends one logical call at a time: it waits for the tenant's budget, adds a bearer token (auth.py),
retries what may be retried, and turns every HTTP outcome into a decoded body, `None`, or one of our two error
kinds, with messages built from names and status codes only: no client secret, token or External ID ever
reaches an exception, a log line or a metric.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

import requests
from requests.adapters import HTTPAdapter

from opsramp_aws_operator import metrics
from opsramp_aws_operator.errors import NeedsAttention, TransientError
from opsramp_aws_operator.ratelimit import RateLimiter, WaitTooLong, shared_limiter

from .auth import Bearer, fetch_token, token_cache_for
from .wire import Scrubber, WireFormat, error_text, mentions, says_not_found, server_wait_seconds

log = logging.getLogger(__name__)

SERVICE: Final = "opsramp"
GETS, PAGED, WRITES = "gets", "paged_gets", "writes"
# How many times one call may replace a refused token before the refusal counts as the API client's fault.
MAX_REAUTHS: Final = 2


class MaybeAbsent:
    """A 400 or 5xx that says "not found" for a call made with `absent_ok`: the caller confirms before believing it."""

    def __init__(self, status: int) -> None:
        self.status = status

    def __repr__(self) -> str:
        return f"MaybeAbsent({self.status})"


@dataclass(frozen=True)
class OpsRampLimits:
    """Client-side budgets per tenant, from OpsRamp's documented per-minute limits for "other APIs"."""

    gets_per_window: int = 500
    paged_gets_per_window: int = 50
    writes_per_window: int = 50
    window_seconds: float = 60.0
    # Our limiter counts when we send; OpsRamp counts when the request arrives. A little slack keeps
    # latency jitter from pushing one call across into the server's next window: by default a sixtieth of the
    # window (1 s of the documented minute), so a scaled-down window keeps the same share of the budget.
    window_margin_seconds: float | None = None

    @property
    def margin_seconds(self) -> float:
        return self.window_seconds / 60 if self.window_margin_seconds is None else self.window_margin_seconds


@dataclass(frozen=True)
class OpsRampTimeouts:
    """Timeouts for every call and the retry policy for idempotent ones."""

    connect_seconds: float = 5.0
    read_seconds: float = 30.0
    # Total tries for a retryable call (GET, DELETE, update POST); a create is tried once (429 aside).
    max_attempts: int = 4
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 20.0
    # The longest one sleep in a (shared) worker thread may last: the tenant's own budget, a server's wait, a
    # backoff. A longer wait ends the call with a TransientError carrying the delay, and the resource is retried
    # then, so one tenant's throttling never holds the workers every other tenant needs.
    max_server_wait_seconds: float = 10.0
    # A server's Retry-After / X-RateLimit-Reset counts up to this: a day-long one would park this tenant's client
    # for a day (a broken or hostile server); beyond the cap we try again anyway.
    server_wait_cap_seconds: float = 300.0

    def capped(self, wait: float) -> float:
        return min(max(0.0, wait), self.server_wait_cap_seconds)


_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()


def _session_for(endpoint: str) -> requests.Session:
    with _sessions_lock:
        session = _sessions.get(endpoint)
        if session is None:
            session = requests.Session()
            # A pool big enough for kopf's worker threads; retries are ours (max_retries=0), never urllib3's,
            # so a create is never resent behind our back.
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            session.headers.update({"Accept": "application/json", "User-Agent": "opsramp-aws-operator"})
            _sessions[endpoint] = session
        return session


def reset_sessions() -> None:
    with _sessions_lock:
        for session in _sessions.values():
            session.close()
        _sessions.clear()


class Transport:
    """Calls to one OpsRamp tenant through one API client's credentials (the plumbing under `OpsRampClient`)."""

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
        self.endpoint = endpoint.rstrip("/")
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._client_secret = client_secret
        self.limits = limits or OpsRampLimits()
        self.timeouts = timeouts or OpsRampTimeouts()
        self._session = _session_for(self.endpoint)
        self._tokens = token_cache_for(self.endpoint, client_id)
        window = self.limits.window_seconds + self.limits.margin_seconds
        prefix = f"opsramp|{self.endpoint}|{tenant_id}|"
        self._limiters: dict[str, RateLimiter] = {
            GETS: shared_limiter(prefix + GETS, self.limits.gets_per_window, window),
            PAGED: shared_limiter(prefix + PAGED, self.limits.paged_gets_per_window, window),
            WRITES: shared_limiter(prefix + WRITES, self.limits.writes_per_window, window),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, tenant_id={self.tenant_id!r})"

    def _has_secret(self, secret: str) -> bool:
        return self._client_secret == secret

    def _timeout(self) -> tuple[float, float]:
        return (self.timeouts.connect_seconds, self.timeouts.read_seconds)

    def _backoff(self, attempt: int) -> float:
        base = self.timeouts.backoff_base_seconds * 2.0 ** (attempt - 1)
        cap = min(self.timeouts.backoff_max_seconds, self.timeouts.max_server_wait_seconds)
        # Full jitter keeps a fleet of workers from retrying in lockstep.
        return min(cap, base) * (0.5 + random.random() / 2)

    def _scrubber(self, extra: list[str] | None = None) -> Scrubber:
        return Scrubber([self._client_secret, self._tokens.token.value, *(extra or [])])

    def _acquire(self, category: str) -> None:
        try:
            waited = self._limiters[category].acquire(max_wait=self.timeouts.max_server_wait_seconds)
        except WaitTooLong as exc:
            # This tenant's budget (or a pause OpsRamp asked for) is further away than a worker may sleep.
            raise TransientError(
                "OpsRampRateLimited",
                f"OpsRamp budget for {category.replace('_', ' ')} of tenant {self.tenant_id} is used up; next slot in "
                f"{exc.delay:.0f}s",
                retry_after=max(exc.delay, 1.0),
                exact=True,
            ) from None
        if waited > 0:
            metrics.RATE_LIMIT_WAIT_SECONDS.labels(service=SERVICE, category=category).inc(waited)

    def _error(self, operation: str, code: str) -> None:
        metrics.API_ERRORS.labels(service=SERVICE, operation=operation, code=code).inc()

    def _access_token(self, force: bool = False, refused_at: float | None = None) -> str:
        """A valid access token, fetching one when there is none, it is near expiry, or one was refused.

        `refused_at` (monotonic) is when OpsRamp's refusal of a token arrived: only a token requested after that
        may be used again. One that another thread fetched before it may have been revoked by the same event (a
        rotation, OpsRamp's own cleanup), and spending the retry on it would make a revoked token look like bad
        credentials.
        """
        cache = self._tokens
        digest = hashlib.sha256(self._client_secret.encode()).hexdigest()
        with cache.lock:
            tok = cache.token
            now = time.monotonic()
            stale = tok.requested_at <= refused_at if refused_at is not None else force
            if tok.value and not stale and tok.secret_digest == digest and now < tok.expires_at:
                return tok.value
            cache.token = fetch_token(
                self._session,
                self.endpoint,
                cache,
                self.client_id,
                self._client_secret,
                digest,
                timeouts=self.timeouts,
                backoff=self._backoff,
                scrub=self._scrubber(),
            )
            return cache.token.value

    def _call(
        self,
        operation: str,
        category: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        idempotent: bool,
        absent_ok: bool = False,
        secrets: list[str] | None = None,
    ) -> Any:
        """One logical API call with auth, rate limiting, retries and error classification.

        Returns the decoded JSON body ({} for an empty one), or None for a 404 when `absent_ok` (a `MaybeAbsent`
        for a 400 or 5xx whose message says "not found", which some tenants answer instead of a 404).
        """
        scrub = self._scrubber(secrets)
        url = self.endpoint + path
        reauths = 0
        attempt = 0
        while True:
            attempt += 1
            self._acquire(category)
            token = self._access_token()
            metrics.API_CALLS.labels(service=SERVICE, operation=operation).inc()
            log.debug("OpsRamp %s %s (attempt %d)", method, path, attempt)
            try:
                response = self._session.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    headers={"Content-Type": "application/json"},
                    # As `auth`, not a header: requests then skips its per-request ~/.netrc lookup.
                    auth=Bearer(token),
                    timeout=self._timeout(),
                )
            except requests.RequestException as exc:
                code = type(exc).__name__
                self._error(operation, code)
                # A connect timeout means nothing was sent, so even a create may go again.
                may_retry = idempotent or isinstance(exc, requests.ConnectTimeout)
                if may_retry and attempt < self.timeouts.max_attempts:
                    time.sleep(self._backoff(attempt))
                    continue
                hint = "" if idempotent else "; not retried since OpsRamp may have acted on it"
                raise TransientError(
                    "OpsRampUnavailable", f"OpsRamp {operation} failed: {code}{hint}", retry_after=15.0
                ) from None

            status = response.status_code
            if 200 <= status < 300:
                if not response.content:
                    return {}
                try:
                    return response.json()
                except ValueError:
                    self._error(operation, "malformed")
                    raise TransientError(
                        "OpsRampUnavailable", f"OpsRamp {operation} returned a body that is not JSON"
                    ) from None

            self._error(operation, str(status))
            text = error_text(response.text)
            if self._token_rejected(status, text):
                refused_at = time.monotonic()
                if reauths < MAX_REAUTHS:
                    # The request was refused before OpsRamp acted on it, so re-sending is safe even for a
                    # create. The new token is one requested after this refusal (see `_access_token`); a token
                    # OpsRamp has just issued and still refuses, again and again, means the API client itself
                    # may not act here.
                    reauths += 1
                    attempt -= 1
                    log.debug("OpsRamp refused the access token (HTTP %d); re-authenticating", status)
                    self._access_token(refused_at=refused_at)
                    continue
                if mentions(text, WireFormat.TOKEN_INVALID_MARKERS):
                    # The grants succeeded (the credentials are good) and OpsRamp says the tokens themselves are
                    # invalid or expired: tokens revoked faster than they are used (a rotation, OpsRamp's own
                    # cleanup). A revoked token is not bad credentials: retried, not left for a person.
                    raise TransientError(
                        "OpsRampTokenRejected",
                        f"OpsRamp issued access tokens to this API client but called each one invalid or expired "
                        f"for {operation} (HTTP {status}); retrying. If this persists, check that the API client is "
                        "enabled and may act on this tenant",
                        retry_after=15.0,
                    )
                raise NeedsAttention(
                    "OpsRampAuthFailed",
                    f"OpsRamp issued access tokens to this API client but refused each of them for {operation} "
                    f"(HTTP {status}); check that the API client is enabled and may act on this tenant",
                )
            if status == 429:
                wait = server_wait_seconds(response.headers)
                wait = self.timeouts.backoff_base_seconds * attempt if wait is None else self.timeouts.capped(wait)
                # Everyone sharing this tenant's budget backs off, not only this thread.
                self._limiters[category].pause(wait)
                # A 429 is refused before any work, so a create may be re-sent too.
                if attempt < self.timeouts.max_attempts and wait <= self.timeouts.max_server_wait_seconds:
                    log.debug("OpsRamp throttled %s; waiting %.2fs as told", operation, wait)
                    continue
                raise TransientError(
                    "OpsRampRateLimited",
                    f"OpsRamp rate limit reached for {operation} (HTTP 429)",
                    retry_after=max(wait, 1.0),
                )
            if status == 404 and absent_ok:
                return None
            if absent_ok and (status == 400 or status >= 500) and says_not_found(text):
                return MaybeAbsent(status)
            if status >= 500:
                given = server_wait_seconds(response.headers)
                wait = self.timeouts.capped(given) if given is not None else None
                may_sleep = wait is None or wait <= self.timeouts.max_server_wait_seconds
                if idempotent and attempt < self.timeouts.max_attempts and may_sleep:
                    time.sleep(wait if wait else self._backoff(attempt))
                    continue
                hint = (
                    ""
                    if idempotent
                    else "; not retried since OpsRamp may have installed it (the next reconcile looks it up)"
                )
                raise TransientError(
                    "OpsRampUnavailable",
                    f"OpsRamp {operation} answered HTTP {status}{hint}",
                    retry_after=wait or 15.0,
                )
            detail = scrub(text) or "no detail"
            if status == 404:
                raise NeedsAttention("NotFound", f"OpsRamp has no such integration ({operation}: HTTP 404)")
            if status == 403:
                raise NeedsAttention(
                    "OpsRampAuthFailed",
                    f"OpsRamp denied {operation} (HTTP 403: {detail}); the API client may lack permission "
                    "for this tenant",
                )
            if status == 410:
                raise NeedsAttention("OpsRampRejected", "OpsRamp tenant is unavailable or deactivated (HTTP 410)")
            if status == 400 and any(m in text.lower() for m in WireFormat.ASSUME_ROLE_FAILURE_MARKERS):
                # Usually IAM has not propagated the new role yet; if it persists, the trust policy or the
                # OpsRamp AWS account id is wrong. The reconciler escalates when the role is old.
                raise TransientError(
                    "OpsRampCannotAssumeRole",
                    f"OpsRamp could not assume the role ({detail}); a new role can take a minute to "
                    "propagate, otherwise check the OpsRamp AWS account id and the trust policy",
                    retry_after=20.0,
                )
            raise NeedsAttention("OpsRampRejected", f"OpsRamp rejected {operation} (HTTP {status}: {detail})")

    @staticmethod
    def _token_rejected(status: int, text: str) -> bool:
        if status in WireFormat.TOKEN_REJECTED_STATUSES:
            return True
        lowered = text.lower()
        return status == 400 and any(m in lowered for m in WireFormat.TOKEN_REJECTED_400_MARKERS)
