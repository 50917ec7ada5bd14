"""Keeps secret values out of every log line, Event, condition and exception text that leaves the operator.

Adapters already build messages from names and codes only; this is the second wall. Every secret the operator
reads (OpsRamp client secrets, External IDs, tokens) is registered here, and `redact` replaces any registered
value in a text. A logging filter applies it to every record.
"""

from __future__ import annotations

import logging
import threading

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "***"
# Shorter values would mask ordinary words; every real secret here is far longer.
MIN_SECRET_LENGTH = 6


def register(*values: str | None) -> None:
    with _lock:
        for value in values:
            if value and len(value) >= MIN_SECRET_LENGTH:
                _secrets.add(value)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with every registered secret masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks print str(exception): render it now, redacted, and drop the live exception.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_logging_filter() -> None:
    """Attach the filter to every handler of the root logger (handlers see records of every logger)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
