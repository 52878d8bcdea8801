"""Storage backends with real files: local storage, and the real Cloudinary SDK against a local Cloudinary server."""

from __future__ import annotations

import asyncio
import fractions
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import cloudinary
import cloudinary.exceptions
import cloudinary.uploader
import numpy as np
import pytest

from gateway.services.storage import (
    CloudinaryCredentials,
    CloudinaryStorage,
    LocalStorage,
    Storage,
    StorageError,
    StoredFile,
    build_storage,
)
from tests.fakes.cloudinary_server import FakeCloudinary, expected_signature, string_to_sign

API_KEY = "614335564976464"
API_SECRET = "s3cr3t-Xy_9PqLmNoZ"
CLOUD = "demo-cloud"
MiB = 1024 * 1024


@pytest.fixture
def fake() -> Iterator[FakeCloudinary]:
    """A Cloudinary upload server on a free loopback port."""
    with FakeCloudinary(API_KEY, API_SECRET, CLOUD) as server:
        yield server
        assert server.signature_disagreements == 0


def _file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def _storage(fake: FakeCloudinary, **kwargs: object) -> CloudinaryStorage:
    options: dict[str, object] = {"retries": 3, "backoff_s": 0.01, "timeout_s": 10, **kwargs}
    return CloudinaryStorage(fake.cloudinary_url, **options)  # type: ignore[arg-type]


