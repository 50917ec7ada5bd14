"""Unit tests of the client-side rate limiter, driven by a fake clock (no wall-clock assertions)."""

from __future__ import annotations

import collections
import threading

import pytest

from opsramp_aws_operator.ratelimit import RateLimiter, _reset_registry_for_tests, shared_limiter


class FakeClock:
    """A clock that moves only when someone sleeps on it; thread-safe."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


class RecordingDeque(collections.deque[float]):
    """Stands in for the limiter's grant log so a test sees every grant time, even after it expires."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[float] = []

    def append(self, x: float) -> None:
        self.history.append(x)
        super().append(x)


def max_in_any_window(times: list[float], window: float) -> int:
    """Largest number of times inside any half-open window [t, t + window)."""
    times = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_grants_limit_then_blocks_until_oldest_grant_leaves_window() -> None:
    """The first `limit` calls pass at once; the next waits exactly until the oldest grant ages out."""
    clock = FakeClock()
    limiter = RateLimiter(3, 10.0, "t", clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    waited = limiter.acquire()
    assert waited == pytest.approx(10.0)
    assert clock.now == pytest.approx(1010.0)


def test_sliding_window_never_exceeds_limit_over_many_calls() -> None:
    """120 sequential acquires with limit 50 per 60 s never put more than 50 grants in any 60 s window."""
    clock = FakeClock()
    limiter = RateLimiter(50, 60.0, "t", clock=clock, sleep=clock.sleep)
    log = RecordingDeque()
    limiter._grants = log
    for _ in range(120):
        limiter.acquire()
    assert len(log.history) == 120
    assert max_in_any_window(log.history, 60.0) == 50
    # 120 grants at 50/min need at least two full windows of waiting.
    assert clock.now - 1000.0 >= 120.0


def test_threads_share_one_budget() -> None:
    """Eight threads hammering one limiter get at most `limit` grants per window, and all of them finish."""
    clock = FakeClock()
    limiter = RateLimiter(5, 1.0, "t", clock=clock, sleep=clock.sleep)
    log = RecordingDeque()
    limiter._grants = log

    def worker() -> None:
        for _ in range(10):
            limiter.acquire()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert len(log.history) == 80
    assert max_in_any_window(log.history, 1.0) <= 5


def test_try_acquire_at_frozen_time_grants_exactly_limit_across_threads() -> None:
    """With time frozen, concurrent non-blocking attempts win exactly `limit` slots: no lost updates."""
    clock = FakeClock()
    limiter = RateLimiter(7, 60.0, "t", clock=clock, sleep=clock.sleep)
    wins: list[bool] = []
    wins_lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            ok = limiter.try_acquire()
            with wins_lock:
                wins.append(ok)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(wins) == 7
    assert limiter.in_window() == 7


def test_pause_delays_the_next_grant() -> None:
    """After pause(5) no slot is granted for 5 s even though the window has room."""
    clock = FakeClock()
    limiter = RateLimiter(100, 60.0, "t", clock=clock, sleep=clock.sleep)
    limiter.pause(5.0)
    assert not limiter.try_acquire()
    assert limiter.acquire() == pytest.approx(5.0)
    assert limiter.try_acquire()


def test_shared_limiter_returns_one_object_per_key() -> None:
    """Same key gives the same limiter (first figures win); another key gives another."""
    _reset_registry_for_tests()
    a = shared_limiter("opsramp:https://x|client_1:writes", 50, 60.0)
    b = shared_limiter("opsramp:https://x|client_1:writes", 10, 1.0)
    c = shared_limiter("iam", 50, 60.0)
    assert a is b
    assert (b.limit, b.window_seconds) == (50, 60.0)
    assert c is not a
    _reset_registry_for_tests()


@pytest.mark.parametrize(("limit", "window"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_rejects_nonsense_settings(limit: int, window: float) -> None:
    """A zero limit or a non-positive window is refused at construction."""
    with pytest.raises(ValueError):
        RateLimiter(limit, window)
