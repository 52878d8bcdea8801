"""Downloading a video from an untrusted URL with the guarded client (``url_guard``).

- redirects are followed here, not by httpx: at most ``max_redirects``, each hop re-checked (scheme, userinfo,
  addresses);
- the body is streamed to a temp file under ``data_dir/tmp`` with a byte limit (``Content-Length`` pre-check and
  counted bytes), per-operation timeouts and an overall deadline. ``fetch`` removes the file when its block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from gateway.core.errors import (
    DownloadFailed,
    TooLarge,
    UnsupportedVideo,
    UpstreamTimeout,
    UrlRefused,
)
from gateway.services.intake.temp_files import LimitedWriter, new_temp_path, removing
from gateway.services.intake.url_guard import check_url


@dataclass
class Downloaded:
    """A downloaded video: temp file, size, the final URL after redirects and the server's content type."""

    path: Path
    size: int
    final_url: str
    content_type: str | None


class Downloader:
    """Downloads videos from untrusted URLs with the guarded client (see the module docstring)."""

    def __init__(
        self, client: httpx.AsyncClient, *, tmp_dir: Path, max_bytes: int, max_redirects: int, total_timeout_s: float
    ) -> None:
        self.client = client
        self.tmp_dir = tmp_dir
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.total_timeout_s = total_timeout_s

    @contextlib.asynccontextmanager
    async def fetch(self, url: str, prefix: str = "download") -> AsyncIterator[Downloaded]:
        """Download ``url`` to a temp file; the file is removed when the ``async with`` block ends."""
        target = check_url(url)
        path = new_temp_path(self.tmp_dir, prefix, ".video")
        with removing(path):
            try:
                async with asyncio.timeout(self.total_timeout_s):
                    result = await self._download(target, path)
            except TimeoutError as exc:
                raise UpstreamTimeout(f"the download took longer than {self.total_timeout_s:g} s") from exc
            yield result

    async def _download(self, url: httpx.URL, path: Path) -> Downloaded:
        current = url
        for _ in range(self.max_redirects + 1):
            try:
                async with self.client.stream("GET", current) as response:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        current = check_url(current.join(location))
                        continue
                    return await self._save(response, current, path)
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout(f"the remote server did not answer in time ({type(exc).__name__})") from exc
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise UrlRefused(f"not a valid URL: {exc}") from exc
            except httpx.ConnectError as exc:
                raise DownloadFailed(f"cannot connect to {current.host}: {exc or type(exc).__name__}") from exc
            except httpx.HTTPError as exc:
                raise DownloadFailed(f"the download broke off: {exc or type(exc).__name__}") from exc
        raise DownloadFailed(f"more than {self.max_redirects} redirects", remote_status=None)

    async def _save(self, response: httpx.Response, url: httpx.URL, path: Path) -> Downloaded:
        status = response.status_code
        if status >= 400:
            raise DownloadFailed(f"the remote server answered HTTP {status}", remote_status=status)
        if not 200 <= status < 300:
            raise DownloadFailed(f"unexpected HTTP {status} from the remote server", remote_status=status)
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise TooLarge(f"the video is {int(declared)} bytes, over the limit of {self.max_bytes} bytes")
        with path.open("wb") as f:
            writer = LimitedWriter(f, self.max_bytes, "video")
            async for chunk in response.aiter_bytes():
                writer.add(chunk)
                if writer.should_flush:
                    await writer.flush()
            await writer.flush()
        if writer.size == 0:
            raise UnsupportedVideo("the remote server sent an empty body, not a video")
        return Downloaded(path, writer.size, str(url), response.headers.get("content-type"))