def _h264_clip(path: Path, frames: int = 12, fps: int = 12) -> Path:
    """A tiny real H.264 mp4 (PyAV), for the server's media validation."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = fractions.Fraction(1, fps)
        for i in range(frames):
            image = np.full((48, 64, 3), i * 20 % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


# -- local storage ---------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_local_save_copies_atomically_and_returns_the_absolute_url(tmp_path: Path) -> None:
    source = _file(tmp_path / "render.mp4", 300_000)
    storage = LocalStorage(tmp_path / "media", "http://testserver:5050/")
    assert isinstance(storage, Storage)
    stored = await storage.save(source, "req_01-abc")
    assert stored == StoredFile("http://testserver:5050/media/req_01-abc.mp4", "req_01-abc", 300_000, "local")
    target = tmp_path / "media" / "req_01-abc.mp4"
    assert target.read_bytes() == source.read_bytes()
    assert source.exists(), "the caller's file is copied, not taken"
    assert sorted(p.name for p in (tmp_path / "media").iterdir()) == ["req_01-abc.mp4"], "no temp file left"
    assert storage.path_for("req_01-abc") == target.resolve()
    assert storage.path_for("req_01-abc.mp4") == target.resolve()

    _file(source, 1000)  # saving again replaces the file
    assert (await storage.save(source, "req_01-abc")).bytes == 1000
    assert target.read_bytes() == source.read_bytes()
    assert await storage.check()


@pytest.mark.asyncio
async def test_local_path_for_and_save_refuse_unsafe_ids(tmp_path: Path) -> None:
    media = tmp_path / "media"
    storage = LocalStorage(media, "https://example.org")
    media.mkdir()
    (tmp_path / "x.mp4").write_bytes(b"outside")
    (media / "escape.mp4").symlink_to(tmp_path / "x.mp4")
    for bad in ("../x", "a/b", "/etc/passwd", "..", "", ".mp4", "a.b", "x" * 129, "a\x00b", "%2e%2e", "escape"):
        assert storage.path_for(bad) is None, bad
    assert storage.path_for("missing") is None
    source = _file(tmp_path / "v.mp4", 10)
    for bad in ("../x", "a/b", "", "x" * 129):
        with pytest.raises(StorageError, match="invalid public id"):
            await storage.save(source, bad)
    with pytest.raises(StorageError):
        await storage.save(tmp_path / "nope.mp4", "ok")
    assert (tmp_path / "x.mp4").read_bytes() == b"outside"


@pytest.mark.asyncio
async def test_local_check_is_false_when_the_directory_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    assert not await LocalStorage(tmp_path / "file" / "media", "http://h").check()
    with pytest.raises(ValueError, match="absolute"):
        LocalStorage(tmp_path, "/relative")


# -- Cloudinary: the happy paths ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_small_file_goes_up_in_one_signed_upload_request(fake: FakeCloudinary, tmp_path: Path) -> None:
    source = _file(tmp_path / "overlay-render.mp4", 2 * MiB + 17)
    storage = _storage(fake)
    assert isinstance(storage, Storage) and await storage.check()

    stored = await storage.save(source, "req42")

    assert len(fake.requests) == 1
    request = fake.requests[0]
    assert request.path == f"/v1_1/{CLOUD}/video/upload" and request.status == 200
    assert request.content_range is None and request.upload_id is None
    assert request.params["public_id"] == "deepfake-detector/req42" and request.params["overwrite"] == "1"
    assert request.params["api_key"] == API_KEY and request.params["timestamp"]
    assert request.params["signature"] == expected_signature(request.params, API_SECRET)
    assert "folder" not in request.params and "api_secret" not in request.params
    assert API_SECRET not in repr(request.params)
    assert request.file_name == "req42.mp4", "the local temp path must not be sent"
    assert request.headers["user-agent"].startswith("CloudinaryPython/")

    upload = fake.uploads[0]
    assert upload.data == source.read_bytes()
    assert stored.url == upload.response["secure_url"]
    assert stored.url.startswith(f"https://res.cloudinary.com/{CLOUD}/video/upload/v")
    assert stored.url.endswith("/deepfake-detector/req42.mp4")
    assert stored == StoredFile(stored.url, "deepfake-detector/req42", source.stat().st_size, "cloudinary")
    assert cloudinary.config().api_secret != API_SECRET, "per-call options, not the global config"
    assert cloudinary.config().upload_prefix != fake.upload_prefix


@pytest.mark.asyncio
async def test_from_the_threshold_upload_large_sends_5mb_parts_that_reassemble(
    fake: FakeCloudinary, tmp_path: Path
) -> None:
    source = _file(tmp_path / "big.mp4", 12 * MiB + 12345)
    storage = _storage(fake, large_threshold_bytes=1 * MiB, chunk_size=5 * MiB)

    stored = await storage.save(source, "bigone")

    assert len(fake.requests) == 3 and all(r.status == 200 for r in fake.requests)
    assert {r.upload_id for r in fake.requests} == {fake.requests[0].upload_id}
    assert fake.requests[0].upload_id
    ranges = [r.chunk_range for r in fake.requests]
    size = source.stat().st_size
    assert ranges == [(0, 5 * MiB - 1, size), (5 * MiB, 10 * MiB - 1, size), (10 * MiB, size - 1, size)]
    assert all(r.file_size >= 5 * MiB for r in fake.requests[:-1])
    assert all(r.params["public_id"] == "deepfake-detector/bigone" for r in fake.requests)
    assert all(r.path == f"/v1_1/{CLOUD}/video/upload" for r in fake.requests)
    assert fake.requests[0].response["done"] is False

    assert len(fake.uploads) == 1
    assert fake.uploads[0].data == source.read_bytes()
    assert stored.url == fake.uploads[0].response["secure_url"]
    assert stored.public_id == "deepfake-detector/bigone" and stored.bytes == size


@pytest.mark.asyncio
async def test_below_the_threshold_a_big_file_still_uses_one_request(fake: FakeCloudinary, tmp_path: Path) -> None:
    source = _file(tmp_path / "v.mp4", 6 * MiB)
    await _storage(fake, large_threshold_bytes=6 * MiB + 1).save(source, "one")
    assert len(fake.requests) == 1 and fake.requests[0].content_range is None
    assert fake.uploads[0].data == source.read_bytes()


@pytest.mark.asyncio
async def test_a_real_video_is_accepted_by_a_validating_server(tmp_path: Path) -> None:
    clip = _h264_clip(tmp_path / "clip.mp4")
    with FakeCloudinary(API_KEY, API_SECRET, CLOUD, validate_media=True) as server:
        stored = await _storage(server).save(clip, "clip")
        assert server.uploads[0].response["duration"] == pytest.approx(1.0, abs=0.2)
        assert server.uploads[0].response["width"] == 64
        assert stored.url == server.uploads[0].response["secure_url"]

        garbage = _file(tmp_path / "garbage.mp4", 5000)
        with pytest.raises(StorageError, match="BadRequest: Unsupported video"):
            await _storage(server).save(garbage, "garbage")
        assert len(server.requests) == 2, "a 400 is not retried"


# -- Cloudinary: failures -----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_500_twice_then_200_succeeds_after_retries(fake: FakeCloudinary, tmp_path: Path) -> None:
    source = _file(tmp_path / "v.mp4", 4096)
    fake.fail_next(2, status=500)
    stored = await _storage(fake).save(source, "retry")
    assert [r.status for r in fake.requests] == [500, 500, 200]
    assert fake.uploads[0].data == source.read_bytes()
    assert stored.url == fake.uploads[0].response["secure_url"]


@pytest.mark.asyncio
async def test_a_failed_part_restarts_the_chunked_upload(fake: FakeCloudinary, tmp_path: Path) -> None:
    source = _file(tmp_path / "v.mp4", 11 * MiB)
    storage = _storage(fake, large_threshold_bytes=MiB, chunk_size=5 * MiB)

    fake.fail_next(1, status=503, skip=1)  # the second part fails once

    await storage.save(source, "resumed")
    assert [r.status for r in fake.requests] == [200, 503, 200, 200, 200]
    assert [r.chunk_range[0] for r in fake.requests if r.chunk_range] == [0, 5 * MiB, 0, 5 * MiB, 10 * MiB]
    assert len({r.upload_id for r in fake.requests}) == 2, "the retry is a fresh chunked upload"
    assert len(fake.uploads) == 1 and fake.uploads[0].data == source.read_bytes()


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_forever_give_up_after_the_attempts(
    fake: FakeCloudinary, tmp_path: Path, status: int
) -> None:
    source = _file(tmp_path / "v.mp4", 4096)
    fake.fail_next(10, status=status, message=f"boom (echoing {API_SECRET} like a broken proxy)")
    with pytest.raises(StorageError, match="after 3 attempts") as caught:
        await _storage(fake).save(source, "doomed")
    assert len(fake.requests) == 3
    text = str(caught.value)
    assert API_SECRET not in text and "***" in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.asyncio
async def test_a_non_json_502_from_a_proxy_is_retried(fake: FakeCloudinary, tmp_path: Path) -> None:
    source = _file(tmp_path / "v.mp4", 4096)
    fake.fail_next(1, status=502, body=b"<html><body>502 Bad Gateway</body></html>")
    await _storage(fake).save(source, "proxied")
    assert [r.status for r in fake.requests] == [502, 200]


@pytest.mark.asyncio
async def test_a_non_json_413_is_not_retried(fake: FakeCloudinary, tmp_path: Path) -> None:
    source = _file(tmp_path / "v.mp4", 4096)
    fake.fail_next(5, status=413, body=b"<html>413 Request Entity Too Large</html>")
    with pytest.raises(StorageError, match="413"):
        await _storage(fake).save(source, "huge")
    assert len(fake.requests) == 1


@pytest.mark.asyncio
async def test_a_wrong_secret_fails_at_once_without_leaking_it(fake: FakeCloudinary, tmp_path: Path) -> None:
    source = _file(tmp_path / "v.mp4", 4096)
    wrong = "wr0ng-secret-value"
    storage = CloudinaryStorage(
        f"cloudinary://{API_KEY}:{wrong}@{CLOUD}?upload_prefix={fake.upload_prefix}", retries=3, backoff_s=0.01
    )
    with pytest.raises(StorageError, match="AuthorizationRequired: Invalid Signature") as caught:
        await storage.save(source, "denied")
    assert len(fake.requests) == 1 and fake.requests[0].status == 401
    assert wrong not in str(caught.value) and API_SECRET not in str(caught.value)
    assert wrong not in repr(storage) and wrong not in repr(storage.credentials)
    assert fake.uploads == []


@pytest.mark.asyncio
async def test_an_unknown_api_key_or_cloud_fails_at_once(fake: FakeCloudinary, tmp_path: Path) -> None:
    source = _file(tmp_path / "v.mp4", 4096)
    for url in (
        f"cloudinary://999:{API_SECRET}@{CLOUD}?upload_prefix={fake.upload_prefix}",
        f"cloudinary://{API_KEY}:{API_SECRET}@other-cloud?upload_prefix={fake.upload_prefix}",
    ):
        fake.reset()
        with pytest.raises(StorageError, match="AuthorizationRequired") as caught:
            await CloudinaryStorage(url, backoff_s=0.01).save(source, "x")
        assert len(fake.requests) == 1 and API_SECRET not in str(caught.value)


@pytest.mark.asyncio
async def test_network_errors_are_retried_then_reported(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    storage = CloudinaryStorage(
        f"cloudinary://{API_KEY}:{API_SECRET}@{CLOUD}?upload_prefix=http://127.0.0.1:{port}",
        retries=2,
        backoff_s=0.01,
        timeout_s=5,
    )
    with pytest.raises(StorageError, match="after 2 attempts: Error: Unexpected error") as caught:
        await storage.save(_file(tmp_path / "v.mp4", 100), "offline")
    assert API_SECRET not in str(caught.value)


@pytest.mark.asyncio
async def test_two_accounts_upload_concurrently_without_crosstalk(tmp_path: Path) -> None:
    with (
        FakeCloudinary("key-a", "secret-a", "cloud-a") as first,
        FakeCloudinary("key-b", "secret-b", "cloud-b") as second,
    ):
        storages = [CloudinaryStorage(s.cloudinary_url, backoff_s=0.01) for s in (first, second)]
        files = [_file(tmp_path / f"{i}.mp4", 200_000 + i) for i in range(6)]
        results = await asyncio.gather(*(storages[i % 2].save(path, f"clip{i}") for i, path in enumerate(files)))
        assert all("cloud-a" in r.url for r in results[0::2]) and all("cloud-b" in r.url for r in results[1::2])
        assert len(first.uploads) == len(second.uploads) == 3
        assert all(r.status == 200 for r in first.requests + second.requests)


@pytest.mark.asyncio
async def test_bad_inputs_fail_before_any_request(fake: FakeCloudinary, tmp_path: Path) -> None:
    storage = _storage(fake)
    with pytest.raises(StorageError, match="invalid public id"):
        await storage.save(_file(tmp_path / "v.mp4", 10), "../etc")
    with pytest.raises(StorageError, match="cannot read"):
        await storage.save(tmp_path / "missing.mp4", "ok")
    with pytest.raises(StorageError, match="empty"):
        await storage.save(_file(tmp_path / "empty.mp4", 0), "ok")
    assert fake.requests == []


# -- configuration -------------------------------------------------------------------------------------------------


def test_the_url_is_parsed_like_the_sdk_and_errors_never_echo_the_secret() -> None:
    creds = CloudinaryCredentials.from_url(
        f"cloudinary://{API_KEY}:{API_SECRET}@{CLOUD}?upload_prefix=http://127.0.0.1:9/&signature_algorithm=sha256"
    )
    assert (creds.api_key, creds.api_secret, creds.cloud_name) == (API_KEY, API_SECRET, CLOUD)
    assert creds.upload_prefix == "http://127.0.0.1:9" and creds.signature_algorithm == "sha256"
    assert API_SECRET not in repr(creds)
    for bad in (f"https://{API_KEY}:{API_SECRET}@{CLOUD}", f"cloudinary://{API_KEY}@{CLOUD}", "cloudinary://"):
        with pytest.raises(ValueError) as caught:
            CloudinaryCredentials.from_url(bad)
        assert API_SECRET not in str(caught.value)
    with pytest.raises(ValueError, match="chunk_size"):
        CloudinaryStorage("cloudinary://k:s@c", chunk_size=MiB)


def test_build_storage_picks_cloudinary_only_when_a_url_is_given(tmp_path: Path) -> None:
    common = {"local_dir": tmp_path, "public_base_url": "http://localhost:5050"}
    assert isinstance(build_storage(cloudinary_url=None, **common), LocalStorage)  # type: ignore[arg-type]
    assert isinstance(build_storage(cloudinary_url="  ", **common), LocalStorage)  # type: ignore[arg-type]
    chosen = build_storage(
        cloudinary_url=f"cloudinary://{API_KEY}:{API_SECRET}@{CLOUD}",
        large_threshold_bytes=MiB,
        chunk_size=5 * MiB,
        **common,  # type: ignore[arg-type]
    )
    assert isinstance(chosen, CloudinaryStorage) and chosen.name == "cloudinary"
    assert chosen.large_threshold_bytes == MiB and chosen.chunk_size == 5 * MiB


# -- the fake itself -----------------------------------------------------------------------------------------------


def test_the_fake_signs_like_cloudinarys_documented_example() -> None:
    params: dict[str, str | list[str]] = {
        "timestamp": "1315060510",
        "public_id": "sample_image",
        "eager": "w_400,h_300,c_pad|w_260,h_200,c_crop",
        "api_key": "ignored",
        "file": "ignored",
    }
    expected = "eager=w_400,h_300,c_pad|w_260,h_200,c_crop&public_id=sample_image&timestamp=1315060510"
    assert string_to_sign(params) == expected
    assert expected_signature(params, "abcd") == "bfd09f95f331f558cbd1320e67aa8d488770583e"


def test_the_fake_refuses_small_parts_and_tampered_requests(fake: FakeCloudinary, tmp_path: Path) -> None:
    source = _file(tmp_path / "v.mp4", 3 * MiB)
    options = {
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "cloud_name": CLOUD,
        "upload_prefix": fake.upload_prefix,
        "resource_type": "video",
    }
    with pytest.raises(cloudinary.exceptions.BadRequest, match="smaller than the minimum"):
        cloudinary.uploader.upload_large(str(source), chunk_size=MiB, **options)
    fake.chunk_min_bytes = MiB  # the knob: a lower minimum lets 1 MiB parts through
    result = cloudinary.uploader.upload_large(str(source), chunk_size=MiB, public_id="p", **options)
    assert result["bytes"] == 3 * MiB and fake.uploads[-1].data == source.read_bytes()
    with pytest.raises(cloudinary.exceptions.AuthorizationRequired, match="Invalid Signature"):
        cloudinary.uploader.upload(str(source), **{**options, "api_secret": "other"})
    with pytest.raises(cloudinary.exceptions.NotFound):
        cloudinary.uploader.upload(str(source), **{**options, "resource_type": "nonsense"})
