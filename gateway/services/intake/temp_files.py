"""Temp files for videos in flight: a fresh name under the gateway's tmp dir, removed when the block ends, and a
writer that counts bytes against a limit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gateway.core.errors import TooLarge

CHUNK_FLUSH_BYTES = 1 << 20  # buffered bytes written to disk at once, off the event loop


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
