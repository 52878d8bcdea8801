"""Getting the video onto disk safely: download from an untrusted URL, or receive a multipart upload.

SSRF guard (downloads):
- only ``http``/``https``; no credentials in the URL (``http://user@host``); a host is required;
- the host is resolved here (``getaddrinfo``, or the injected resolver) and every address it resolves to must be
  public (not private, loopback, link-local, multicast, reserved, unspecified, shared/CGNAT, nor an
  IPv4-mapped/6to4 form of those) unless ``allowed_hosts`` admits the hostname, the IP, or a CIDR containing it.
  Numeric hosts in the legacy forms ``inet_aton`` accepts (``2130706433``, ``0x7f.1``, ``127.1``) are IP literals
  here too, never names handed to a resolver;
- with ``only_listed`` (setting ``download_allowlist_only``) a host is refused unless ``allowed_hosts`` lists its
  name (or, for an IP literal, the IP or its network), before any DNS lookup; public hosts are refused too;
- the connection goes to the IP that was checked (no second lookup, so DNS rebinding cannot swap it):
  ``GuardedTransport`` rewrites each request's URL to that IP, keeps the ``Host`` header, and passes the original
  hostname as TLS SNI (httpcore's ``sni_hostname`` extension), so certificates are still verified against the
  hostname. The transport guards every request of the download client, whatever code sends it;
- redirects are followed here, not by httpx: at most ``max_redirects``, each hop re-checked (scheme, userinfo,
  addresses);
- the body is streamed to a temp file under ``data_dir/tmp`` with a byte limit (``Content-Length`` pre-check and
  counted bytes), per-operation timeouts and an overall deadline. ``fetch`` removes the file when its block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import ssl
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from gateway.core.errors import (
    DownloadFailed,
    InvalidRequest,
    TooLarge,
    UnsupportedVideo,
    UpstreamTimeout,
    UrlRefused,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

CHUNK_FLUSH_BYTES = 1 << 20  # buffered bytes written to disk at once, off the event loop
USER_AGENT = "deepfake-detection-gateway/0.1"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


# --- temp files --------------------------------------------------------------------------------------------------


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


# --- address policy ----------------------------------------------------------------------------------------------


def is_public(ip: IPAddress) -> bool:
    """True for globally routable unicast addresses; IPv4 embedded in IPv6 (mapped, 6to4, NAT64) is judged as IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = (
            ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        )
        if embedded is not None:
            return is_public(embedded)
        if ip.teredo is not None:
            return False
    blocked = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )
    return not blocked


@dataclass(frozen=True)
class HostPolicy:
    """What the SSRF guard admits besides public addresses: hostnames, IPs and networks from ``allowed_hosts``.

    ``only_listed``: nothing else is admitted, public addresses included (``download_allowlist_only``).
    """

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    only_listed: bool = False

    @classmethod
    def parse(cls, entries: Iterable[str], only_listed: bool = False) -> HostPolicy:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().strip("[]").lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.rstrip("."))
        return cls(frozenset(names), tuple(networks), only_listed)

    def lists_name(self, host: str) -> bool:
        """Whether ``allowed_hosts`` names this host."""
        return host.lower().rstrip(".") in self.names

    def admits(self, host: str, ip: IPAddress) -> bool:
        """Whether a connection to ``ip`` (resolved from ``host``) is allowed."""
        if self.lists_name(host) or (is_public(ip) and not self.only_listed):
            return True
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        return any(c in net for c in candidates for net in self.networks if c.version == net.version)


_LEGACY_IPV4 = frozenset("0123456789abcdefxABCDEFX.")


def ip_literal(host: str) -> IPAddress | None:
    """The IP a host names without DNS, or None for a name.

    Besides the standard forms (``127.0.0.1``, ``::1``, ``fe80::1%eth0``), the legacy IPv4 forms that
    ``getaddrinfo`` turns into addresses without a lookup count as literals: decimal ``2130706433``, octal
    ``0177.0.0.1``, hex ``0x7f000001``, short ``127.1``; a trailing dot and percent-escapes are ignored.
    """
    bare = urllib.parse.unquote(host.strip("[]"))
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    candidate = bare.rstrip(".")
    if candidate and set(candidate) <= _LEGACY_IPV4 and candidate[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(candidate))
        except OSError:
            return None
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Addresses of ``host`` from the system resolver (getaddrinfo, off the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_checked(host: str, port: int, policy: HostPolicy, resolver: Resolver = system_resolver) -> str:
    """The IP to connect to for ``host``; UrlRefused when any address it resolves to is not admitted."""
    bare = host.strip("[]")
    literal = ip_literal(bare)
    if literal is not None:
        addresses = [literal]
    else:
        if policy.only_listed and not policy.lists_name(bare):
            raise UrlRefused(f"refusing to fetch from {bare!r}: only the configured hosts are allowed")
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in await resolver(bare, port)]
        except (OSError, UnicodeError) as exc:
            raise DownloadFailed(f"cannot resolve host {bare!r}: {exc}") from exc
        if not addresses:
            raise DownloadFailed(f"host {bare!r} has no address")
    refused = [str(a) for a in addresses if not policy.admits(bare, a)]
    if refused:
        if policy.only_listed and all(is_public(a) for a in addresses):
            raise UrlRefused(f"refusing to fetch from {bare!r}: only the configured hosts are allowed")
        raise UrlRefused(f"refusing to fetch from {bare!r}: it resolves to a non-public address ({', '.join(refused)})")
    return str(addresses[0])


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that connects only to checked addresses: resolve, check, then connect to that IP."""

    def __init__(
        self,
        policy: HostPolicy,
        inner: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver = system_resolver,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        # No keep-alive: a pooled TLS connection is keyed by IP and must not be reused for another hostname.
        self._inner = inner or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_keepalive_connections=0), retries=0, verify=verify
        )
        self._policy = policy
        self._resolver = resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        check_url(url)
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        ip = await resolve_checked(host, port, self._policy, self._resolver)
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": host}
        request.url = url.copy_with(host=ip)  # the Host header keeps the original name
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def check_url(url: str | httpx.URL) -> httpx.URL:
    """Parse and vet a URL's form (scheme, credentials, host); addresses are checked at connect time."""
    if isinstance(url, str):
        text = url.strip()
        if not text:
            raise UrlRefused("the URL is empty")
        try:
            parsed = httpx.URL(text)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise UrlRefused(f"not a valid URL: {exc}") from exc
    else:
        parsed = url
    scheme = parsed.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused(f"only http and https URLs are accepted, not {scheme or 'a URL without scheme'}")
    if parsed.userinfo:
        raise UrlRefused("URLs with credentials (user@host) are not accepted")
    if not parsed.host:
        raise UrlRefused("the URL has no host")
    return parsed.copy_with(fragment=None)


