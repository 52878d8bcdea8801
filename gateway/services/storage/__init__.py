"""Where the overlay videos go: Cloudinary (official SDK) when `CLOUDINARY_URL` is set, else a local directory.

`build_storage(...)` picks the backend; both implement `Storage`: `save(path, public_id) -> StoredFile` (raises
`StorageError` once retries are spent) and `check()` for the health route.
"""

from __future__ import annotations

from pathlib import Path

from gateway.services.storage.base import Storage, StorageError, StoredFile, is_valid_public_id
from gateway.services.storage.cloudinary import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_FOLDER,
    DEFAULT_LARGE_THRESHOLD_BYTES,
    CloudinaryCredentials,
    CloudinaryStorage,
)
from gateway.services.storage.local import LocalStorage

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_FOLDER",
    "DEFAULT_LARGE_THRESHOLD_BYTES",
    "CloudinaryCredentials",
    "CloudinaryStorage",
    "LocalStorage",
    "Storage",
    "StorageError",
    "StoredFile",
    "build_storage",
    "is_valid_public_id",
]


def build_storage(
    *,
    cloudinary_url: str | None,
    local_dir: Path,
    public_base_url: str,
    large_threshold_bytes: int = DEFAULT_LARGE_THRESHOLD_BYTES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    folder: str = DEFAULT_FOLDER,
    retries: int = 3,
    backoff_s: float = 0.5,
    timeout_s: float = 120,
) -> Storage:
    """Cloudinary when a (non-blank) `cloudinary_url` is given, else local storage under `local_dir`."""
    if cloudinary_url and cloudinary_url.strip():
        return CloudinaryStorage(
            cloudinary_url,
            folder=folder,
            large_threshold_bytes=large_threshold_bytes,
            chunk_size=chunk_size,
            retries=retries,
            backoff_s=backoff_s,
            timeout_s=timeout_s,
        )
    return LocalStorage(local_dir, public_base_url)
