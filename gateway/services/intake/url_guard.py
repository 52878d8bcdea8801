"""The URL guard, against server-side request forgery (SSRF): which URLs and addresses a download or a callback
may reach.

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
  hostname. The transport guards every request of the download client, whatever code sends it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

from gateway.core.errors import (
    DownloadFailed,
    UrlRefused,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

USER_AGENT = "deepfake-detection-gateway/0.1"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


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
    """What the URL guard admits besides public addresses: hostnames, IPs and networks from ``allowed_hosts``.

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
