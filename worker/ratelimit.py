"""A thread-safe token bucket: at most `rate` acquisitions a second on average, `burst` at once.

One bucket per rate is shared by every thread of the process (`shared()`), so the worker pool as a whole stays
under Rekognition's TPS quota whatever WORKER_CONCURRENCY is. The clock and sleep are injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Refill arithmetic in floating point can leave 0.9999999... tokens after exactly the right wait; a tiny remaining
# wait may then not even move a large monotonic clock (1e-16 + 1e6 == 1e6): count such a token as whole.
_EPSILON = 1e-9


class TokenBucket:
    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst  # starts full
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = max(self._stamp, now)

    def try_acquire(self) -> bool:
        """Take a token if one is there now."""
        with self._lock:
            self._refill()
            if self._tokens >= 1 - _EPSILON:
                self._tokens = max(0.0, self._tokens - 1)
                return True
            return False

    def acquire(self, timeout: float | None = None) -> bool:
        """Wait for a token; False when none came within `timeout` seconds (None = wait as long as it takes)."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= 1 - _EPSILON:
                    self._tokens = max(0.0, self._tokens - 1)
                    return True
                wait = (1 - self._tokens) / self.rate
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                wait = min(wait, left)
            # Sleep outside the lock; another thread may take the token first, then we wait again.
            self._sleep(wait)

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens


_shared: dict[tuple[float, float], TokenBucket] = {}
_shared_lock = threading.Lock()


def shared(rate: float, burst: float | None = None) -> TokenBucket:
    """The process-wide bucket for this rate (created on first use)."""
    key = (float(rate), float(burst if burst is not None else max(1.0, rate)))
    with _shared_lock:
        bucket = _shared.get(key)
        if bucket is None:
            bucket = _shared[key] = TokenBucket(*key)
        return bucket
