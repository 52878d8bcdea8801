"""Browser tests of the web page at ``/``: Debian's headless Chromium driven by Playwright (sync API) against a
real gateway (real uvicorn, real local Triton), with videos served by the loopback video server.

Chromium is the system one (``apt-get install chromium``, which ``make test`` does when root and it is missing:
scripts/system-deps.sh; ``WEB_TEST_CHROMIUM`` overrides the path): Playwright's own browser download is never used.
Without Chromium or the ``playwright`` package the tests skip, saying why.
Screenshots go to ``test-artifacts/web/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS
from tests.gateway.conftest import FPS, GatewayServer, VideoServer, gateway_settings
from triton_runtime.process import TritonProcess

SHOTS = ARTIFACTS / "web"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# The flags of the env notes: no sandbox (root), no GPU, and nothing that reaches for the network by itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "web: browser tests of the web page (headless Chromium + Playwright)")


def chromium_path() -> str | None:
    """The system Chromium, or None."""
    candidates = [os.environ.get("WEB_TEST_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (skips with the reason when Chromium or playwright is missing)."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "Chromium not found: install Debian's chromium package (apt-get install -y chromium; "
            "make test does it as root)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    with tempfile.TemporaryDirectory(prefix="web-tests-") as downloads, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS, downloads_path=downloads
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def web_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small generated clips: a face (1.6 s, 640x360) and no face (0.8 s)."""
    from tests.media import face_video, faceless_video

    d = tmp_path_factory.mktemp("web-media")
    face_video(d / "face.mp4", width=640, height=360, fps=FPS, seconds=1.6)
    faceless_video(d / "faceless.mp4", width=640, height=360, fps=FPS, seconds=0.8)
    return d


@pytest.fixture(scope="session")
def web_videos(web_media: Path) -> Iterator[VideoServer]:
    with VideoServer(web_media) as server:
        yield server


@pytest.fixture(scope="session")
def web_gateway(triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A gateway for the page (real Triton, local storage, loopback allowlisted, 8 frames by default)."""
    settings = gateway_settings(tmp_path_factory.mktemp("web-gateway"), triton.grpc_url)
    with GatewayServer(settings) as server:
        yield server


class PageErrors(list[str]):
    """Uncaught exceptions of the page's scripts."""


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(browser: Any, page_errors: PageErrors) -> Iterator[Any]:
    """A fresh desktop-sized page; fails the test on an uncaught script error."""
    context = browser.new_context(viewport=DESKTOP, device_scale_factor=1)
    p = context.new_page()
    p.set_default_timeout(60_000)
    p.on("pageerror", lambda exc: page_errors.append(str(exc)))
    yield p
    context.close()
    assert not page_errors, f"script errors on the page: {page_errors}"


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    """``screenshot(page, name)``: a full-page screenshot saved as test-artifacts/web/NAME.png."""

    def save(page: Any, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
