"""gateway.core.aio: waiting for an event with a timeout, without losing a cancellation."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from gateway.core.aio import wait_event

Waiter = Callable[[asyncio.Event], Awaitable[object]]


async def _cancel_as_it_is_set(wait: Waiter, spins: int) -> str:
    """Set the event, let the loop turn ``spins`` times, cancel the waiting task: what became of the cancel?"""
    event = asyncio.Event()
    task = asyncio.create_task(wait(event))
    await asyncio.sleep(0)  # the task waits
    event.set()
    for _ in range(spins):
        await asyncio.sleep(0)
    finished_before = task.done()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return "cancelled"
    return "finished before" if finished_before else "swallowed"


def _outcomes(wait: Waiter) -> list[str]:
    async def all_spins() -> list[str]:
        return [await _cancel_as_it_is_set(wait, spins) for spins in range(6)]

    return asyncio.run(all_spins())


def test_a_cancel_arriving_as_the_event_is_set_is_kept() -> None:
    outcomes = _outcomes(lambda event: wait_event(event, 10.0))
    assert "swallowed" not in outcomes, outcomes
    assert outcomes[0] == "cancelled" and outcomes[-1] == "finished before", outcomes  # both sides of the race


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for keeps cancellations from Python 3.12 on")
def test_the_race_is_real_with_wait_for() -> None:
    """The control: the same scenario loses the cancellation with ``asyncio.wait_for`` on Python 3.11."""
    outcomes = _outcomes(lambda event: asyncio.wait_for(event.wait(), 10.0))
    assert "swallowed" in outcomes, outcomes


def test_wait_event_answers_whether_the_event_was_set() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_event(event, 0.05)
        asyncio.get_running_loop().call_later(0.05, event.set)
        woken = await wait_event(event, 10.0)
        already = await wait_event(event, 0.0)
        return timed_out, woken, already

    assert asyncio.run(scenario()) == (False, True, True)
