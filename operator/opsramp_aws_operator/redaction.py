"""Keeps secret values out of every log line, Event, condition and exception text that leaves the operator.

Adapters already build messages from names and codes only; this is the second wall. Every secret the operator
reads (OpsRamp client secrets, External IDs, tokens) is registered here, and `redact` replaces any registered
value in a text. A logging filter applies it to every record.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import urllib.parse

_lock = threading.Lock()
_secrets: set[str] = set()
MASK = "***"
# What the registry accepts as a secret. Shorter or plainer values would let a tenant who chooses one (a client
# secret, an External ID in its own Secret) mask ordinary words in everyone's log lines and Events; every real
# secret here is longer and mixes cases or letters and digits (generated External IDs, OpsRamp API secrets, tokens).
MIN_SECRET_LENGTH = 16
MIN_DISTINCT_CHARACTERS = 8
# The index below keys secrets (and their encoded forms) by their first few characters.
_PREFIX = 6
# Secrets by their first _PREFIX characters (longest first), built once and kept current as secrets are added. A
# fleet registers an External ID per resource: looking every position of a text up here costs the same for ten
# secrets or ten thousand, where trying each secret in turn made every log line O(fleet).
_by_prefix: dict[str, list[str]] | None = None


def looks_secret(value: str) -> bool:
    """Whether a value may be registered: long, varied, no spaces, at least two of lower, upper and digits."""
    classes = (str.islower, str.isupper, str.isdigit)
    return (
        len(value) >= MIN_SECRET_LENGTH
        and len(set(value)) >= MIN_DISTINCT_CHARACTERS
        and sum(any(test(c) for c in value) for test in classes) >= 2
        and not any(c.isspace() for c in value)
    )


def encoded_forms(value: str) -> set[str]:
    """The value as it may appear in text: itself, URL-encoded, JSON-escaped and base64 (at any alignment)."""
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value), json.dumps(value)[1:-1]}
    raw = value.encode()
    for pad in range(3):
        # The secret inside a longer base64 text starts at any byte offset mod 3: the characters that depend on
        # its bytes alone are the same whatever surrounds it.
        encoded = base64.b64encode(b"\0" * pad + raw + b"\0\0").decode()
        start = -(-8 * pad // 6)
        end = 8 * (pad + len(raw)) // 6
        core = encoded[start:end]
        forms.update({core, core.replace("+", "-").replace("/", "_")})
    return {f for f in forms if len(f) >= _PREFIX}


def register(*values: str | None) -> None:
    """Mask these values (and their encoded forms) from now on; values that do not look secret are ignored."""
    with _lock:
        for value in values:
            if value and value not in _secrets and looks_secret(value):
                forms = encoded_forms(value) - _secrets
                _secrets.update(forms)
                if _by_prefix is not None:
                    # Kept up to date rather than rebuilt: a fleet registers an External ID per resource, and a
                    # rebuild per registration (sorting every secret) was the top of the operator's CPU profile.
                    for form in forms:
                        bucket = _by_prefix.setdefault(form[:_PREFIX], [])
                        bucket.append(form)
                        bucket.sort(key=len, reverse=True)


def _index() -> dict[str, list[str]]:
    global _by_prefix  # noqa: PLW0603
    with _lock:
        if _by_prefix is None:
            index: dict[str, list[str]] = {}
            for secret in sorted(_secrets, key=len, reverse=True):
                index.setdefault(secret[:_PREFIX], []).append(secret)
            _by_prefix = index
        return _by_prefix


def redact(text: str) -> str:
    """`text` with every registered secret replaced by MASK (leftmost first, the longest at each position)."""
    index = _index()
    if not index or len(text) < _PREFIX:
        return text
    parts: list[str] = []
    start = position = 0
    end = len(text) - _PREFIX
    while position <= end:
        candidates = index.get(text[position : position + _PREFIX])
        found = next((s for s in candidates if text.startswith(s, position)), None) if candidates else None
        if found is None:
            position += 1
            continue
        parts += [text[start:position], MASK]
        position = start = position + len(found)
    if not parts:
        return text
    parts.append(text[start:])
    return "".join(parts)


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
