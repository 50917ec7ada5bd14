"""A fault-injecting HTTP reverse proxy for AWS query-protocol APIs (IAM, STS) in front of moto.

It answers a configurable share of requests itself with what AWS sends when it is unhappy — `Throttling`
(400), `ServiceUnavailable` (503) or `AccessDenied` (403), as query-protocol XML error bodies that botocore
parses and classifies exactly like the real ones — and forwards the rest. Faults can be limited to some API
actions and capped to a number in a row (so "every call fails once, then succeeds" is deterministic).
Faults and counters change at runtime, so a test or the chaos suite can switch them while traffic flows.
"""

from __future__ import annotations

import http.client
import random
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

_HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "host"}
)

# (HTTP status, AWS error type, code, message) of each fault kind.
_FAULTS: Final = {
    "throttled": (400, "Sender", "Throttling", "Rate exceeded"),
    "server_errors": (503, "Receiver", "ServiceUnavailable", "Service is unavailable (injected)"),
    "access_denied": (
        403,
        "Sender",
        "AccessDenied",
        "User is not authorized to perform this action (injected by the fault proxy)",
    ),
}


@dataclass
class FaultPlan:
    """Shares (0..1) of matching requests answered with each fault; the rest are forwarded."""

    throttle: float = 0.0
    server_error: float = 0.0
    access_denied: float = 0.0
    # API actions (e.g. "CreateRole") the faults apply to; None = all.
    actions: frozenset[str] | None = None
    # At most this many faults in a row (over matching requests); None = no cap.
    max_consecutive: int | None = None
    # Added before answering every request (faulted or forwarded).
    delay_seconds: float = 0.0


@dataclass
class FaultCounters:
    """What the proxy did since the last reset."""

    requests: int = 0
    forwarded: int = 0
    throttled: int = 0
    server_errors: int = 0
    access_denied: int = 0
    by_action: dict[str, int] = field(default_factory=dict)

    @property
    def faults(self) -> int:
        return self.throttled + self.server_errors + self.access_denied


def error_body(code: str, message: str, error_type: str = "Sender") -> bytes:
    """An AWS query-protocol error response body (what IAM and STS send)."""
    return (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<Error><Type>{error_type}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    ).encode()


class _QuietServer(ThreadingHTTPServer):
    """A client that goes away mid-request (an operator killed on purpose) is no error worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FaultProxy:
    """Reverse proxy to `upstream` (e.g. moto's URL) on 127.0.0.1 with runtime-configurable faults."""

    def __init__(self, upstream: str, *, port: int = 0, seed: int = 0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError("upstream must be an http:// URL")
        self._upstream_host = parsed.hostname
        self._upstream_port = parsed.port or 80
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._plan = FaultPlan()
        self._counters = FaultCounters()
        self._consecutive = 0
        # (arrival time, action) of every request, for rates over time (the benchmark's peak call rates).
        self._arrivals: list[tuple[float, str]] = []
        self._server = _QuietServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FaultProxy:
        """Serve in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def set_faults(
        self,
        *,
        throttle: float = 0.0,
        server_error: float = 0.0,
        access_denied: float = 0.0,
        actions: Iterable[str] | None = None,
        max_consecutive: int | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        """Replace the fault plan (all shares default to 0: calling with no arguments clears faults)."""
        if throttle + server_error + access_denied > 1.0:
            raise ValueError("fault shares must add up to at most 1")
        plan = FaultPlan(
            throttle=throttle,
            server_error=server_error,
            access_denied=access_denied,
            actions=frozenset(actions) if actions is not None else None,
            max_consecutive=max_consecutive,
            delay_seconds=delay_seconds,
        )
        with self._lock:
            self._plan = plan
            self._consecutive = 0

    def clear(self) -> None:
        """No more faults."""
        self.set_faults()

    @property
    def counters(self) -> FaultCounters:
        """A snapshot of the counters."""
        with self._lock:
            c = self._counters
            return FaultCounters(
                c.requests, c.forwarded, c.throttled, c.server_errors, c.access_denied, dict(c.by_action)
            )

    def arrivals(self, since: float = 0.0) -> list[tuple[float, str]]:
        """(epoch arrival time, action) of every request since `since`."""
        with self._lock:
            return [item for item in self._arrivals if item[0] >= since]

    def reset_counters(self) -> None:
        with self._lock:
            self._counters = FaultCounters()

    def _decide(self, action: str) -> tuple[str | None, float]:
        """Which fault (a FaultCounters field name) to answer `action` with, or None to forward."""
        with self._lock:
            plan = self._plan
            counters = self._counters
            counters.requests += 1
            counters.by_action[action] = counters.by_action.get(action, 0) + 1
            self._arrivals.append((time.time(), action))
            fault: str | None = None
            matches = plan.actions is None or action in plan.actions
            capped = plan.max_consecutive is not None and self._consecutive >= plan.max_consecutive
            if matches and not capped:
                roll = self._random.random()
                if roll < plan.throttle:
                    fault = "throttled"
                elif roll < plan.throttle + plan.server_error:
                    fault = "server_errors"
                elif roll < plan.throttle + plan.server_error + plan.access_denied:
                    fault = "access_denied"
            if fault is None:
                counters.forwarded += 1
                if matches:
                    self._consecutive = 0
            else:
                setattr(counters, fault, getattr(counters, fault) + 1)
                self._consecutive += 1
            return fault, plan.delay_seconds

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self._upstream_host, self._upstream_port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            return response.status, response.getheaders(), payload
        finally:
            connection.close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: tests read the counters instead

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                action = _action_of(self.path, body)
                fault, delay = proxy._decide(action)
                if delay > 0:
                    time.sleep(delay)
                if fault is not None:
                    status, error_type, code, message = _FAULTS[fault]
                    self._reply(status, [("Content-Type", "text/xml")], error_body(code, message, error_type))
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Host"] = f"{proxy._upstream_host}:{proxy._upstream_port}"
                try:
                    status, response_headers, payload = proxy._forward(self.command, self.path, headers, body)
                except OSError:
                    self._reply(502, [("Content-Type", "text/plain")], b"upstream unreachable")
                    return
                kept = [(k, v) for k, v in response_headers if k.lower() not in _HOP_BY_HOP | {"content-length"}]
                self._reply(status, kept, payload)

            def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle  # noqa: N815 (http.server's naming)
            do_POST = _handle  # noqa: N815
            do_PUT = _handle  # noqa: N815
            do_DELETE = _handle  # noqa: N815

        return Handler


def _action_of(path: str, body: bytes) -> str:
    """The query-protocol Action of a request (form body or query string), or "" when there is none."""
    query = urllib.parse.urlsplit(path).query
    for source in (body.decode("utf-8", errors="replace"), query):
        values = urllib.parse.parse_qs(source).get("Action")
        if values:
            return values[0]
    return ""
