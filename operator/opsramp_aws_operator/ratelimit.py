"""Thread-safe client-side rate limiters (N calls per sliding window of W seconds), shared by key.

Why hand-written rather than a wrapper around pyrate-limiter 4.5 (which is installed): its blocking
`try_acquire` starts a background "leak" thread per bucket, advances item timestamps by the planned sleep
instead of re-reading the clock, and accepts a custom clock only through a bucket subclass. We need three
things from it and nothing else: block until a slot is free, tell the caller how long it waited (for the
RATE_LIMIT_WAIT_SECONDS metric), and let tests drive time with an injectable clock. A sliding-window log in
~40 lines does exactly that and never lets more than `limit` grants fall inside any window of
`window_seconds`, which is what OpsRamp's per-minute counters need from us.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleeper = Callable[[float], None]


class WaitTooLong(Exception):
    """`acquire(max_wait=...)` would have to wait longer than allowed; `delay` says how long a slot is away."""

    def __init__(self, name: str, delay: float) -> None:
        super().__init__(f"rate limiter {name}: next slot in {delay:.1f}s")
        self.delay = delay


class RateLimiter:
    """At most `limit` grants in any `window_seconds`-long window; `acquire` blocks until one is free."""

    def __init__(
        self,
        limit: int,
        window_seconds: float,
        name: str = "",
        *,
        clock: Clock = time.monotonic,
        sleep: Sleeper = time.sleep,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.limit = limit
        self.window_seconds = float(window_seconds)
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # Times of the grants still inside the window, oldest first.
        self._grants: collections.deque[float] = collections.deque()
        # No grant before this time: set by `pause` when the server said "slow down" (429 with a reset).
        self._paused_until = 0.0

    def _delay_locked(self, now: float) -> float:
        """Seconds until a slot is free (0 when one is free now); caller holds the lock."""
        horizon = now - self.window_seconds
        while self._grants and self._grants[0] <= horizon:
            self._grants.popleft()
        delay = max(0.0, self._paused_until - now)
        if len(self._grants) >= self.limit:
            delay = max(delay, self._grants[0] + self.window_seconds - now)
        return delay

    def try_acquire(self) -> bool:
        """Take a slot if one is free now; never blocks."""
        with self._lock:
            now = self._clock()
            if self._delay_locked(now) > 0:
                return False
            self._grants.append(now)
            return True

    def acquire(self, max_wait: float | None = None) -> float:
        """Block until a slot is free, take it, and return the seconds spent waiting.

        With `max_wait`, never wait longer in all than that: when the next slot is further away, raise
        `WaitTooLong` at once instead (a shared worker thread must not sit out one tenant's budget or pause).
        """
        start = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay_locked(now)
                if delay <= 0:
                    self._grants.append(now)
                    waited = max(0.0, now - start)
                    if waited > 0:
                        log.debug("rate limiter %s: waited %.3fs for a slot", self.name, waited)
                    return waited
                if max_wait is not None and now - start + delay > max_wait:
                    raise WaitTooLong(self.name, delay)
            # Sleep outside the lock so other threads can still see the state; re-check on wake because
            # another thread may have taken the slot that freed up.
            self._sleep(delay)

    def pause(self, seconds: float) -> None:
        """Grant nothing for `seconds` from now (the server told us to back off: 429, X-RateLimit-Reset)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def in_window(self) -> int:
        """Grants inside the current window (for tests and debugging)."""
        with self._lock:
            self._delay_locked(self._clock())
            return len(self._grants)

    def __repr__(self) -> str:
        return f"RateLimiter(name={self.name!r}, limit={self.limit}, window_seconds={self.window_seconds})"


_registry: dict[str, RateLimiter] = {}
_registry_lock = threading.Lock()


def shared_limiter(key: str, limit: int, window_seconds: float) -> RateLimiter:
    """The process-wide limiter for `key` (e.g. one OpsRamp tenant's write category, or all IAM calls).

    The first caller's `limit` and `window_seconds` win: every caller of one key shares one budget, so a later
    caller asking for different figures gets the existing limiter (and a debug line saying so).
    """
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = RateLimiter(limit, window_seconds, name=key)
            _registry[key] = limiter
        elif limiter.limit != limit or limiter.window_seconds != float(window_seconds):
            log.debug(
                "shared limiter %s already exists with limit=%d window=%.3fs; ignoring limit=%d window=%.3fs",
                key,
                limiter.limit,
                limiter.window_seconds,
                limit,
                window_seconds,
            )
        return limiter


def _reset_registry_for_tests() -> None:
    """Forget every shared limiter (tests only: production keeps them for the life of the process)."""
    with _registry_lock:
        _registry.clear()
