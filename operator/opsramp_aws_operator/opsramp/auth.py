"""Auth: OAuth2 client-credentials tokens, one per (endpoint, API client), shared by every resource using it.

A token is refreshed ahead of expiry. A refused one is replaced by a token requested after the refusal arrived:
one that another thread fetched earlier may have been revoked by the same event (a rotation, OpsRamp's own
cleanup), so it does not count as fresh. The client secret and the token never leave this module and the
transport: not in a repr, a log line, a metric or an exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import requests

from opsramp_aws_operator import metrics
from opsramp_aws_operator.errors import NeedsAttention, TransientError

from .wire import Scrubber, WireFormat, error_text, server_wait_seconds

if TYPE_CHECKING:
    from .transport import OpsRampTimeouts

log = logging.getLogger(__name__)
SERVICE: Final = "opsramp"


def _error(code: str) -> None:
    metrics.API_ERRORS.labels(service=SERVICE, operation="token", code=code).inc()


@dataclass
class Token:
    value: str = field(default="", repr=False)  # a bearer token: never in a repr
    expires_at: float = 0.0
    secret_digest: str = field(default="", repr=False)
    # When the grant that issued it was sent (monotonic): a token requested after a refusal arrived was issued
    # after whatever revoked the refused one.
    requested_at: float = 0.0


class Bearer(requests.auth.AuthBase):
    """`Authorization: Bearer <token>` (repr without the token)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "Bearer(<token>)"


class TokenCache:
    """One access token per (endpoint, client id), refreshed ahead of expiry; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token = Token()
        self.token_path = WireFormat.TOKEN_PATH


_tokens: dict[tuple[str, str], TokenCache] = {}
_tokens_lock = threading.Lock()


def token_cache_for(endpoint: str, client_id: str) -> TokenCache:
    with _tokens_lock:
        cache = _tokens.get((endpoint, client_id))
        if cache is None:
            cache = TokenCache()
            _tokens[(endpoint, client_id)] = cache
        return cache


def fetch_token(
    session: requests.Session,
    endpoint: str,
    cache: TokenCache,
    client_id: str,
    client_secret: str,
    digest: str,
    *,
    timeouts: OpsRampTimeouts,
    backoff: Callable[[int], float],
    scrub: Scrubber,
) -> Token:
    """A new access token by the client-credentials grant (falling back to the legacy path on 404)."""
    data = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
    }
    for attempt in range(1, timeouts.max_attempts + 1):
        metrics.API_CALLS.labels(service=SERVICE, operation="token").inc()
        requested_at = time.monotonic()
        try:
            response = session.post(
                endpoint + cache.token_path,
                data=data,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=(timeouts.connect_seconds, timeouts.read_seconds),
            )
        except requests.RequestException as exc:
            _error(type(exc).__name__)
            if attempt < timeouts.max_attempts:
                time.sleep(backoff(attempt))
                continue
            raise TransientError(
                "OpsRampUnavailable", f"OpsRamp token endpoint unreachable ({type(exc).__name__})"
            ) from None
        status = response.status_code
        if status == 404 and cache.token_path != WireFormat.LEGACY_TOKEN_PATH:
            _error("404")
            log.debug("token path %s answered 404; trying the legacy path", cache.token_path)
            cache.token_path = WireFormat.LEGACY_TOKEN_PATH
            continue
        if status == 200:
            try:
                body = response.json()
                value = str(body["access_token"])
                # expires_in arrives as an integer or as a string ("7199").
                lifetime = float(body.get("expires_in", 3600))
            except (ValueError, KeyError, TypeError):
                _error("malformed")
                raise TransientError(
                    "OpsRampUnavailable", "OpsRamp token endpoint returned an unreadable answer"
                ) from None
            # Refresh ahead of expiry: a minute early for real tokens, a tenth early for short ones.
            margin = min(60.0, lifetime / 10)
            log.debug("fetched an OpsRamp access token valid for %.0fs", lifetime)
            return Token(value, time.monotonic() + lifetime - margin, digest, requested_at)
        _error(str(status))
        if status in (400, 401, 403):
            raise NeedsAttention(
                "OpsRampAuthFailed",
                f"OpsRamp refused the API client credentials (HTTP {status}: "
                f"{scrub(error_text(response.text)) or 'no detail'}); check clientId and clientSecret "
                "in the credentials Secret and that the API client is enabled",
            )
        if status == 429 or status >= 500:
            given = server_wait_seconds(response.headers)
            wait = timeouts.capped(given) if given is not None else None
            if attempt < timeouts.max_attempts and (wait or 0) <= timeouts.max_server_wait_seconds:
                time.sleep(wait if wait is not None else backoff(attempt))
                continue
            reason = "OpsRampRateLimited" if status == 429 else "OpsRampUnavailable"
            raise TransientError(reason, f"OpsRamp token endpoint answered HTTP {status}", retry_after=wait or 30.0)
        raise NeedsAttention(
            "OpsRampAuthFailed", f"OpsRamp token endpoint answered HTTP {status}; check the endpoint URL"
        )
    raise TransientError("OpsRampUnavailable", "OpsRamp token endpoint kept failing")


def reset_tokens() -> None:
    with _tokens_lock:
        _tokens.clear()
