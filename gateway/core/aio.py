"""asyncio helpers that keep cancellation intact."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` at most ``timeout`` seconds; True when it was set.

    Not ``asyncio.wait_for``: on Python 3.11 it swallows a cancellation that arrives just as the awaited
    future completes (it returns the result instead of raising), so a task stopped with ``cancel()`` at that
    moment runs on. A job's lease reporter did exactly that and kept its job "uploading" forever.
    ``asyncio.timeout`` tells its own timeout from a cancellation from outside.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
