"""What the page shows when the API refuses or fails: readable messages in an alert, never a blank page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import GatewayServer, VideoServer, gateway_settings
from triton_runtime.process import TritonProcess, free_port

pytestmark = pytest.mark.web


def open_page(page: Any, gateway: GatewayServer) -> None:
    page.goto(gateway.url + "/")
    page.locator("#service-info").wait_for(state="visible")


def submit_url(page: Any, url: str, frames: int = 4) -> None:
    page.fill("#video-url", url)
    page.fill("#num-frames", str(frames))
    page.uncheck("#heatmap")
    page.click("#submit")


def error_shown(page: Any) -> dict[str, str]:
    panel = page.locator("#error-panel")
    panel.wait_for(state="visible", timeout=60_000)
    assert panel.get_attribute("role") == "alert"
    assert page.is_enabled("#submit") and page.is_hidden("#progress-panel") and page.is_hidden("#result")
    return {
        "type": panel.get_attribute("data-error-type") or "",
        "title": page.inner_text("#error-title"),
        "message": page.inner_text("#error-message"),
        "detail": page.inner_text("#error-detail"),
    }


def test_refused_and_missing_urls(
    page: Any, web_gateway: GatewayServer, web_videos: VideoServer, screenshot: Any
) -> None:
    open_page(page, web_gateway)
    submit_url(page, "http://169.254.169.254/latest/meta-data/")
    error = error_shown(page)
    assert error["type"] == "url_refused"
    assert error["title"] == "This URL was refused"
    assert error["message"]  # the gateway's own reason
    assert "public" in error["detail"] and "HTTP 400" in error["detail"]
    screenshot(page, "error-url-refused")

    submit_url(page, web_videos.url("missing.mp4"))
    page.wait_for_function("() => document.getElementById('error-panel').dataset.errorType === 'download_failed'")
    error = error_shown(page)
    assert error["title"] == "The video could not be downloaded"
    assert "404" in error["message"]


def test_form_checks_before_sending(page: Any, web_gateway: GatewayServer) -> None:
    open_page(page, web_gateway)
    page.click("#submit")
    assert "Paste a video URL or choose a video file" in error_shown(page)["message"]
    assert page.get_attribute("#video-url", "aria-invalid") == "true"
    page.fill("#video-url", "ftp://example.org/v.mp4")
    page.click("#submit")
    assert "must start with http" in error_shown(page)["message"]
    page.fill("#video-url", "https://example.org/v.mp4")
    page.fill("#num-frames", "0")
    page.click("#submit")
    assert "between 1 and 128" in error_shown(page)["message"]
    assert page.evaluate("() => document.activeElement.id") == "num-frames"


def test_no_face_is_a_plain_answer(page: Any, web_gateway: GatewayServer, web_videos: VideoServer) -> None:
    open_page(page, web_gateway)
    submit_url(page, web_videos.url("faceless.mp4"))
    page.locator("#result").wait_for(state="visible", timeout=60_000)
    assert page.inner_text("#verdict").strip() == "No face found"
    assert page.get_attribute("#verdict-box", "data-predicted-class") == "NO_FACE"
    assert "No face was detected" in page.inner_text("#verdict-detail")
    assert page.locator("#chart .pt.noface").count() == page.locator("#chart .pt").count() == 4
    assert page.inner_text("#thumbs-note") == "No face in the analysed frames."


@pytest.fixture
def crippled_gateway(triton: TritonProcess, tmp_path: Path, web_media: Path) -> Iterator[GatewayServer]:
    """A gateway whose Triton is gone, with a download limit under face.mp4's size and a tiny upload limit."""
    face, faceless = (web_media / "face.mp4").stat().st_size, (web_media / "faceless.mp4").stat().st_size
    assert faceless < face - 1
    settings = gateway_settings(
        tmp_path / "crippled",
        f"127.0.0.1:{free_port()}",
        max_download_bytes=face - 1,
        max_upload_bytes=1000,
    )
    with GatewayServer(settings) as server:
        yield server


def test_too_large_and_service_unavailable(
    page: Any, crippled_gateway: GatewayServer, web_videos: VideoServer, web_media: Path, screenshot: Any
) -> None:
    open_page(page, crippled_gateway)
    page.locator("#service-warning").wait_for(state="visible")
    assert "not ready" in page.inner_text("#service-warning")

    submit_url(page, web_videos.url("face.mp4"))  # over the download limit
    error = error_shown(page)
    assert (error["type"], error["title"]) == ("too_large", "The video is too large")

    submit_url(page, web_videos.url("faceless.mp4"))  # downloaded, but Triton cannot be reached
    page.wait_for_function("() => document.getElementById('error-panel').dataset.errorType === 'triton_unavailable'")
    error = error_shown(page)
    assert error["title"] == "The analysis service is unavailable"
    assert "Try again in" in error["detail"] and "HTTP 503" in error["detail"]
    screenshot(page, "error-unavailable")

    page.set_input_files("#video-file", str(web_media / "face.mp4"))  # over the upload limit: refused on the page
    page.click("#submit")
    page.wait_for_function("() => document.getElementById('error-title').textContent === 'The video is too large'")
    assert "1 kB" in error_shown(page)["detail"]
