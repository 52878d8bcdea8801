"""The page's server side without a browser: ``/`` and ``/static`` (headers), the stage event stream
``GET /api/v1/progress/{id}`` against the real gateway, and the in-memory tracker behind it."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from typing import Any

import httpx
import pytest

from gateway.services.prediction.progress import ProgressTracker
from tests.gateway.conftest import GatewayServer, VideoServer

STAGES = ["probe", "inference", "gradcam", "render", "upload", "done"]


def test_page_and_assets_are_served(web_gateway: GatewayServer) -> None:
    with web_gateway.client() as c:
        page = c.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        for asset in ("/static/app.js", "/static/app.css"):
            assert f'"{asset}"' in page.text
        js = c.get("/static/app.js")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"]
        assert js.headers["cache-control"] == "no-cache"
        assert c.get("/static/app.css").headers["content-type"].startswith("text/css")
        assert c.get("/static/nope.js").status_code == 404
        assert c.get("/static/../main.py").status_code == 404
        # The page loads nothing from elsewhere (no CDN).
        for text in (page.text, js.text, c.get("/static/app.css").text):
            assert "//cdn" not in text and "googleapis" not in text and "unpkg" not in text


def read_events(url: str, out: dict[str, Any]) -> None:
    """Collect the `stage` events of one stream until it ends."""
    events: list[dict[str, Any]] = []
    try:
        with httpx.stream("GET", url, timeout=60) as r:
            out["status"] = r.status_code
            out["content_type"] = r.headers.get("content-type", "")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
    except Exception as exc:  # reported by the test
        out["error"] = repr(exc)
    out["events"] = events


def test_progress_stream_reports_each_stage(web_gateway: GatewayServer, web_videos: VideoServer) -> None:
    rid = "test-" + secrets.token_hex(8)
    url = f"{web_gateway.url}/api/v1/progress/{rid}"
    before: dict[str, Any] = {}
    listener = threading.Thread(target=read_events, args=(url, before))
    listener.start()  # the stream opens first and waits for the prediction
    with web_gateway.client() as c:
        r = c.post(
            "/api/v1/predict",
            json={"url": web_videos.url("face.mp4"), "num_frames": 4, "heatmap": True},
            headers={"X-Request-ID": rid},
        )
        assert r.status_code == 200, r.text
        assert r.json()["request_id"] == rid
    listener.join(30)
    assert not listener.is_alive()
    assert before.get("status") == 200 and before["content_type"].startswith("text/event-stream"), before
    assert [e["stage"] for e in before["events"]] == STAGES
    elapsed = [e["elapsed"] for e in before["events"]]
    assert elapsed == sorted(elapsed)

    after: dict[str, Any] = {}
    read_events(url, after)  # opened after the end: the stages are replayed, and the stream ends
    assert [e["stage"] for e in after["events"]] == STAGES


def test_progress_stream_ends_with_failed(web_gateway: GatewayServer) -> None:
    rid = "test-" + secrets.token_hex(8)
    with web_gateway.client() as c:
        r = c.post(
            "/api/v1/predict/upload", files={"file": ("x.mp4", b"not a video" * 100)}, headers={"X-Request-ID": rid}
        )
        assert r.status_code == 422 and r.json()["error"]["type"] == "unsupported_video"
        out: dict[str, Any] = {}
        read_events(f"{web_gateway.url}/api/v1/progress/{rid}", out)
        assert [e["stage"] for e in out["events"]] == ["probe", "failed"]
        bad = c.get("/api/v1/progress/a..b")
        assert bad.status_code == 422 and bad.json()["error"]["type"] == "invalid_request"


def test_tracker_bounds_and_replay() -> None:
    async def scenario() -> None:
        tracker = ProgressTracker(ttl_s=60, max_entries=3)
        for key in ("a", "b", "c", "d"):
            tracker.stage(key, "probe")
        assert len(tracker) == 3  # the oldest went

        with tracker.track("job") as stage:
            stage("probe")
        got = [e["stage"] async for e in tracker.follow("job") if e]
        assert got == ["probe", "done"]

        with pytest.raises(RuntimeError), tracker.track("job") as stage:  # the id again: starts afresh
            stage("inference")
            raise RuntimeError("boom")
        assert [e["stage"] async for e in tracker.follow("job") if e] == ["inference", "failed"]

        # A follower that waits: heartbeats (None) while nothing happens, then the events as they come.
        seen: list[Any] = []

        async def follow() -> None:
            async for event in tracker.follow("late", heartbeat_s=0.05, max_s=5):
                seen.append(event and event["stage"])

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.12)
        with tracker.track("late") as stage:
            stage("probe")
        await asyncio.wait_for(task, 2)
        assert seen[:1] == [None] and seen[-2:] == ["probe", "done"]

        expired = ProgressTracker(ttl_s=0.0)
        expired.stage("old", "probe")
        await asyncio.sleep(0.01)
        expired.stage("new", "probe")
        assert len(expired) == 1

    asyncio.run(scenario())
