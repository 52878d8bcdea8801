"""Cloudinary storage through the official SDK.

`upload` below `large_threshold_bytes` (100 MB, the seed's rule), `upload_large` (chunked, resource type video) from
it. The SDK is configured per call (api_key, api_secret, cloud_name, upload_prefix as options), never through its
process-wide `cloudinary.config()`, so two storages (or other code) cannot step on each other. The blocking SDK runs
in a worker thread. 5xx, rate limiting and network errors are retried with exponential backoff; other 4xx (bad
credentials, bad request) fail at once. The API secret never appears in messages or logs."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import cloudinary.exceptions
import cloudinary.uploader

from gateway.services.storage.base import StorageError, StoredFile, file_size, require_public_id

log = logging.getLogger("gateway.services.storage")

DEFAULT_LARGE_THRESHOLD_BYTES = 100 * 1024 * 1024
"""From this size on, Cloudinary uploads go through `upload_large` (chunked); below it, one `upload` request."""
DEFAULT_CHUNK_SIZE = 20 * 1024 * 1024
MIN_CHUNK_SIZE = 5 * 1024 * 1024
"""Cloudinary refuses non-final parts of a chunked upload under 5 MB."""
DEFAULT_FOLDER = "deepfake-detector"
DEFAULT_UPLOAD_PREFIX = "https://api.cloudinary.com"

_FOLDER = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
_UNPARSABLE_STATUS = re.compile(r"Error parsing server response \((\d{3})\)")
# 4xx answers the SDK maps to these classes: retrying cannot help.
_PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    cloudinary.exceptions.BadRequest,
    cloudinary.exceptions.AuthorizationRequired,
    cloudinary.exceptions.NotAllowed,
    cloudinary.exceptions.NotFound,
    cloudinary.exceptions.AlreadyExists,
)


@dataclass(frozen=True)
class CloudinaryCredentials:
    """What a `cloudinary://KEY:SECRET@CLOUD?upload_prefix=...` URL holds (the secret is kept out of repr)."""

    cloud_name: str
    api_key: str
    api_secret: str = field(repr=False)
    upload_prefix: str | None = None
    signature_algorithm: str | None = None
    signature_version: int | None = None
    upload_preset: str | None = None

    @classmethod
    def from_url(cls, cloudinary_url: str) -> CloudinaryCredentials:
        """Parse the URL as the SDK does; errors name the missing part, never the secret."""
        parts = urlsplit(cloudinary_url.strip())
        if parts.scheme.lower() != "cloudinary":
            raise ValueError("CLOUDINARY_URL must start with cloudinary://")
        if not parts.hostname or not parts.username or not parts.password:
            raise ValueError("CLOUDINARY_URL must look like cloudinary://API_KEY:API_SECRET@CLOUD_NAME")
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        upload_prefix = query.get("upload_prefix")
        if upload_prefix is not None:
            prefix_parts = urlsplit(upload_prefix)
            if prefix_parts.scheme not in ("http", "https") or not prefix_parts.netloc:
                raise ValueError("CLOUDINARY_URL's upload_prefix must be an absolute http(s) URL")
            upload_prefix = upload_prefix.rstrip("/")
        version = query.get("signature_version")
        if version is not None and not version.isdigit():
            raise ValueError("CLOUDINARY_URL's signature_version must be an integer")
        return cls(
            cloud_name=parts.hostname,  # lower-cased, as the SDK does
            api_key=parts.username,
            api_secret=parts.password,
            upload_prefix=upload_prefix,
            signature_algorithm=query.get("signature_algorithm"),
            signature_version=int(version) if version is not None else None,
            upload_preset=query.get("upload_preset"),
        )

    def sdk_options(self) -> dict[str, Any]:
        """Per-call options for `cloudinary.uploader`: every setting the upload path reads, so nothing falls back
        to the process-wide `cloudinary.config()` (which the SDK loads from the environment at import)."""
        return {
            "cloud_name": self.cloud_name,
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "upload_prefix": self.upload_prefix or DEFAULT_UPLOAD_PREFIX,
            "signature_algorithm": self.signature_algorithm or "sha1",
            "signature_version": self.signature_version if self.signature_version is not None else 2,
            "upload_preset": self.upload_preset,
            "oauth_token": None,
        }


class CloudinaryStorage:
    """Cloudinary through the official SDK, configured per call from a `cloudinary://` URL."""

    name = "cloudinary"

    def __init__(
        self,
        cloudinary_url: str,
        *,
        folder: str = DEFAULT_FOLDER,
        large_threshold_bytes: int = DEFAULT_LARGE_THRESHOLD_BYTES,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 120,
    ) -> None:
        """`retries` is the number of attempts in all; the waits between them are `backoff_s * 2**n`."""
        self.credentials = CloudinaryCredentials.from_url(cloudinary_url)
        folder = folder.strip("/")
        if folder and not _FOLDER.fullmatch(folder):
            raise ValueError(f"invalid Cloudinary folder {folder!r}: expected segments of [A-Za-z0-9_-]")
        if chunk_size < MIN_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be at least {MIN_CHUNK_SIZE} bytes (Cloudinary's minimum part size)")
        if large_threshold_bytes < 1 or retries < 1 or backoff_s < 0 or timeout_s <= 0:
            raise ValueError("large_threshold_bytes and retries must be >= 1, backoff_s >= 0, timeout_s > 0")
        self.folder = folder
        self.large_threshold_bytes = large_threshold_bytes
        self.chunk_size = chunk_size
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return (
            f"CloudinaryStorage(cloud_name={self.credentials.cloud_name!r}, folder={self.folder!r}, "
            f"large_threshold_bytes={self.large_threshold_bytes}, chunk_size={self.chunk_size})"
        )

    def full_public_id(self, public_id: str) -> str:
        """The Cloudinary public id: `<folder>/<public_id>`."""
        return f"{self.folder}/{public_id}" if self.folder else public_id

    async def save(self, path: Path, public_id: str) -> StoredFile:
        """Upload `path` as a video; `url` is Cloudinary's `secure_url`."""
        require_public_id(public_id)
        path = Path(path)
        size = await asyncio.to_thread(file_size, path)
        chunked = size >= self.large_threshold_bytes
        method = "upload_large" if chunked else "upload"
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await asyncio.to_thread(self._upload_sync, path, public_id, chunked)
                break
            except Exception as exc:  # the SDK raises its Error classes, ValueError, OSError...
                message = self._describe(exc)
                if not _is_retryable(exc):
                    raise StorageError(f"Cloudinary {method} of {public_id} failed: {message}") from None
                if attempt >= self.retries:
                    raise StorageError(
                        f"Cloudinary {method} of {public_id} failed after {attempt} attempts: {message}"
                    ) from None
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning(
                    "Cloudinary %s of %s failed (attempt %d/%d, retrying in %.2fs): %s",
                    method,
                    public_id,
                    attempt,
                    self.retries,
                    delay,
                    message,
                )
                await asyncio.sleep(delay)
        secure_url = result.get("secure_url") if isinstance(result, dict) else None
        if not isinstance(secure_url, str) or not secure_url:
            raise StorageError(f"Cloudinary {method} of {public_id} returned no secure_url")
        stored_bytes = result.get("bytes")
        if isinstance(stored_bytes, int) and stored_bytes != size:
            log.warning("Cloudinary stored %d bytes for %s, the file has %d", stored_bytes, public_id, size)
        log.info("stored %s on Cloudinary (%s, %d bytes, %d attempt(s))", public_id, method, size, attempt)
        return StoredFile(
            url=secure_url,
            public_id=str(result.get("public_id") or self.full_public_id(public_id)),
            bytes=stored_bytes if isinstance(stored_bytes, int) else size,
            backend=self.name,
        )

    def _upload_sync(self, path: Path, public_id: str, chunked: bool) -> dict[str, Any]:
        # The folder goes into public_id rather than `folder=`: upload_large copies each part's reply
        # `public_id` (already "folder/id") into the next part while still sending `folder`.
        # `filename` keeps the local temp path out of the multipart body (the SDK sends the path otherwise).
        options: dict[str, Any] = {
            **self.credentials.sdk_options(),
            "resource_type": "video",
            "public_id": self.full_public_id(public_id),
            "overwrite": True,
            "filename": f"{public_id}.mp4",
            "timeout": self.timeout_s,
        }
        if chunked:
            result = cloudinary.uploader.upload_large(str(path), chunk_size=self.chunk_size, **options)
        else:
            result = cloudinary.uploader.upload(str(path), **options)
        return result if isinstance(result, dict) else {}

    def _describe(self, exc: BaseException) -> str:
        """`Type: message` with the API secret redacted."""
        return f"{type(exc).__name__}: {self.redact(str(exc))}"

    def redact(self, text: str) -> str:
        """`text` with the API secret (plain or URL-quoted) replaced by `***`."""
        secret = self.credentials.api_secret
        for form in {secret, quote(secret, safe="")}:
            if form:
                text = text.replace(form, "***")
        return text

    async def check(self) -> bool:
        """Configuration present (checked at construction); no network call, so health stays cheap."""
        creds = self.credentials
        return bool(creds.cloud_name and creds.api_key and creds.api_secret)


def _is_retryable(exc: BaseException) -> bool:
    """5xx, 420/429, unparsable replies and network errors (the SDK's bare `Error`) are worth retrying."""
    if not isinstance(exc, cloudinary.exceptions.Error) or isinstance(exc, _PERMANENT_ERRORS):
        return False
    status = _UNPARSABLE_STATUS.match(str(exc))
    if status is not None:
        code = int(status.group(1))
        return code >= 500 or code in (408, 420, 429)
    return True
