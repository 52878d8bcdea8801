"""What every storage backend implements (`Storage`), what it returns (`StoredFile`) and raises (`StorageError`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

_PUBLIC_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class StorageError(Exception):
    """The file could not be stored (after retries where retrying made sense)."""


@dataclass(frozen=True)
class StoredFile:
    """A stored video: its absolute URL, the id it was stored under, its size and the backend's name."""

    url: str
    public_id: str
    bytes: int
    backend: str


@runtime_checkable
class Storage(Protocol):
    """What the gateway needs from a storage backend."""

    name: str

    async def save(self, path: Path, public_id: str) -> StoredFile:
        """Store the file at `path` under `public_id`; raise `StorageError` when it cannot be stored."""
        ...

    async def check(self) -> bool:
        """Health: True when the backend can take files (cheap; no upload)."""
        ...


def is_valid_public_id(public_id: str) -> bool:
    """True for ids made of 1 to 128 letters, digits, `_` and `-` (safe as a file name and a URL segment)."""
    return isinstance(public_id, str) and _PUBLIC_ID.fullmatch(public_id) is not None


def require_public_id(public_id: str) -> None:
    if not is_valid_public_id(public_id):
        raise StorageError(f"invalid public id {public_id!r}: expected 1-128 of [A-Za-z0-9_-]")


def file_size(path: Path) -> int:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise StorageError(f"{path} is not a regular file")
    if size == 0:
        raise StorageError(f"{path} is empty")
    return size
