"""The bad-input corpus (``tests.bad_media``) through real HTTP: every file is refused with a 4xx that says what
is wrong, by URL and (a subset) by upload; the gateway serves a good video after each and leaves no temp file."""

from __future__ import annotations

import httpx
import pytest

from tests.bad_media import BAD_INPUTS, BadInput
from tests.gateway.conftest import (
    FAST,
    GatewayFactory,
    GatewayServer,
    VideoServer,
    assert_error,
    assert_serves,
    bad_file_name,
    tmp_files,
)

UPLOADS = [case for case in BAD_INPUTS if case.upload]


def test_the_corpus_is_broad_enough() -> None:
    assert len(BAD_INPUTS) >= 30 and len(UPLOADS) >= 10
    assert {c.status for c in BAD_INPUTS} == {413, 422}


def check_refusal(response: httpx.Response, case: BadInput, gateway: GatewayServer) -> None:
    """The expected 4xx, a message naming the problem, nothing internal in it; then a good video still works."""
    body = assert_error(response, case.status, case.error_type)
    message = body["error"]["message"]
    assert any(word.lower() in message.lower() for word in case.words), f"{case.name}: {message!r}"
    assert str(gateway.tmp_dir) not in message and "Traceback" not in response.text


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c.name for c in BAD_INPUTS])
def test_bad_input_by_url_is_refused(
    case: BadInput, client: httpx.Client, gateway: GatewayServer, video_server: VideoServer
) -> None:
    r = client.post("/api/v1/predict", json={"url": video_server.url(bad_file_name(case)), **FAST})
    check_refusal(r, case, gateway)
    assert_serves(client, video_server)
    assert tmp_files(gateway) == []


@pytest.mark.parametrize("case", UPLOADS, ids=[c.name for c in UPLOADS])
def test_bad_input_upload_is_refused(
    case: BadInput, client: httpx.Client, gateway: GatewayServer, video_server: VideoServer
) -> None:
    data = (video_server.root / bad_file_name(case)).read_bytes()
    for route in ("/api/v1/predict/upload", "/api/v1/predict"):  # the upload route, and multipart on /predict
        r = client.post(route, files={"file": (case.filename, data)}, data={"num_frames": "4", "heatmap": "false"})
        check_refusal(r, case, gateway)
    assert_serves(client, video_server)
    assert tmp_files(gateway) == []


def test_limits_follow_the_settings(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    """The frame-count, frame-size and minimum-frames limits are settings (face.mp4: 30 frames of 640x360)."""
    strict = make_gateway(max_frames=10, max_pixels=640 * 360, min_frames=2)
    with strict.client() as c:
        r = c.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), **FAST})
        assert "more than 10 frames" in assert_error(r, 413, "too_large")["error"]["message"]
    picky = make_gateway(max_pixels=640 * 360 - 1, min_frames=31)
    with picky.client() as c:
        r = c.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), **FAST})
        assert "640x360" in assert_error(r, 413, "too_large")["error"]["message"]
    lenient = make_gateway(min_frames=31)
    with lenient.client() as c:
        r = c.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), **FAST})
        assert "only 30 frame(s); at least 31" in assert_error(r, 422, "unsupported_video")["error"]["message"]
        info = c.get("/api/v1/info").json()["limits"]
    assert {"max_pixels", "max_frames", "max_duration_s"} <= set(info)
    assert tmp_files(strict) == tmp_files(picky) == tmp_files(lenient) == []
