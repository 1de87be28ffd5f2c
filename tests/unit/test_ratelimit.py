"""The token bucket, on an injected clock: no wall-clock thresholds."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from worker.ratelimit import TokenBucket, shared


class FakeClock:
    """time.monotonic and time.sleep for one bucket: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            self.now += seconds

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def bucket(rate: float, burst: float | None = None) -> tuple[TokenBucket, FakeClock]:
    clock = FakeClock()
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep), clock


def test_starts_full_with_a_burst_equal_to_the_rate():
    b, _ = bucket(5)
    assert b.burst == 5
    assert [b.try_acquire() for _ in range(6)] == [True] * 5 + [False]


def test_burst_is_at_least_one_for_slow_rates():
    b, clock = bucket(0.5)
    assert b.burst == 1
    assert b.try_acquire()
    assert not b.try_acquire()
    clock.advance(1.9)
    assert not b.try_acquire()
    clock.advance(0.1)
    assert b.try_acquire()


def test_refills_at_the_rate_and_never_beyond_the_burst():
    b, clock = bucket(5)
    for _ in range(5):
        assert b.try_acquire()
    clock.advance(0.2)  # one token
    assert b.try_acquire()
    assert not b.try_acquire()
    clock.advance(100)  # long idle: capped at the burst
    assert b.tokens == pytest.approx(5)


def test_acquire_waits_exactly_for_the_next_token():
    b, clock = bucket(4)
    for _ in range(4):
        b.acquire()
    assert clock.slept == []
    start = clock.now
    assert b.acquire()
    assert clock.now - start == pytest.approx(0.25)


def test_acquire_gives_up_at_the_timeout():
    b, clock = bucket(1)
    assert b.acquire(timeout=0)
    start = clock.now
    assert not b.acquire(timeout=0.4)
    assert clock.now - start == pytest.approx(0.4)
    assert b.acquire(timeout=0.7)  # 0.4 s already refilled; 0.6 s more makes the token


def test_long_run_average_is_the_rate():
    b, clock = bucket(5)
    start = clock.now
    for _ in range(5 + 300):
        assert b.acquire()
    # 5 immediately (the burst), then 300 at 5 a second.
    assert clock.now - start == pytest.approx(60.0)


def test_threads_share_one_budget():
    b, clock = bucket(10, burst=10)
    taken = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(25):
            if b.try_acquire():
                with lock:
                    taken.append(1)

    in_threads(take, 8)
    assert len(taken) == 10  # the clock did not move: exactly the burst, whatever the interleaving
    clock.advance(1.0)
    in_threads(take, 8)
    assert len(taken) == 20


def in_threads(fn: Callable[[], None], n: int) -> None:
    """Run fn in n threads at once and wait for all of them."""
    threads = [threading.Thread(target=fn) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_shared_bucket_is_one_per_rate():
    assert shared(7.0) is shared(7)
    assert shared(7.0) is not shared(8.0)


def test_rejects_nonsense():
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, burst=0.5)
