"""The URL guard against SSRF tricks, through real HTTP: a gateway that admits one hostname (``video.test``, the
loopback video server) and no address, a loopback listener that counts every connection the tricks would make, and a
resolver injected into the gateway, so names like ``metadata.google.internal`` resolve here, never by a real DNS
query.

Every URL of ``REFUSED_URLS`` must be answered 400 ``url_refused`` with no connection to the listener.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.core.errors import UrlRefused
from gateway.core.settings import Settings
from gateway.services.intake.download import Downloader
from gateway.services.intake.url_guard import HostPolicy, build_download_client, ip_literal, resolve_checked
from tests.gateway.conftest import FAST, GatewayServer, VideoServer, assert_error, gateway_settings, tmp_files
from triton_runtime.process import TritonProcess

ADMITTED = "video.test"  # the only host the gateway admits: it resolves to the loopback video server


class FakeDNS:
    """An injected resolver: fixed answers, every query recorded; an unknown name fails like NXDOMAIN."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.queries: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.queries.append(host)
        if host not in self.answers:
            raise OSError(f"no such host {host!r} (test resolver)")
        return self.answers[host]


def fake_dns() -> FakeDNS:
    return FakeDNS(
        {
            ADMITTED: ["127.0.0.1"],
            "metadata.google.internal": ["169.254.169.254"],
            "localtest.me": ["127.0.0.1"],  # a public name that resolves to loopback
            "internal.test": ["10.0.0.5"],
            "rebind.test": ["93.184.216.34", "127.0.0.1"],  # one public answer, one loopback
            "six.test": ["::1"],
            "mapped.test": ["::ffff:127.0.0.1"],
            "example.org": ["93.184.216.34"],
        }
    )


