"""Cloudinary mode end to end: the real SDK inside the gateway, pointed (upload_prefix) at a local fake Cloudinary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.cloudinary_server import FakeCloudinary
from tests.gateway.conftest import GatewayFactory, GatewayServer, VideoServer, tmp_files
from tests.gateway.test_predict import read_video

FACE_FRAMES = 30


@pytest.fixture
def fake() -> Iterator[FakeCloudinary]:
    with FakeCloudinary("test-key", "test-secret-value", "demo") as server:
        yield server


def cloudinary_gateway(make_gateway: GatewayFactory, fake: FakeCloudinary, **overrides: object) -> GatewayServer:
    url = f"cloudinary://test-key:test-secret-value@demo?upload_prefix={fake.upload_prefix}"
    return make_gateway(storage="cloudinary", cloudinary_url=url, cloudinary_backoff_s=0.05, **overrides)


def predict(gw: GatewayServer, video_server: VideoServer) -> dict:
    with gw.client() as c:
        r = c.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), "num_frames": 4})
    assert r.status_code == 200, r.text
    return r.json()


def check_stored_video(data: bytes, tmp_path: Path) -> None:
    path = tmp_path / "stored.mp4"
    path.write_bytes(data)
    video = read_video(path)
    assert video["codec"] == "h264" and len(video["frames"]) == FACE_FRAMES


def test_overlay_goes_to_cloudinary(
    make_gateway: GatewayFactory, fake: FakeCloudinary, video_server: VideoServer, tmp_path: Path
) -> None:
    gw = cloudinary_gateway(make_gateway, fake)
    with gw.client() as c:
        assert c.get("/api/v1/info").json()["storage"] == "cloudinary"
        assert c.get("/api/v1/health").json()["checks"]["storage"]["ok"] is True
    body = predict(gw, video_server)
    assert len(fake.uploads) == 1 and fake.signature_disagreements == 0
    upload = fake.uploads[0]
    assert upload.resource_type == "video" and upload.upload_id is None  # one request: `upload`
    assert body["output_url"] == upload.response["secure_url"]
    assert body["output_url"].startswith("https://res.cloudinary.com/demo/video/upload/") and body["errors"] == []
    check_stored_video(upload.data, tmp_path)
    assert tmp_files(gw) == [] and not gw.settings.media_dir.exists()  # nothing kept locally


def test_upload_large_above_the_threshold(
    make_gateway: GatewayFactory, fake: FakeCloudinary, video_server: VideoServer, tmp_path: Path
) -> None:
    gw = cloudinary_gateway(make_gateway, fake, cloudinary_large_threshold_bytes=1000)
    body = predict(gw, video_server)
    upload = fake.uploads[0]
    assert upload.upload_id, "upload_large sends X-Unique-Upload-Id"
    total = len(upload.data)
    assert upload.chunk_ranges == [(0, total - 1, total)]  # Content-Range on the (single, final) part
    assert all(r.content_range for r in fake.requests)
    assert body["output_url"] == upload.response["secure_url"]
    check_stored_video(upload.data, tmp_path)
    assert tmp_files(gw) == []


def test_cloudinary_500_twice_then_200(
    make_gateway: GatewayFactory, fake: FakeCloudinary, video_server: VideoServer
) -> None:
    gw = cloudinary_gateway(make_gateway, fake)
    fake.fail_next(2, status=500)
    body = predict(gw, video_server)
    assert [r.status for r in fake.requests] == [500, 500, 200]
    assert body["output_url"] == fake.uploads[0].response["secure_url"] and body["errors"] == []
    assert body["timings"]["upload"] >= 0.05 + 0.1  # the backoff waits happened


def test_cloudinary_always_500_keeps_the_verdict(
    make_gateway: GatewayFactory, fake: FakeCloudinary, video_server: VideoServer
) -> None:
    gw = cloudinary_gateway(make_gateway, fake, cloudinary_retries=3)
    fake.fail_next(100, status=500)
    body = predict(gw, video_server)
    assert body["predicted_class"] in ("REAL", "FAKE") and body["frames_analyzed"] == 4
    assert body["output_url"] is None
    assert len(body["errors"]) == 1 and body["errors"][0]["stage"] == "upload"
    assert "500" in body["errors"][0]["message"] or "3 attempts" in body["errors"][0]["message"]
    assert "test-secret-value" not in str(body)
    assert len(fake.requests) == 3 and fake.uploads == []
    assert tmp_files(gw) == []
    fake.reset()  # Cloudinary is back: the next prediction is stored
    assert predict(gw, video_server)["output_url"] == fake.uploads[0].response["secure_url"]
    with gw.client() as c:
        assert "gateway_storage_failures_total 1.0" in c.get("/metrics").text
