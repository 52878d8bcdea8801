"""The page with several people (issue 14), in a real browser through the real gateway and Triton: a two-person
clip whose smaller face is self-blended gets a FAKE verdict naming that person; the people list shows each person
with a thumbnail and verdict, and selecting one shows their scores in the chart. One face: no people list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import GatewayServer
from tests.people_media import TWO_PEOPLE, people_video
from tests.web.test_web_page import FRAMES, check_verdict, open_page, submit_and_wait

pytestmark = pytest.mark.web


@pytest.fixture(scope="module")
def two_people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("web-people") / "two-people.mp4"
    people_video(path, TWO_PEOPLE, seconds=1.6)
    return path


def test_two_people_the_smaller_altered_face_is_named(
    page: Any, web_gateway: GatewayServer, two_people: Path, screenshot: Any
) -> None:
    open_page(page, web_gateway)
    page.set_input_files("#video-file", str(two_people))
    page.fill("#num-frames", str(FRAMES))
    page.check("#heatmap")
    body = submit_and_wait(page, "/api/v1/predict/upload")
    check_verdict(page, body)
    faces = body["faces"]
    assert len(faces) == 2 and body["predicted_class"] == "FAKE"
    deciding = next(f for f in faces if f["deciding"])
    assert deciding["track_id"] == body["deciding_face"] and deciding["predicted_class"] == "FAKE"
    assert deciding["track_id"] != 0, "the altered face is the smaller one: not the most prominent track"

    page.locator("#people").wait_for(state="visible")
    people = page.locator("#people-list button.person")
    assert people.count() == 2
    labels = people.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    assert f"Person {deciding['track_id'] + 1}: likely manipulated" in labels[deciding["track_id"]]
    assert "decided the verdict" in labels[deciding["track_id"]]
    assert "decided the verdict" not in labels[1 - deciding["track_id"]]
    assert people.nth(deciding["track_id"]).get_attribute("aria-pressed") == "true"
    page.locator("#thumbs[data-ready='true']").wait_for(state="attached", timeout=30_000)
    assert page.locator("#people-list canvas[data-drawn='true']").count() == 2  # a thumbnail per person

    # Selecting the other person shows their frames in the chart.
    other = faces[1 - deciding["track_id"]]
    people.nth(other["track_id"]).click()
    assert people.nth(other["track_id"]).get_attribute("aria-pressed") == "true"
    assert f"Person {other['track_id'] + 1}" in page.inner_text("#chart-title")
    points = page.locator("#chart .pt")
    assert points.count() == len(other["frames"])
    marks = points.evaluate_all("els => els.map(e => Number(e.dataset.frameIndex))")
    assert marks == [f["frame_index"] for f in other["frames"]]
    page.evaluate("() => window.scrollTo(0, 0)")
    screenshot(page, "people-desktop")


def test_one_face_has_no_people_list(page: Any, web_gateway: GatewayServer, web_media: Path) -> None:
    open_page(page, web_gateway)
    page.set_input_files("#video-file", str(web_media / "face.mp4"))
    page.fill("#num-frames", str(FRAMES))
    page.uncheck("#heatmap")
    body = submit_and_wait(page, "/api/v1/predict/upload")
    assert len(body["faces"]) == 1 and body["deciding_face"] == 0
    assert page.locator("#people").is_hidden()
    assert page.inner_text("#chart-title").strip() == "Score of each analysed frame"