class ConnectionCounter:
    """Loopback listeners (127.0.0.1 and, where possible, ::1 on the same port) counting accepted connections."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self._sockets = [socket.create_server(("127.0.0.1", 0))]
        self.port = self._sockets[0].getsockname()[1]
        with contextlib.suppress(OSError):  # no IPv6 on this machine: [::1] then cannot be reached at all
            self._sockets.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        self._threads = [threading.Thread(target=self._serve, args=(s,), daemon=True) for s in self._sockets]

    def _serve(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self.count += 1
            conn.close()

    def __enter__(self) -> ConnectionCounter:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


# {port}: the counting listener; {admitted}: the admitted video server (video.test:PORT).
REFUSED_URLS: list[tuple[str, str]] = [
    # Loopback in every spelling.
    ("loopback", "http://127.0.0.1:{port}/v.mp4"),
    ("loopback_decimal", "http://2130706433:{port}/v.mp4"),
    ("loopback_octal", "http://0177.0.0.1:{port}/v.mp4"),
    ("loopback_octal_short", "http://0177.1:{port}/v.mp4"),
    ("loopback_hex", "http://0x7f000001:{port}/v.mp4"),
    ("loopback_hex_dotted", "http://0x7f.0.0.1:{port}/v.mp4"),
    ("loopback_short", "http://127.1:{port}/v.mp4"),
    ("loopback_trailing_dot", "http://127.0.0.1.:{port}/v.mp4"),
    ("loopback_percent_encoded", "http://127.0.0.1%2e:{port}/v.mp4"),
    ("loopback_other", "http://127.0.0.2:{port}/v.mp4"),
    ("ipv6_loopback", "http://[::1]:{port}/v.mp4"),
    ("ipv6_mapped_loopback", "http://[::ffff:127.0.0.1]:{port}/v.mp4"),
    ("ipv6_mapped_loopback_hex", "http://[::ffff:7f00:1]:{port}/v.mp4"),
    ("ipv6_compatible_loopback", "http://[::127.0.0.1]:{port}/v.mp4"),
    ("ipv6_zone_id", "http://[fe80::1%25lo]:{port}/v.mp4"),
    ("unspecified", "http://0.0.0.0:{port}/v.mp4"),
    ("unspecified_zero", "http://0:{port}/v.mp4"),
    ("ipv6_unspecified", "http://[::]:{port}/v.mp4"),
    ("loopback_https", "https://127.0.0.1:{port}/v.mp4"),
    ("loopback_upper_scheme", "HTTP://127.0.0.1:{port}/v.mp4"),
    ("loopback_ssh_port", "http://127.0.0.1:22/"),
    ("loopback_redis_port", "http://127.0.0.1:6379/"),
    # Cloud metadata endpoints.
    ("metadata_aws", "http://169.254.169.254/latest/meta-data/"),
    ("metadata_aws_decimal", "http://2852039166/latest/meta-data/"),
    ("metadata_aws_ipv6", "http://[fd00:ec2::254]/latest/meta-data/"),
    ("metadata_nat64", "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/"),
    ("metadata_gcp_name", "http://metadata.google.internal/computeMetadata/v1/"),
    # Names that resolve to private addresses (through the injected resolver).
    ("dns_to_loopback", "http://localtest.me:{port}/v.mp4"),
    ("dns_to_private", "http://internal.test/v.mp4"),
    ("dns_one_of_two_private", "http://rebind.test:{port}/v.mp4"),
    ("dns_to_ipv6_loopback", "http://six.test:{port}/v.mp4"),
    ("dns_to_ipv6_mapped", "http://mapped.test:{port}/v.mp4"),
    # Redirects from the admitted server.
    ("redirect_to_loopback", "http://video.test:{admitted}/redirect?to=http://127.0.0.1:{port}/v.mp4"),
    ("redirect_to_decimal", "http://video.test:{admitted}/redirect?to=http://2130706433:{port}/v.mp4"),
    ("redirect_to_metadata", "http://video.test:{admitted}/redirect?to=http://169.254.169.254/latest/meta-data/"),
    ("redirect_to_metadata_name", "http://video.test:{admitted}/redirect?to=http://metadata.google.internal/"),
    ("redirect_to_dns_loopback", "http://video.test:{admitted}/redirect?to=http://localtest.me:{port}/v.mp4"),
    ("redirect_to_file", "http://video.test:{admitted}/redirect?to=file:///etc/passwd"),
    ("redirect_to_gopher", "http://video.test:{admitted}/redirect?to=gopher://127.0.0.1:{port}/_x"),
    # Userinfo and parser confusion.
    ("userinfo", "http://evil@127.0.0.1:{port}/v.mp4"),
    ("userinfo_admitted_name", "http://video.test:{admitted}@127.0.0.1:{port}/v.mp4"),
    ("userinfo_backslash", "http://127.0.0.1:{port}\\@video.test/v.mp4"),
    ("fragment_at", "http://127.0.0.1:{port}#@video.test/v.mp4"),
    ("scheme_relative", "//127.0.0.1:{port}/v.mp4"),
    # Other schemes.
    ("file", "file:///etc/passwd"),
    ("gopher", "gopher://127.0.0.1:{port}/_GET"),
    ("ftp", "ftp://127.0.0.1:{port}/v.mp4"),
    ("dict", "dict://127.0.0.1:{port}/info"),
    ("data", "data:video/mp4;base64,AAAAIGZ0eXBpc29t"),
    ("javascript", "javascript:alert(1)"),
]


@pytest.fixture(scope="module")
def dns() -> FakeDNS:
    return fake_dns()


@pytest.fixture(scope="module")
def counter() -> Iterator[ConnectionCounter]:
    with ConnectionCounter() as c:
        yield c


@pytest.fixture(scope="module")
def strict_gateway(
    triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory, dns: FakeDNS
) -> Iterator[GatewayServer]:
    """A gateway that admits the name video.test and no address, with the injected resolver."""
    settings = gateway_settings(tmp_path_factory.mktemp("strict-gateway"), triton.grpc_url, allowed_hosts=[ADMITTED])
    with GatewayServer(settings, dns) as server:
        yield server


def test_the_corpus_is_broad_enough() -> None:
    assert len(REFUSED_URLS) >= 20 and len({name for name, _ in REFUSED_URLS}) == len(REFUSED_URLS)


@pytest.mark.parametrize(("name", "template"), REFUSED_URLS, ids=[name for name, _ in REFUSED_URLS])
def test_refused_url_gets_no_connection(
    name: str,
    template: str,
    strict_gateway: GatewayServer,
    counter: ConnectionCounter,
    dns: FakeDNS,
    video_server: VideoServer,
) -> None:
    url = template.format(port=counter.port, admitted=video_server.port)
    before, queries = counter.count, len(dns.queries)
    with strict_gateway.client() as c:
        r = c.post("/api/v1/predict", json={"url": url, **FAST})
    message = assert_error(r, 400, "url_refused")["error"]["message"]
    assert "refus" in message or "not" in message, message
    assert counter.count == before, f"{name}: a connection was made"
    assert set(dns.queries[queries:]) <= set(dns.answers), dns.queries  # no name left for a real resolver
    assert tmp_files(strict_gateway) == []


def test_the_admitted_host_still_serves(
    strict_gateway: GatewayServer, counter: ConnectionCounter, video_server: VideoServer
) -> None:
    """The same gateway fetches from the admitted name (resolved to loopback by the injected resolver)."""
    with strict_gateway.client() as c:
        r = c.post("/api/v1/predict", json={"url": f"http://{ADMITTED}:{video_server.port}/face.mp4", **FAST})
    assert r.status_code == 200, r.text
    assert video_server.seen[-1]["host"] == f"{ADMITTED}:{video_server.port}"
    assert counter.count == 0


@pytest.mark.parametrize(
    ("host", "ip"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("127.0.0.1%2e", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("2852039166", "169.254.169.254"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("fe80::1%lo", "fe80::1%lo"),
        ("example.org", None),
        ("1e100.net", None),
        ("deadbeef", None),
        ("0xg.1", None),
    ],
)
def test_ip_literals_in_every_form_are_found_without_dns(host: str, ip: str | None) -> None:
    assert ip_literal(host) == (None if ip is None else ipaddress.ip_address(ip))


@pytest.mark.asyncio
async def test_allowlist_only_refuses_unlisted_hosts_before_any_lookup(
    tmp_path: Path, video_server: VideoServer
) -> None:
    """``download_allowlist_only``: public names and IPs are refused too, and unlisted names are never resolved."""
    dns = fake_dns()
    policy = HostPolicy.parse([ADMITTED, "10.0.0.0/8"], only_listed=True)
    for host in ("example.org", "rebind.test", "localtest.me", "93.184.216.34", "8.8.8.8", "127.0.0.1"):
        with pytest.raises(UrlRefused, match="only the configured hosts|non-public"):
            await resolve_checked(host, 80, policy, dns)
    assert dns.queries == []
    assert await resolve_checked("10.1.2.3", 80, policy, dns) == "10.1.2.3"  # a listed network
    assert await resolve_checked(ADMITTED, 80, policy, dns) == "127.0.0.1"  # a listed name (resolved)
    assert dns.queries == [ADMITTED]

    client = build_download_client([ADMITTED], 2, 5, resolver=dns, only_listed=True)
    d = Downloader(client, tmp_dir=tmp_path, max_bytes=10_000_000, max_redirects=3, total_timeout_s=10)
    async with d.fetch(f"http://{ADMITTED}:{video_server.port}/face.mp4") as got:
        assert got.size > 0
    seen = len(video_server.seen)
    with pytest.raises(UrlRefused, match="only the configured hosts"):  # a redirect to a public host
        async with d.fetch(f"http://{ADMITTED}:{video_server.port}/redirect?to=http://example.org/v.mp4"):
            pass
    assert len(video_server.seen) == seen + 1 and "example.org" not in dns.queries
    assert list(tmp_path.iterdir()) == []
    await client.aclose()


def test_allowlist_only_setting_reaches_the_gateway(
    triton: TritonProcess, tmp_path: Path, video_server: VideoServer
) -> None:
    """GATEWAY_DOWNLOAD_ALLOWLIST_ONLY through the app: a public name is refused without a lookup."""
    dns = fake_dns()
    settings = gateway_settings(tmp_path, triton.grpc_url, allowed_hosts=[ADMITTED], download_allowlist_only=True)
    with GatewayServer(settings, dns) as server, server.client() as c:
        r = c.post("/api/v1/predict", json={"url": "https://example.org/v.mp4", **FAST})
        assert "only the configured hosts" in assert_error(r, 400, "url_refused")["error"]["message"]
        assert dns.queries == []
        ok = c.post("/api/v1/predict", json={"url": f"http://{ADMITTED}:{video_server.port}/face.mp4", **FAST})
        assert ok.status_code == 200, ok.text


def test_allowlist_only_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_DOWNLOAD_ALLOWLIST_ONLY", "true")
    monkeypatch.setenv("GATEWAY_ALLOWED_HOSTS", "videos.example.com, 10.0.0.0/8")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.download_allowlist_only is True and s.allowed_hosts == ["videos.example.com", "10.0.0.0/8"]