def build_download_client(
    allowed_hosts: Iterable[str],
    connect_timeout_s: float,
    read_timeout_s: float,
    resolver: Resolver = system_resolver,
    verify: ssl.SSLContext | bool = True,
    only_listed: bool = False,
) -> httpx.AsyncClient:
    """The long-lived HTTP client of downloads, guarded by ``GuardedTransport``; redirects are followed by hand.

    ``verify``: TLS verification (the system's CAs by default; tests pass a context trusting their own CA).
    ``only_listed``: fetch from ``allowed_hosts`` only (see ``HostPolicy``).
    """
    timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
    return httpx.AsyncClient(
        transport=GuardedTransport(HostPolicy.parse(allowed_hosts, only_listed), resolver=resolver, verify=verify),
        timeout=timeout,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept": "video/*, application/octet-stream;q=0.9, */*;q=0.5"},
        trust_env=False,  # never a proxy from the environment: the guard must see the real destination
    )


# --- download ----------------------------------------------------------------------------------------------------


class _LimitedWriter:
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
            writer = _LimitedWriter(f, self.max_bytes, "video")
            async for chunk in response.aiter_bytes():
                writer.add(chunk)
                if writer.should_flush:
                    await writer.flush()
            await writer.flush()
        if writer.size == 0:
            raise UnsupportedVideo("the remote server sent an empty body, not a video")
        return Downloaded(path, writer.size, str(url), response.headers.get("content-type"))


# --- upload ------------------------------------------------------------------------------------------------------


@dataclass
class Uploaded:
    """A received upload: the file's temp path and size, its name, and the other (small) form fields."""

    path: Path
    size: int
    filename: str | None
    fields: dict[str, str]


class _MultipartSink:
    """python-multipart callbacks: the ``file`` part goes to a counted writer, small fields to memory."""

    MAX_FIELD_BYTES = 1024
    MAX_FIELDS = 16

    def __init__(self, writer: _LimitedWriter, file_field: str) -> None:
        self.writer = writer
        self.file_field = file_field
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_seen = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._is_file = False
        self._value = bytearray()

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise InvalidRequest("a multipart part has no name")
        self._name = name.decode("utf-8", "replace")
        if self._name == self.file_field:
            if self.file_seen:
                raise InvalidRequest(f"send one {self.file_field!r} part only")
            self.file_seen = True
            self._is_file = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None
        elif b"filename" in options:
            raise InvalidRequest(f"unexpected file part {self._name!r}: send the video in the {self.file_field!r} part")
        elif len(self.fields) >= self.MAX_FIELDS:
            raise InvalidRequest("too many form fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.writer.add(data[start:end])
            return
        self._value.extend(data[start:end])
        if len(self._value) > self.MAX_FIELD_BYTES:
            raise InvalidRequest(f"form field {self._name!r} is too long")

    def _part_end(self) -> None:
        if self._name is not None and not self._is_file:
            self.fields[self._name] = self._value.decode("utf-8", "replace")


async def receive_upload(
    chunks: AsyncIterator[bytes],
    content_type: str,
    *,
    tmp_dir: Path,
    max_bytes: int,
    prefix: str = "upload",
    file_field: str = "file",
) -> Uploaded:
    """Stream a multipart/form-data body to a temp file under ``tmp_dir`` with a byte limit.

    The caller removes ``Uploaded.path`` (wrap it in ``removing``); on error the file is removed here.
    """
    mime, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise InvalidRequest("send the video as multipart/form-data with a 'file' part")
    path = new_temp_path(tmp_dir, prefix, ".video")
    try:
        with path.open("wb") as f:
            writer = _LimitedWriter(f, max_bytes, "upload")
            sink = _MultipartSink(writer, file_field)
            parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
            try:
                async for chunk in chunks:
                    parser.write(chunk)
                    if writer.should_flush:
                        await writer.flush()
                parser.finalize()
            except FormParserError as exc:
                raise InvalidRequest(f"malformed multipart body: {exc}") from exc
            await writer.flush()
        if not sink.file_seen:
            raise InvalidRequest(f"the multipart body has no {file_field!r} part")
        if writer.size == 0:
            raise UnsupportedVideo("the uploaded file is empty (0 bytes)")
        return Uploaded(path, writer.size, sink.filename, sink.fields)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
