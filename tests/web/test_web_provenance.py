"""Issue 17 in a real browser: the content credentials panel above the detector's score. A clip signed by the
test CA (trusted by this gateway) and declared AI-generated shows as FAKE by content credentials with the
detector's own result beside it; a tampered copy shows NOT valid and keeps the detector's verdict; an unsigned
clip says there are none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.c2pa_media import GENERATOR, SIGNER_NAME, flip_media_byte, make_chain, sign_video
from tests.gateway.conftest import FPS, GatewayServer, VideoServer, gateway_settings
from tests.web.test_web_page import expected_verdict, open_page, submit_and_wait
from triton_runtime.process import TritonProcess

pytestmark = pytest.mark.web


@pytest.fixture(scope="module")
def signed_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.media import face_video

    d = tmp_path_factory.mktemp("web-c2pa")
    chain = make_chain()
    face_video(d / "plain.mp4", width=320, height=180, fps=FPS, seconds=1.0)
    sign_video(d / "plain.mp4", d / "ai.mp4", chain, source_type="trainedAlgorithmicMedia")
    flip_media_byte(d / "ai.mp4", d / "tampered.mp4")
    (d / "anchors.pem").write_bytes(chain.ca_pem)
    return d


@pytest.fixture(scope="module")
def signed_server(signed_media: Path) -> Iterator[VideoServer]:
    with VideoServer(signed_media) as server:
        yield server


@pytest.fixture(scope="module")
def trusting_gateway(
    triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory, signed_media: Path
) -> Iterator[GatewayServer]:
    settings = gateway_settings(
        tmp_path_factory.mktemp("web-c2pa-gateway"), triton.grpc_url, c2pa_trust_anchors=signed_media / "anchors.pem"
    )
    with GatewayServer(settings) as server:
        yield server


def analyse(page: Any, url: str) -> dict[str, Any]:
    page.fill("#video-url", url)
    page.fill("#num-frames", "4")
    page.uncheck("#heatmap")
    return submit_and_wait(page, "/api/v1/predict")


def field(page: Any, key: str) -> str:
    return str(page.inner_text(f'#provenance-fields dd[data-field="{key}"]')).strip()


def test_provenance_panel(
    page: Any, trusting_gateway: GatewayServer, signed_server: VideoServer, screenshot: Any
) -> None:
    open_page(page, trusting_gateway)

    body = analyse(page, signed_server.url("ai.mp4"))
    assert body["verdict_reason"] == "content_credentials" and body["predicted_class"] == "FAKE"
    panel = page.locator("#provenance")
    assert panel.is_visible() and panel.get_attribute("data-trusted") == "true"
    assert page.inner_text("#provenance-status") == "Valid content credentials from a trusted signer"
    assert field(page, "signer").startswith(SIGNER_NAME)
    assert field(page, "tool") == f"{GENERATOR} 1.0" and field(page, "created") == "2026-11-30T12:00:00Z"
    assert field(page, "ai").startswith("Yes") and field(page, "valid") == "Yes"
    assert page.inner_text("#verdict").strip() == "AI-generated, declared by trusted content credentials"
    assert page.get_attribute("#verdict-box", "data-predicted-class") == "FAKE"
    detail = page.inner_text("#verdict-detail")
    own = {"REAL": "authentic", "FAKE": "manipulated", "NO_FACE": "no face found"}[body["detector_class"]]
    assert f"The detector's own result: {own}" in detail
    assert f"{round(100 * body['probability_fake'])}%" in detail
    # The panel is above the detector's score.
    panel_box, verdict_box = panel.bounding_box(), page.locator("#verdict-box").bounding_box()
    assert panel_box["y"] + panel_box["height"] <= verdict_box["y"]
    screenshot(page, "provenance-trusted-ai")

    body = analyse(page, signed_server.url("tampered.mp4"))
    assert body["verdict_reason"] == "detector"
    assert page.inner_text("#provenance-status").startswith("Content credentials present but NOT valid")
    assert "assertion.bmffHash.mismatch" in field(page, "valid")
    assert page.inner_text("#verdict").strip() == expected_verdict(body)
    screenshot(page, "provenance-tampered")

    analyse(page, signed_server.url("plain.mp4"))
    assert page.inner_text("#provenance-status") == "No content credentials in this video"
    assert page.locator("#provenance-fields").is_hidden()
