"""``ProvenanceReader``: reads the C2PA manifest store of a video in worker processes (``worker``), bounded in
time (a per-read timeout, after which that worker is killed and replaced), memory (each worker's address space is
capped) and size (bigger files are not read). Whatever happens the answer is a summary: a failed read is
``present: true, valid: false`` with an error message for the ``errors`` entry, never a failed prediction.

The workers are plain subprocesses (``python -m gateway.services.provenance.worker``), not multiprocessing: a
spawned multiprocessing child re-imports the parent's ``__main__`` (``python -m gateway`` would load torch into
every worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.services.provenance import read
from gateway.services.provenance.bmff import scan_top_level

if TYPE_CHECKING:
    from gateway.core.settings import Settings

log = logging.getLogger("gateway.provenance")
MB = 1024 * 1024
START_TIMEOUT_S = 60.0  # a worker's interpreter start and import (about a second)
_IMPORT_ROOT = str(Path(__file__).resolve().parents[3])  # the folder holding the gateway package


class WorkerFailed(Exception):
    """The worker died, or answered something that is not a summary."""


class _Worker:
    """One reader process and its pipes.

    Spawned with ``subprocess.Popen`` (vfork/exec: no Python runs in the child), not the event loop's
    ``create_subprocess_exec``: uvloop forks and runs its after-fork handler in the child, where a collected PyAV
    reformatter waits for ever on a thread pool the child does not have (FFmpeg 8's swscale, PyAV 18), which hung
    the gateway's start.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        reading: asyncio.BaseTransport,
    ) -> None:
        self.process = process
        self.stdin = stdin
        self.stdout = stdout
        self._reading = reading

    @classmethod
    async def start(cls, settings_json: str, memory_bytes: int) -> _Worker:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_IMPORT_ROOT, os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.services.provenance.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert process.stdin is not None and process.stdout is not None
        loop = asyncio.get_running_loop()
        try:
            stdout = asyncio.StreamReader(limit=4 * MB)
            reading, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), process.stdout)
            transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, process.stdin)
            stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        except BaseException:
            process.kill()
            await asyncio.to_thread(process.wait)
            raise
        worker = cls(process, stdin, stdout, reading)
        try:
            ready = await asyncio.wait_for(
                worker._exchange({"settings": settings_json, "memory_bytes": memory_bytes}), START_TIMEOUT_S
            )
            if ready != {"ready": True}:
                raise WorkerFailed(f"unexpected greeting {ready!r}")
        except BaseException:
            await worker.kill()
            raise
        return worker

    async def _exchange(self, message: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self.stdin, self.stdout
        try:
            stdin.write((json.dumps(message) + "\n").encode())
            await stdin.drain()
            line = await stdout.readline()
        except (ConnectionError, ValueError) as exc:  # broken pipe; an over-long line
            raise WorkerFailed(str(exc)) from exc
        if not line:
            raise WorkerFailed(f"the worker exited (status {self.process.poll()})")
        try:
            answer = json.loads(line)
        except ValueError as exc:
            raise WorkerFailed("the worker answered something that is not JSON") from exc
        if not isinstance(answer, dict):
            raise WorkerFailed("the worker answered something that is not an object")
        return answer

    async def read(self, path: Path) -> dict[str, Any]:
        return await self._exchange({"path": str(path)})

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.stdin.close()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.process.wait)
        self._reading.close()


class ProvenanceReader:
    """The workers and their limits; ``await read(path)`` gives ``(summary, error message or None)``."""

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
        self._settings_json = json.dumps(read.reader_settings(pem))
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots: asyncio.Semaphore | None = None  # made in the running loop
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

    # --- the workers ---------------------------------------------------------------------------------------------

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        return self._slots

    async def start(self) -> None:
        """Start the workers now, so no request waits for an interpreter to start."""
        try:
            started = await asyncio.gather(
                *(_Worker.start(self._settings_json, self.memory_bytes) for _ in range(self.workers - len(self._idle)))
            )
            self._idle.extend(started)
        except Exception as exc:  # each read starts its worker again and reports what fails
            log.warning("the C2PA reader workers did not start: %s", exc)

    async def aclose(self) -> None:
        """Stop every worker (idle or busy)."""
        workers = self._idle + list(self._busy)
        self._idle, self._busy = [], set()
        await asyncio.gather(*(w.kill() for w in workers))

    # --- reading -------------------------------------------------------------------------------------------------

    def read_beside(self, path: Path) -> asyncio.Task[tuple[dict[str, Any], str | None]]:
        """Start reading ``path`` in the background (beside inference); the task never raises and always ends
        within the timeout, and is kept referenced until it does."""
        task = asyncio.create_task(self.read(path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def read(self, path: Path) -> tuple[dict[str, Any], str | None]:
        """The summary of ``path``'s credentials and, when they could not be read, why."""
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
        async with self._semaphore():
            try:
                worker = self._idle.pop() if self._idle else await _Worker.start(self._settings_json, self.memory_bytes)
            except (WorkerFailed, TimeoutError) as exc:
                log.warning("a C2PA reader worker did not start: %s", exc)
                return _unreadable(), "the content credentials reader crashed (it could not start)"
            self._busy.add(worker)
            try:
                summary = await asyncio.wait_for(worker.read(path), self.timeout_s)
            except TimeoutError:
                log.warning("reading the content credentials of %s took over %.1f s", path.name, self.timeout_s)
                await self._retire(worker)
                return _unreadable(), f"reading the content credentials took over {self.timeout_s:g} s"
            except WorkerFailed as exc:  # the memory cap, a crash in native code
                log.warning("the C2PA reader crashed on %s: %s", path.name, exc)
                await self._retire(worker)
                return _unreadable(), "the content credentials reader crashed on this file"
            except BaseException:  # cancelled mid-read: the worker's state is unknown
                await self._retire(worker)
                raise
            self._busy.discard(worker)
            self._idle.append(worker)
        error = summary.pop("error", None)
        return (_unreadable() if summary.get("present") else read.absent(), error) if error else (summary, None)

    async def _retire(self, worker: _Worker) -> None:
        self._busy.discard(worker)
        await worker.kill()


def _unreadable() -> dict[str, Any]:
    """A manifest store is there (or may be) but could not be read: shown as present and not valid."""
    return {**read.absent(), "present": True, "validation_errors": ["gateway.unreadable"]}
