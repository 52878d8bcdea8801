"""The token bucket, on a clock the test moves (the gateway's own limits are tested end to end in test_auth)."""

from __future__ import annotations

import pytest

from gateway.services.access.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_one_per_interval() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert [limiter.take("a", 6) for _ in range(6)] == [0.0] * 6  # a burst of the full minute's allowance
    wait = limiter.take("a", 6)
    assert wait == pytest.approx(10.0)  # 6/min: one token every 10 s
    assert limiter.take("b", 6) == 0.0  # buckets are per caller
    clock.now += 9.9
    assert limiter.take("a", 6) == pytest.approx(0.1)
    clock.now += 0.1
    assert limiter.take("a", 6) == 0.0
    assert limiter.take("a", 6) > 0


def test_refill_is_capped_and_zero_means_no_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limiter.take("a", 3)
    clock.now += 3600  # an hour idle refills to the burst, not beyond
    assert [limiter.take("a", 3) for _ in range(4)][-1] > 0
    assert all(limiter.take("free", 0) == 0.0 for _ in range(1000))
