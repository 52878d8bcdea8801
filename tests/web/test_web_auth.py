"""The page against a gateway that needs API keys: the key field, sent as X-API-Key, kept for the tab's session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.keys import create
from tests.gateway.conftest import GatewayServer, VideoServer, gateway_settings
from tests.web.test_web_errors import error_shown, submit_url
from triton_runtime.process import TritonProcess

pytestmark = pytest.mark.web


@pytest.fixture
def keyed_gateway(triton: TritonProcess, tmp_path: Path) -> Iterator[GatewayServer]:
    settings = gateway_settings(tmp_path / "keyed", triton.grpc_url, auth="keys")
    with GatewayServer(settings) as server:
        yield server


def test_the_key_field_unlocks_the_api(
    page: Any, keyed_gateway: GatewayServer, web_videos: VideoServer, screenshot: Any
) -> None:
    key = create(keyed_gateway.settings.api_keys_path, "analyst", 0)
    page.goto(keyed_gateway.url + "/")
    page.wait_for_function("() => document.getElementById('api-key-box').open")  # /info said 401: the field opens
    assert page.is_hidden("#service-info")

    submit_url(page, web_videos.url("face.mp4"))
    error = error_shown(page)
    assert (error["type"], error["title"]) == ("unauthorized", "An API key is needed")
    assert "HTTP 401" in error["detail"]
    screenshot(page, "error-unauthorized")

    page.fill("#api-key", key)
    page.dispatch_event("#api-key", "change")
    page.locator("#service-info").wait_for(state="visible")  # /info answered with the key
    submit_url(page, web_videos.url("face.mp4"))
    page.locator("#result").wait_for(state="visible", timeout=120_000)
    assert page.inner_text("#verdict")

    page.reload()  # the same tab: the key is still there, the page works without typing it again
    page.locator("#service-info").wait_for(state="visible")
    assert page.input_value("#api-key") == key
    assert page.get_attribute("#api-key", "type") == "password"
