"""Prediction slots: how many predictions run at once and how many may wait (the rest get a fast 429)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gateway.core.errors import Overloaded
from gateway.services.metrics import Metrics


class Admission:
    """At most ``slots`` predictions at once and ``max_waiting`` waiting; beyond that a fast 429."""

    def __init__(self, slots: int, max_waiting: int, wait_timeout_s: float, metrics: Metrics) -> None:
        self._semaphore = asyncio.Semaphore(slots)
        self._max_waiting = max_waiting
        self._wait_timeout_s = wait_timeout_s
        self._waiting = 0
        self._metrics = metrics

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one prediction slot for the block."""
        if self._semaphore.locked() and self._waiting >= self._max_waiting:
            raise Overloaded("too many predictions in progress; retry later", retry_after_s=5)
        self._waiting += 1
        try:
            async with asyncio.timeout(self._wait_timeout_s):
                await self._semaphore.acquire()
        except TimeoutError as exc:
            raise Overloaded(
                "no prediction slot freed in time; retry later", retry_after_s=10, status_code=503
            ) from exc
        finally:
            self._waiting -= 1
        async with self._held():
            yield

    @contextlib.asynccontextmanager
    async def worker_slot(self) -> AsyncIterator[None]:
        """A slot for a job worker: it waits as long as it takes (the workers are few and nobody is waiting on the
        HTTP answer), and it shares the limit with the synchronous predictions, so jobs and predictions together
        never run more than ``slots`` pipelines at once."""
        await self._semaphore.acquire()
        async with self._held():
            yield

    @contextlib.asynccontextmanager
    async def _held(self) -> AsyncIterator[None]:
        """Count the slot just acquired while the block runs, then give it back."""
        self._metrics.predictions_in_flight.inc()
        try:
            yield
        finally:
            self._metrics.predictions_in_flight.dec()
            self._semaphore.release()
