"""Stage updates of running predictions, for the web page's progress display (``GET /api/v1/progress/{id}``).

The key is the request id (a client that wants updates sends its own random ``X-Request-ID`` and opens the
event stream with the same id, usually before it sends the video). The pipeline reports each stage with
``tracker.stage(key, name)`` inside ``tracker.track(key)``, which also marks the end (``done`` or ``failed``).

Only stage names and elapsed seconds are published, never results. Everything lives in memory, per app, in the
event loop's thread: at most ``max_entries`` keys, each dropped ``ttl_s`` after it was last updated.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.core.aio import wait_event

TERMINAL = ("done", "failed")


@dataclass
class _Entry:
    events: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    touched: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1]["stage"] in TERMINAL


class ProgressTracker:
    """In-memory stage events keyed by request id."""

    def __init__(self, *, ttl_s: float = 600.0, max_entries: int = 1024) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def _prune(self) -> None:
        now = time.monotonic()
        for key in [k for k, e in self._entries.items() if now - e.touched > self.ttl_s]:
            del self._entries[key]
        while len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)

    def _entry(self, key: str) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            self._prune()
            entry = self._entries[key] = _Entry()
        return entry

    def stage(self, key: str, name: str) -> None:
        """Publish that ``key`` entered stage ``name``."""
        entry = self._entry(key)
        now = time.monotonic()
        if not entry.events:
            entry.started = now
        entry.touched = now
        entry.events.append({"stage": name, "elapsed": round(now - entry.started, 3)})
        entry.changed.set()
        entry.changed = asyncio.Event()

    @contextlib.contextmanager
    def track(self, key: str) -> Iterator[Callable[[str], None]]:
        """``with tracker.track(key) as stage: stage("inference") ...``: ends with ``done``, or ``failed`` if the
        block raises."""
        old = self._entries.get(key)
        if old is not None and old.finished:  # the id was used before: start afresh
            del self._entries[key]
        try:
            yield lambda name: self.stage(key, name)
        except BaseException:
            self.stage(key, "failed")
            raise
        self.stage(key, "done")

    async def follow(self, key: str, *, heartbeat_s: float = 10.0, max_s: float = 900.0) -> AsyncIterator[Any]:
        """The events of ``key`` as they come (those already published first); ``None`` after ``heartbeat_s`` of
        silence. Ends after a terminal event, or after ``max_s``."""
        deadline = time.monotonic() + max_s
        seen = 0
        current: _Entry | None = None
        while True:
            entry = self._entry(key)  # created when the stream opens before the prediction starts
            if entry is not current:  # first time, or the entry was evicted and made anew
                current, seen = entry, 0
            entry.touched = time.monotonic()
            while seen < len(entry.events):
                event = entry.events[seen]
                seen += 1
                yield event
                if event["stage"] in TERMINAL:
                    return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if not await wait_event(entry.changed, min(heartbeat_s, remaining)):
                yield None
