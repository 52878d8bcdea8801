"""Temp files for videos in flight: a fresh name under the gateway's tmp dir, removed when the block ends, and a
writer that counts bytes against a limit.

A gateway killed mid-request (kill -9, OOM) removes nothing: the next gateway to start on the same tmp dir removes
those leftovers (``claim_tmp_dir``). It holds an exclusive lock on the folder for its lifetime, so a second live
gateway pointed at the same folder finds it locked and leaves the first one's files in flight alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gateway.core.errors import TooLarge

CHUNK_FLUSH_BYTES = 1 << 20  # buffered bytes written to disk at once, off the event loop
LOCK_NAME = ".gateway.lock"

log = logging.getLogger("gateway.intake")


class TmpDirLock:
    """The exclusive lock of a gateway on its tmp dir (released by ``close``, or by the kernel when it dies)."""

    def __init__(self, tmp_dir: Path, fd: int | None, removed: int) -> None:
        self.tmp_dir, self._fd, self.removed = tmp_dir, fd, removed

    @property
    def held(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def claim_tmp_dir(tmp_dir: Path) -> TmpDirLock:
    """Create ``tmp_dir``, lock it, and remove what a previous (killed) gateway left there; when another live
    gateway holds the lock, remove nothing (``held`` is False)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(tmp_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        log.warning("temp folder %s is in use by another gateway: its files are left alone", tmp_dir)
        return TmpDirLock(tmp_dir, None, 0)
    removed = remove_leftovers(tmp_dir)
    if removed:
        log.warning("removed %d file(s) left in %s by a gateway that did not stop cleanly", removed, tmp_dir)
    return TmpDirLock(tmp_dir, fd, removed)


def remove_leftovers(tmp_dir: Path) -> int:
    """Remove every entry of ``tmp_dir`` but the lock file; the count removed."""
    removed = 0
    for entry in tmp_dir.iterdir():
        if entry.name == LOCK_NAME:
            continue
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
    return removed


def new_temp_path(tmp_dir: Path, prefix: str, suffix: str) -> Path:
    """A fresh empty file under ``tmp_dir`` (created, so the name is ours)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{prefix}-", suffix=suffix, dir=tmp_dir)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def removing(path: Path) -> Iterator[Path]:
    """Yield ``path`` and remove the file when the block ends, however it ends."""
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


class LimitedWriter:
    """Counts bytes against a limit and writes them to a file in large batches off the event loop."""

    def __init__(self, file: BinaryIO, limit: int, what: str) -> None:
        self.file, self.limit, self.what = file, limit, what
        self.size = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def add(self, data: bytes) -> None:
        """Count and buffer; TooLarge past the limit."""
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(f"the {self.what} is larger than the limit of {self.limit} bytes")
        self._pending.append(data)
        self._pending_bytes += len(data)

    @property
    def should_flush(self) -> bool:
        return self._pending_bytes >= CHUNK_FLUSH_BYTES

    async def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            await asyncio.to_thread(self.file.write, data)
