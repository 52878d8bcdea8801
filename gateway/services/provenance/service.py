"""``ProvenanceReader``: reads the C2PA manifest store of a video in a pool of worker processes, bounded in time
(a per-read timeout, after which the pool is killed and replaced), memory (the workers' address space is capped)
and size (bigger files are not read). Whatever happens the answer is a summary: a failed read is
``present: true, valid: false`` with an ``errors`` entry, never a failed prediction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.services.provenance import read
from gateway.services.provenance.bmff import scan_top_level

if TYPE_CHECKING:
    from gateway.core.settings import Settings

log = logging.getLogger("gateway.provenance")
MB = 1024 * 1024


class ProvenanceReader:
    """The worker pool and its limits; ``await read(path)`` gives ``(summary, error or None)``."""

    def __init__(
        self,
        *,
        workers: int,
        timeout_s: float,
        max_bytes: int,
        memory_mb: int,
        trust_anchors: Path | None,
    ) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.memory_bytes = memory_mb * MB
        pem = trust_anchors.read_text() if trust_anchors is not None else None
        self.trusting = bool(pem and "BEGIN CERTIFICATE" in pem)
        self._settings_json = json.dumps(read.reader_settings(pem))
        self._pool: ProcessPoolExecutor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> ProvenanceReader:
        """One worker per prediction slot: reads never wait for each other."""
        return cls(
            workers=settings.max_concurrent_predictions,
            timeout_s=settings.c2pa_timeout_s,
            max_bytes=settings.c2pa_max_bytes,
            memory_mb=settings.c2pa_memory_mb,
            trust_anchors=settings.c2pa_trust_anchors,
        )

    # --- the pool ------------------------------------------------------------------------------------------------

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),  # never fork a process that holds threads and torch
            initializer=read.init_worker,
            initargs=(self._settings_json, self.memory_bytes),
        )

    def _pool_now(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = self._new_pool()
        return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        """Kill ``pool``'s workers (one may be stuck in native code) and forget it; the next read starts a new one."""
        processes = dict(getattr(pool, "_processes", None) or {})
        for process in processes.values():
            with contextlib.suppress(Exception):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        if self._pool is pool:
            self._pool = None

    async def start(self) -> None:
        """Start the workers now (spawned processes take a moment to import), so no request waits for them."""
        pool = self._pool_now()
        loop = asyncio.get_running_loop()
        try:
            await asyncio.gather(*(loop.run_in_executor(pool, read.ping) for _ in range(self.workers)))
        except Exception as exc:  # a broken pool is replaced on the first read
            log.warning("the C2PA reader workers did not start: %s", exc)
            self._discard(pool)

    def close(self) -> None:
        if self._pool is not None:
            self._discard(self._pool)

    # --- reading -------------------------------------------------------------------------------------------------

    def read_beside(self, path: Path) -> asyncio.Task[tuple[dict[str, Any], str | None]]:
        """Start reading ``path`` in the background (beside inference); the task never raises and always ends
        within the timeout, and is kept referenced until it does."""
        task = asyncio.create_task(self.read(path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def read(self, path: Path) -> tuple[dict[str, Any], str | None]:
        """The summary of ``path``'s credentials and, when it could not be read, why."""
        start = time.perf_counter()
        try:
            return await self._read(path)
        except Exception as exc:  # anything unexpected: reported, never raised into the prediction
            log.exception("reading the content credentials of %s failed", path.name)
            return _unreadable(), f"unexpected {type(exc).__name__}; see the gateway log"
        finally:
            log.debug("content credentials of %s read in %.4f s", path.name, time.perf_counter() - start)

    async def _read(self, path: Path) -> tuple[dict[str, Any], str | None]:
        size = path.stat().st_size
        scan = await asyncio.to_thread(scan_top_level, path)
        if scan == "none":  # an MP4/MOV without a manifest box: nothing to read
            return read.absent(), None
        if size > self.max_bytes:
            message = f"the file ({size} bytes) is over the {self.max_bytes}-byte limit for reading credentials"
            return (_unreadable() if scan == "c2pa" else read.absent()), message
        for attempt in (1, 2):
            pool = self._pool_now()
            future = asyncio.get_running_loop().run_in_executor(pool, read.read_summary, str(path))
            try:
                summary = await asyncio.wait_for(future, self.timeout_s)
            except TimeoutError:
                log.warning("reading the content credentials of %s took over %.1f s", path.name, self.timeout_s)
                self._discard(pool)
                return _unreadable(), f"reading the content credentials took over {self.timeout_s:g} s"
            except BrokenProcessPool:  # a worker died (memory cap, crash), maybe while reading another file
                self._discard(pool)
                if attempt == 2:
                    return _unreadable(), "the content credentials reader crashed on this file"
                continue
            error = summary.pop("error", None)
            return (_unreadable(), error) if error else (summary, None)
        raise AssertionError("unreachable")


def _unreadable() -> dict[str, Any]:
    """A manifest store is there (or may be) but could not be read: shown as present and not valid."""
    return {**read.absent(), "present": True, "validation_errors": ["gateway.unreadable"]}
