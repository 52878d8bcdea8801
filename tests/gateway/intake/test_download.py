"""The URL guard, the download limits and the upload receiver, against a real loopback HTTP server."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from gateway.core.errors import DownloadFailed, InvalidRequest, TooLarge, UnsupportedVideo, UpstreamTimeout, UrlRefused
from gateway.services.intake.download import Downloader
from gateway.services.intake.upload import receive_upload
from gateway.services.intake.url_guard import HostPolicy, build_download_client, check_url, is_public, resolve_checked
from tests.gateway.conftest import VideoServer


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("2001:4860:4860::8888", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("127.1.2.3", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # shared address space (CGNAT)
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:169.254.169.254", False),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
    ],
)
def test_address_classification(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_allowlist_admits_names_ips_and_networks() -> None:
    policy = HostPolicy.parse(["127.0.0.1", "10.0.0.0/8", "Video.Internal", " "])
    assert policy.admits("anything", ipaddress.ip_address("127.0.0.1"))
    assert policy.admits("x", ipaddress.ip_address("::ffff:127.0.0.1"))
    assert policy.admits("x", ipaddress.ip_address("10.20.30.40"))
    assert policy.admits("video.internal.", ipaddress.ip_address("192.168.0.7"))
    assert not policy.admits("x", ipaddress.ip_address("127.0.0.2"))
    assert not policy.admits("x", ipaddress.ip_address("169.254.169.254"))
    assert policy.admits("x", ipaddress.ip_address("8.8.8.8"))  # public is always fine


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.org/v.mp4", "only http and https"),
        ("gopher://127.0.0.1:70/_x", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("//example.org/v.mp4", "only http and https"),
        ("example.org/v.mp4", "only http and https"),
        ("http://user@example.org/v.mp4", "credentials"),
        ("http://user:pw@example.org/v.mp4", "credentials"),
        ("http:///v.mp4", "no host"),
        ("   ", "empty"),
    ],
)
def test_url_form_is_checked(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused, match=reason):
        check_url(url)


@pytest.mark.asyncio
async def test_literal_and_resolved_addresses_are_checked() -> None:
    policy = HostPolicy.parse([])
    assert await resolve_checked("93.184.216.34", 80, policy) == "93.184.216.34"
    with pytest.raises(UrlRefused, match="169.254.169.254"):
        await resolve_checked("169.254.169.254", 80, policy)
    with pytest.raises(UrlRefused, match="127.0.0.1"):
        await resolve_checked("localhost", 80, policy)  # the system resolver's answer is checked

    async def mixed(host: str, port: int) -> list[str]:  # one public and one private answer: refused
        return ["93.184.216.34", "10.0.0.5"]

    with pytest.raises(UrlRefused, match="10.0.0.5"):
        await resolve_checked("mixed.test", 80, policy, mixed)


def _downloader(tmp: Path, allowed: list[str], resolver: object = None, **kw: object) -> Downloader:
    extra = {"resolver": resolver} if resolver else {}
    client = build_download_client(allowed, connect_timeout_s=2, read_timeout_s=5, **extra)  # type: ignore[arg-type]
    opts: dict = {"max_bytes": 10_000_000, "max_redirects": 3, "total_timeout_s": 10, **kw}
    return Downloader(client, tmp_dir=tmp, **opts)


@pytest.mark.asyncio
async def test_download_streams_to_a_temp_file_that_is_removed(tmp_path: Path, video_server: VideoServer) -> None:
    d = _downloader(tmp_path, ["127.0.0.1"])
    expected = (video_server.root / "face.mp4").read_bytes()
    async with d.fetch(video_server.url("hops/2/face.mp4")) as got:
        assert got.path.parent == tmp_path and got.path.read_bytes() == expected
        assert got.size == len(expected) and got.final_url.endswith("/face.mp4")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadFailed, match="redirects"):
        async with d.fetch(video_server.url("hops/4/face.mp4")):
            pass
    with pytest.raises(RuntimeError, match="boom"):  # an error inside the block still removes the file
        async with d.fetch(video_server.url("face.mp4")):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    await d.client.aclose()


@pytest.mark.asyncio
async def test_connects_to_the_checked_ip_with_the_original_host(tmp_path: Path, video_server: VideoServer) -> None:
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return {"video.test": ["127.0.0.1"], "internal.test": ["10.9.8.7"]}[host]

    d = _downloader(tmp_path, ["127.0.0.1"], resolver)
    async with d.fetch(f"http://video.test:{video_server.port}/face.mp4") as got:
        assert got.size > 0
    assert calls == ["video.test"]  # resolved once, and that answer was used to connect
    assert video_server.seen[-1]["host"] == f"video.test:{video_server.port}"  # Host header kept
    count = len(video_server.seen)
    with pytest.raises(UrlRefused, match="10.9.8.7"):
        async with d.fetch(f"http://internal.test:{video_server.port}/face.mp4"):
            pass
    assert len(video_server.seen) == count  # nothing was sent
    await d.client.aclose()


@pytest.mark.asyncio
async def test_redirect_to_a_private_address_is_refused(tmp_path: Path, video_server: VideoServer) -> None:
    d = _downloader(tmp_path, ["127.0.0.1"])
    for target in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x", "file:///etc/passwd"):
        with pytest.raises(UrlRefused):
            async with d.fetch(video_server.url(f"redirect?to={target}")):
                pass
    assert list(tmp_path.iterdir()) == []
    await d.client.aclose()


@pytest.mark.asyncio
async def test_limits_statuses_and_timeouts(tmp_path: Path, video_server: VideoServer) -> None:
    size = (video_server.root / "face.mp4").stat().st_size
    small = _downloader(tmp_path, ["127.0.0.1"], max_bytes=size // 2, total_timeout_s=1.0)
    with pytest.raises(TooLarge):  # Content-Length says so
        async with small.fetch(video_server.url("face.mp4")):
            pass
    with pytest.raises(TooLarge):  # no Content-Length: counted while streaming
        async with small.fetch(video_server.url("chunked/face.mp4")):
            pass
    with pytest.raises(TooLarge):
        async with small.fetch(video_server.url("lying/face.mp4")):
            pass
    for status in (403, 404, 500, 503):
        with pytest.raises(DownloadFailed) as info:
            async with small.fetch(video_server.url(f"status/{status}")):
                pass
        assert info.value.remote_status == status and str(status) in info.value.message
    with pytest.raises(UpstreamTimeout):
        async with small.fetch(video_server.url("slow/3/face.mp4")):
            pass
    with pytest.raises(UnsupportedVideo):  # 200 with nothing in it
        async with small.fetch(video_server.url("status/204")):
            pass
    assert list(tmp_path.iterdir()) == []
    await small.client.aclose()


def _multipart(fields: dict[str, str], file: bytes | None, name: str = "file") -> tuple[bytes, str]:
    files = {name: ("clip.mp4", file, "video/mp4")} if file is not None else None
    request = httpx.Request("POST", "http://x/", data=fields, files=files or {"other": ("o.txt", b"", "text/plain")})
    return request.read(), request.headers["content-type"]


async def _chunks(data: bytes, size: int = 7000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


@pytest.mark.asyncio
async def test_upload_is_streamed_to_disk_with_a_limit(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 400  # 102 400 bytes, split across parser writes
    body, ctype = _multipart({"num_frames": "8", "heatmap": "false"}, payload)
    got = await receive_upload(_chunks(body), ctype, tmp_dir=tmp_path, max_bytes=len(payload))
    assert got.path.read_bytes() == payload and got.size == len(payload)
    assert got.fields == {"num_frames": "8", "heatmap": "false"} and got.filename == "clip.mp4"
    got.path.unlink()
    with pytest.raises(TooLarge):
        await receive_upload(_chunks(body), ctype, tmp_dir=tmp_path, max_bytes=len(payload) - 1)
    body2, ctype2 = _multipart({"num_frames": "8"}, None)
    with pytest.raises(InvalidRequest, match="'file'"):
        await receive_upload(_chunks(body2), ctype2, tmp_dir=tmp_path, max_bytes=1000)
    with pytest.raises(InvalidRequest, match="multipart"):
        await receive_upload(_chunks(b"{}"), "application/json", tmp_dir=tmp_path, max_bytes=1000)
    with pytest.raises(InvalidRequest):
        await receive_upload(_chunks(b"garbage without boundary"), ctype, tmp_dir=tmp_path, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tls_server(tmp_path: Path, video_server: VideoServer) -> Iterator[tuple[int, Path]]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for the name ``video.test`` only."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=video.test",
         "-addext", "subjectAltName=DNS:video.test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(video_server.root)))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], cert
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.asyncio
async def test_https_to_the_checked_ip_still_verifies_the_hostname(
    tmp_path: Path, tls_server: tuple[int, Path]
) -> None:
    """The URL is rewritten to the checked IP, yet TLS gets the hostname (SNI) and verifies the certificate for it."""
    port, cert = tls_server

    async def resolver(host: str, port: int) -> list[str]:
        return {"video.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}[host]

    client = build_download_client(
        ["127.0.0.1"], 2, 5, resolver=resolver, verify=ssl.create_default_context(cafile=str(cert))
    )
    d = Downloader(client, tmp_dir=tmp_path / "tmp", max_bytes=10_000_000, max_redirects=3, total_timeout_s=10)
    async with d.fetch(f"https://video.test:{port}/face.mp4") as got:
        assert got.size > 0
    for wrong in (f"https://127.0.0.1:{port}/face.mp4", f"https://other.test:{port}/face.mp4"):
        with pytest.raises(DownloadFailed, match="CERTIFICATE_VERIFY_FAILED|certificate|hostname"):
            async with d.fetch(wrong):
                pass
    await client.aclose()
