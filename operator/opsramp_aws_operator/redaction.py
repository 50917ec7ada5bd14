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
# Secrets by their first MIN_SECRET_LENGTH characters (longest first), rebuilt when one is added. A fleet
# registers an External ID per resource: looking every position of a text up here costs the same for ten
# secrets or ten thousand, where trying each secret in turn made every log line O(fleet).
_by_prefix: dict[str, list[str]] | None = None


def register(*values: str | None) -> None:
    global _by_prefix  # noqa: PLW0603 - the module is the registry
    with _lock:
        for value in values:
            if value and len(value) >= MIN_SECRET_LENGTH and value not in _secrets:
                _secrets.add(value)
                _by_prefix = None


def _index() -> dict[str, list[str]]:
    global _by_prefix  # noqa: PLW0603
    with _lock:
        if _by_prefix is None:
            index: dict[str, list[str]] = {}
            for secret in sorted(_secrets, key=len, reverse=True):
                index.setdefault(secret[:MIN_SECRET_LENGTH], []).append(secret)
            _by_prefix = index
        return _by_prefix


def redact(text: str) -> str:
    """`text` with every registered secret replaced by MASK (leftmost first, the longest at each position)."""
    index = _index()
    if not index or len(text) < MIN_SECRET_LENGTH:
        return text
    parts: list[str] = []
    start = position = 0
    end = len(text) - MIN_SECRET_LENGTH
    while position <= end:
        candidates = index.get(text[position : position + MIN_SECRET_LENGTH])
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
