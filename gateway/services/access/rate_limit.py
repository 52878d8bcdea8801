"""Token buckets per caller (an API key id, or a client address with open access), in this process.

A limit of N per minute is a bucket of N tokens refilled at N/60 per second: a burst of N, then one request every
60/N s. The buckets live in one gateway process, so with R replicas a caller gets up to R times its limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_IDLE_BUCKETS = 10_000  # past this many callers, full (idle) buckets are dropped: they equal a fresh one


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``take(caller, per_minute)``: 0.0 when admitted, else the seconds until a request would be."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, caller: str, per_minute: int) -> float:
        if per_minute <= 0:
            return 0.0
        now = self._clock()
        rate = per_minute / 60.0
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= MAX_IDLE_BUCKETS:
                self._prune(now, rate, per_minute)
            bucket = self._buckets[caller] = _Bucket(float(per_minute), now)
        bucket.tokens = min(float(per_minute), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / rate

    def _prune(self, now: float, rate: float, capacity: int) -> None:
        self._buckets = {k: b for k, b in self._buckets.items() if b.tokens + (now - b.updated) * rate < capacity}
