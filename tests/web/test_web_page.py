"""The page in a real browser: a face video by URL (desktop) and by upload (phone width), end to end through the
real gateway and Triton: verdict, playable overlay video, one chart point per analysed frame, seeking from the
chart and the thumbnails, timings, raw JSON, and the stage updates."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from tests.gateway.conftest import GatewayServer, VideoServer

pytestmark = pytest.mark.web

PLAYER = "document.getElementById('player')"
FRAMES = 8


def js_round(x: float) -> int:
    """Math.round (half up), as the page rounds."""
    return math.floor(x + 0.5)


def expected_verdict(body: dict[str, Any]) -> str:
    if body["predicted_class"] == "NO_FACE":
        return "No face found"
    words = "Likely manipulated" if body["predicted_class"] == "FAKE" else "Likely authentic"
    return f"{words}, {js_round(body['confidence'])}%"


def open_page(page: Any, gateway: GatewayServer) -> None:
    page.goto(gateway.url + "/")
    page.locator("#service-info").wait_for(state="visible")  # /api/v1/info answered: defaults are in the form


def submit_and_wait(page: Any, endpoint: str, progress_shot: Any = None) -> dict[str, Any]:
    """Click "Analyse video", wait for the API answer and the rendered result; the API's JSON.
    ``progress_shot``: a callable taking a screenshot once the inference stage was announced."""
    with page.expect_response(
        lambda r: r.url.endswith(endpoint) and r.request.method == "POST", timeout=90_000
    ) as answer:
        page.click("#submit")
        page.locator("#progress-panel").wait_for(state="visible")
        assert page.is_disabled("#submit") and page.is_visible("#cancel")
        if progress_shot is not None:
            page.wait_for_function("() => /inference/.test(document.getElementById('stages').dataset.seen)")
            progress_shot()
    response = answer.value
    assert response.status == 200, response.text()
    body: dict[str, Any] = response.json()
    page.locator("#result").wait_for(state="visible")
    assert page.locator("#progress-panel").is_hidden()
    return body


def check_verdict(page: Any, body: dict[str, Any]) -> None:
    assert body["predicted_class"] in ("REAL", "FAKE")
    assert page.inner_text("#verdict").strip() == expected_verdict(body)
    assert page.get_attribute("#verdict-box", "data-predicted-class") == body["predicted_class"]
    assert f"{body['frames_analyzed']} frames analysed" in page.inner_text("#verdict-detail")
    # The stage updates reached the page through the event stream.
    seen = (page.get_attribute("#stages", "data-seen") or "").split()
    assert "probe" in seen and "inference" in seen, seen


def check_video(page: Any, body: dict[str, Any]) -> None:
    """The player has the overlay, knows its duration, and really plays it; the file is H.264 mp4."""
    url = body["output_url"]
    page.wait_for_function(f"() => {PLAYER}.readyState >= 1 && {PLAYER}.duration > 0")
    player = page.evaluate(
        f"""() => ({{src: {PLAYER}.currentSrc, duration: {PLAYER}.duration, width: {PLAYER}.videoWidth,
                   canPlay: {PLAYER}.canPlayType('video/mp4; codecs="avc1.42E01E"')}})"""
    )
    assert player["src"] == url
    assert player["canPlay"] in ("maybe", "probably"), player
    frames, fps = body["video"]["frames"], body["video"]["fps"]
    assert player["duration"] == pytest.approx(frames / fps, abs=0.15)
    assert player["width"] == body["video"]["width"]
    # Playing advances the clock: the browser decodes the stream.
    page.evaluate(f"async () => {{ {PLAYER}.muted = true; await {PLAYER}.play(); }}")
    page.wait_for_function(f"() => {PLAYER}.currentTime > 0.2", timeout=15_000)
    page.evaluate(f"() => {PLAYER}.pause()")

    served = httpx.get(url, timeout=30)
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("video/mp4")
    with av.open(io.BytesIO(served.content), mode="r") as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert len(list(container.decode(stream))) == frames


def seek_and_read(page: Any) -> float:
    page.wait_for_function(f"() => !{PLAYER}.seeking && {PLAYER}.readyState >= 1")
    return float(page.evaluate(f"() => {PLAYER}.currentTime"))


def check_chart(page: Any, body: dict[str, Any]) -> None:
    """One point per analysed frame, at its timestamp; a click or Enter seeks the video to that frame."""
    frames = body["frame_scores"]
    assert len(frames) == body["frames_analyzed"] == FRAMES
    points = page.locator("#chart .pt")
    assert points.count() == len(frames)
    marks = points.evaluate_all("els => els.map(e => [Number(e.dataset.frameIndex), Number(e.dataset.timestamp)])")
    assert marks == [[f["frame_index"], pytest.approx(f["timestamp"])] for f in frames]
    xs = points.evaluate_all("els => els.map(e => Number(e.querySelector('.dot').getAttribute('cx')))")
    assert xs == sorted(xs) and len(set(xs)) == len(xs)  # along the timeline, in order
    frame_time = 1 / body["video"]["fps"]
    # The threshold line is the 50 % grid line: the served threshold is folded into the score (0.5).
    assert body["threshold"] == 0.5
    threshold_y, grid_ys = page.evaluate(
        "() => [Number(document.querySelector('#chart line.threshold').getAttribute('y1')),"
        " [...document.querySelectorAll('#chart .grid line')].map(l => Number(l.getAttribute('y1')))]"
    )
    assert threshold_y == pytest.approx(grid_ys[2])  # grid lines at 0, 25, 50, 75, 100 %
    assert page.locator("#chart .threshold-label").text_content() == "threshold 50%"

    for i in (5, 1):
        points.nth(i).click()
        assert seek_and_read(page) == pytest.approx(frames[i]["timestamp"], abs=frame_time)
        assert "current" in (points.nth(i).get_attribute("class") or "")

    # Keyboard: focus a point, arrow to the next, Enter seeks there.
    points.nth(2).focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.dataset.i") == "3"
    page.keyboard.press("Enter")
    assert seek_and_read(page) == pytest.approx(frames[3]["timestamp"], abs=frame_time)


def check_thumbnails(page: Any, body: dict[str, Any]) -> None:
    """A face picture per analysed frame with a face, cut from the overlay; a click seeks there."""
    frames = body["frame_scores"]
    page.locator("#thumbs[data-ready='true']").wait_for(state="attached", timeout=30_000)
    assert page.locator("#thumbs .thumb").count() == len(frames)
    with_face = sum(1 for f in frames if f["box"])
    assert with_face >= 1
    assert page.locator("#thumbs canvas[data-drawn='true']").count() == with_face
    spread = page.evaluate(
        """() => {
            const c = document.querySelector('#thumbs canvas[data-drawn="true"]');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let sum = 0, sq = 0, n = 0;
            for (let i = 0; i < d.length; i += 4) { const v = d[i + 1]; sum += v; sq += v * v; n++; }
            return Math.sqrt(sq / n - (sum / n) ** 2);
        }"""
    )
    assert spread > 10, "the thumbnail is blank"
    target = next(i for i, f in enumerate(frames) if f["box"])
    page.locator("#thumbs .thumb").nth(target).click()
    assert seek_and_read(page) == pytest.approx(frames[target]["timestamp"], abs=1 / body["video"]["fps"])


def check_timings_and_json(page: Any, body: dict[str, Any]) -> None:
    rows = page.locator("#timings tbody tr")
    assert rows.count() == 6
    assert "Total" in rows.nth(5).inner_text()
    href = page.get_attribute("#json-link", "href") or ""
    assert href.startswith("blob:")
    with page.context.expect_page() as opened:  # the link opens the JSON in a new tab
        page.click("#json-link")
    tab = opened.value
    tab.wait_for_load_state()
    assert json.loads(tab.evaluate("() => (document.querySelector('pre') || document.body).textContent")) == body
    tab.close()
    assert json.loads(page.text_content("#json") or "") == body


def check_phone_layout(page: Any) -> None:
    """Nothing wider than the screen; the chart was redrawn for the width."""
    width = page.evaluate("() => window.innerWidth")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    drawn = page.evaluate(
        "() => [document.querySelector('#chart svg').getBoundingClientRect().width,"
        " Number(document.querySelector('#chart svg').getAttribute('width'))]"
    )
    assert 0 < drawn[0] <= width and drawn[1] == pytest.approx(drawn[0], abs=2)  # drawn for its width, not shrunk


def test_url_submission_desktop_then_phone(
    page: Any, web_gateway: GatewayServer, web_videos: VideoServer, screenshot: Any
) -> None:
    open_page(page, web_gateway)
    page.fill("#video-url", web_videos.url("face.mp4"))
    page.fill("#num-frames", str(FRAMES))
    page.check("#heatmap")
    body = submit_and_wait(page, "/api/v1/predict", lambda: screenshot(page, "progress-desktop"))
    assert body["heatmap"] is True
    check_verdict(page, body)
    check_video(page, body)
    check_chart(page, body)
    check_thumbnails(page, body)
    check_timings_and_json(page, body)
    page.evaluate(f"() => {{ {PLAYER}.currentTime = 0.6; }}")
    seek_and_read(page)
    page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(page, "result-desktop")

    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function("() => Number(document.querySelector('#chart svg').getAttribute('width')) <= 390")
    check_phone_layout(page)
    screenshot(page, "result-phone")


def test_upload_submission_at_phone_width(
    page: Any, web_gateway: GatewayServer, web_media: Path, screenshot: Any
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    open_page(page, web_gateway)
    page.set_input_files("#video-file", str(web_media / "face.mp4"))
    assert "face.mp4" in page.inner_text("#file-name")
    assert page.is_disabled("#video-url")  # the file wins; the URL field says so
    page.fill("#num-frames", str(FRAMES))
    page.uncheck("#heatmap")
    screenshot(page, "form-phone")
    body = submit_and_wait(page, "/api/v1/predict/upload")
    assert body["heatmap"] is False
    check_verdict(page, body)
    check_video(page, body)
    check_chart(page, body)
    check_thumbnails(page, body)
    check_timings_and_json(page, body)
    check_phone_layout(page)
    page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(page, "upload-result-phone")


def test_dropped_file_and_dropped_link_fill_the_form(page: Any, web_gateway: GatewayServer) -> None:
    open_page(page, web_gateway)
    link = page.evaluate_handle(
        "() => { const dt = new DataTransfer(); dt.setData('text/uri-list', 'https://example.org/v.mp4'); return dt; }"
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": link})
    assert page.input_value("#video-url") == "https://example.org/v.mp4"
    dropped = page.evaluate_handle(
        """() => { const dt = new DataTransfer();
                   dt.items.add(new File([new Uint8Array(2048)], 'clip.mp4', {type: 'video/mp4'})); return dt; }"""
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    assert "clip.mp4" in page.inner_text("#file-name")
    assert page.is_disabled("#video-url")
    page.click("#file-clear")
    assert page.is_enabled("#video-url") and page.is_hidden("#file-chosen")
