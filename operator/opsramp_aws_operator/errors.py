"""The two kinds of failure every adapter raises: temporary (retry soon) and needs-attention (a person must act).

Adapters classify SDK errors into these at their edge; only handlers.py turns them into kopf's exceptions.
Messages must never contain a secret, token, External ID or key: build them from names and codes only.
"""

from __future__ import annotations


class OperatorError(Exception):
    """Base class: carries a CamelCase reason for conditions and a message a person can act on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class TransientError(OperatorError):
    """Throttling, 5xx, timeouts, IAM not yet consistent: retry after `retry_after` seconds.

    `exact` asks for the retry at `retry_after`, without the growth repeated failures get: for waits whose end
    is known (a grace period running out), where a longer wait would only report the outcome late.
    """

    def __init__(self, reason: str, message: str, retry_after: float = 10.0, *, exact: bool = False) -> None:
        super().__init__(reason, message)
        self.retry_after = retry_after
        self.exact = exact


class NeedsAttention(OperatorError):
    """Invalid spec, bad credentials, AccessDenied, not owned: a person must fix something; retry slowly."""


class NotOwned(NeedsAttention):
    """An external object exists under our deterministic name but carries no proof that we own it."""

    def __init__(self, message: str) -> None:
        super().__init__("NotOwned", message)
