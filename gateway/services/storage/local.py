"""Local storage: overlay videos as files under a directory, served by the gateway under `/media`."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from gateway.services.storage.base import StorageError, StoredFile, file_size, is_valid_public_id, require_public_id

log = logging.getLogger("gateway.services.storage")


class LocalStorage:
    """Files under a directory as `<public_id>.mp4`, served by the gateway at `<public_base_url>/media/<id>.mp4`."""

    name = "local"

    def __init__(self, directory: Path, public_base_url: str) -> None:
        parts = urlsplit(public_base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"public_base_url must be an absolute http(s) URL, got {public_base_url!r}")
        self.directory = Path(directory).resolve()
        self.public_base_url = public_base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"LocalStorage(directory={str(self.directory)!r}, public_base_url={self.public_base_url!r})"

    def url_for(self, public_id: str) -> str:
        """The absolute URL the gateway serves `public_id` at."""
        return f"{self.public_base_url}/media/{public_id}.mp4"

    def path_for(self, public_id: str) -> Path | None:
        """The stored file for `public_id` (`abc` or `abc.mp4`), or None when the id is invalid or unknown.

        Only ids matching `[A-Za-z0-9_-]{1,128}` are looked up, so `../x`, `a/b` or absolute paths never leave
        the directory; the resolved path is checked to be inside it as well (symlinks).
        """
        if not isinstance(public_id, str):
            return None
        stem = public_id.removesuffix(".mp4")
        if not is_valid_public_id(stem):
            return None
        path = (self.directory / f"{stem}.mp4").resolve()
        if path.parent != self.directory or not path.is_file():
            return None
        return path

    async def save(self, path: Path, public_id: str) -> StoredFile:
        """Copy `path` to `<directory>/<public_id>.mp4` atomically (temp file in the directory, then replace)."""
        require_public_id(public_id)
        size = await asyncio.to_thread(self._save_sync, Path(path), public_id)
        return StoredFile(url=self.url_for(public_id), public_id=public_id, bytes=size, backend=self.name)

    def _save_sync(self, source: Path, public_id: str) -> int:
        file_size(source)
        target = self.directory / f"{public_id}.mp4"
        tmp_name: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{public_id}.", suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                # No fsync: the rename below already keeps readers from a partial file, an overlay can be rendered
                # again, and an fsync can wait for the disk to write out everything dirty before it.
                shutil.copyfileobj(src, out, 1024 * 1024)
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
            tmp_name = None
            return target.stat().st_size
        except OSError as exc:
            raise StorageError(f"cannot store {public_id}.mp4 in {self.directory}: {exc.strerror or exc}") from exc
        finally:
            if tmp_name is not None:
                Path(tmp_name).unlink(missing_ok=True)

    async def check(self) -> bool:
        """True when the directory exists (or can be created) and a file can be written in it."""
        return await asyncio.to_thread(self._check_sync)

    def _check_sync(self) -> bool:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(prefix=".health.", dir=self.directory):
                pass
        except OSError as exc:
            log.warning("local storage %s is not writable: %s", self.directory, exc)
            return False
        return True
