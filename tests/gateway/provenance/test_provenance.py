"""Issue 17: content credentials (C2PA) read beside the verdict. Real signed clips (a throwaway CA made here,
``tests/c2pa_media.py``), the real reader in its worker processes, and the real gateway over HTTP with the real
Triton: URL, upload, batch and jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.services.provenance.bmff import scan_top_level
from gateway.services.provenance.policy import decide
from gateway.services.provenance.service import ProvenanceReader
from tests.c2pa_media import (
    GENERATOR,
    SIGNER_NAME,
    SIGNER_ORG,
    SigningChain,
    flip_media_byte,
    make_chain,
    sign_video,
    with_malformed_manifest,
)
from tests.gateway.conftest import FAST, FPS, GatewayFactory, GatewayServer, VideoServer, tmp_files
from tests.gateway.jobs.jobs_helpers import submit, wait_job

AI = "trainedAlgorithmicMedia"


@pytest.fixture(scope="module")
def chain() -> SigningChain:
    return make_chain()


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, chain: SigningChain) -> Path:
    """A folder of clips: unsigned, AI-generated (signed), camera (signed), tampered, malformed, and the CA PEM."""
    from tests.media import face_video

    d = tmp_path_factory.mktemp("c2pa-media")
    face_video(d / "plain.mp4", width=320, height=180, fps=FPS, seconds=1.0)
    sign_video(d / "plain.mp4", d / "ai.mp4", chain, source_type=AI, ingredients=1)
    sign_video(d / "plain.mp4", d / "camera.mp4", chain, source_type="digitalCapture")
    flip_media_byte(d / "ai.mp4", d / "tampered.mp4")
    with_malformed_manifest(d / "plain.mp4", d / "malformed.mp4")
    (d / "anchors.pem").write_bytes(chain.ca_pem)
    return d


def read(path: Path, **overrides: Any) -> tuple[dict[str, Any], str | None]:
    """One read through a fresh ``ProvenanceReader`` (real worker processes), closed afterwards."""
    options: dict[str, Any] = {"workers": 1, "timeout_s": 30.0, "max_bytes": 10**9, "memory_mb": 1024}
    options["trust_anchors"] = path.parent / "anchors.pem"
    options.update(overrides)

    async def run() -> tuple[dict[str, Any], str | None]:
        reader = ProvenanceReader(**options)
        try:
            return await reader.read(path)
        finally:
            await reader.aclose()

    return asyncio.run(run())


# --- the reader --------------------------------------------------------------------------------------------------


def test_trusted_ai_generated_clip(signed: Path) -> None:
    summary, error = read(signed / "ai.mp4")
    assert error is None
    assert summary["present"] and summary["valid"] and summary["trusted"] and summary["ai_generated"]
    assert summary["validation_state"] == "Trusted" and summary["validation_errors"] == []
    assert (summary["signer"], summary["issuer"]) == (SIGNER_NAME, SIGNER_ORG)
    assert summary["claim_generator"] == f"{GENERATOR} 1.0" and summary["created"] == "2026-11-30T12:00:00Z"
    assert summary["ingredients_count"] == 1
    assert summary["actions"][0]["action"] == "c2pa.created"
    assert summary["actions"][0]["digital_source_type"] == AI


def test_untrusted_signer_is_valid_not_trusted(signed: Path) -> None:
    """Without the test CA as an anchor the same clip is intact but its signer is not trusted."""
    summary, error = read(signed / "ai.mp4", trust_anchors=None)
    assert error is None and summary["present"] and summary["valid"] and summary["ai_generated"]
    assert summary["trusted"] is False and summary["validation_state"] == "Valid"
    assert "signingCredential.untrusted" in summary["validation_errors"]


def test_another_ca_is_not_trusted(signed: Path, tmp_path: Path) -> None:
    other = tmp_path / "anchors.pem"
    other.write_bytes(make_chain("Some Other CA").ca_pem)
    summary, _ = read(signed / "ai.mp4", trust_anchors=other)
    assert summary["valid"] and not summary["trusted"]


def test_camera_clip_is_not_ai_generated(signed: Path) -> None:
    summary, error = read(signed / "camera.mp4")
    assert error is None and summary["trusted"] and not summary["ai_generated"]
    assert summary["actions"][0]["digital_source_type"] == "digitalCapture"


def test_tampered_clip_is_invalid(signed: Path) -> None:
    summary, error = read(signed / "tampered.mp4")
    assert error is None and summary["present"]
    assert summary["valid"] is False and summary["trusted"] is False
    assert summary["validation_state"] == "Invalid"
    assert "assertion.bmffHash.mismatch" in summary["validation_errors"]


def test_no_manifest(signed: Path) -> None:
    assert scan_top_level(signed / "plain.mp4") == "none" and scan_top_level(signed / "ai.mp4") == "c2pa"
    summary, error = read(signed / "plain.mp4")
    assert error is None and summary["present"] is False and summary["valid"] is False


def test_malformed_manifest_box(signed: Path) -> None:
    assert scan_top_level(signed / "malformed.mp4") == "c2pa"
    summary, error = read(signed / "malformed.mp4")
    assert error and summary["present"] and summary["valid"] is False
    assert summary["validation_errors"] == ["gateway.unreadable"]


def test_bounds_size_time_and_memory(signed: Path) -> None:
    """Over the size bound: not read. A read that cannot finish in time, or a worker that cannot live within its
    memory cap: reported, and the next read works (the pool is replaced)."""
    summary, error = read(signed / "ai.mp4", max_bytes=1000)
    assert error and "limit" in error and summary["present"] and not summary["valid"]

    async def timeout_then_read() -> list[tuple[dict[str, Any], str | None]]:
        reader = ProvenanceReader(
            workers=1, timeout_s=1e-6, max_bytes=10**9, memory_mb=1024, trust_anchors=signed / "anchors.pem"
        )
        try:
            first = await reader.read(signed / "ai.mp4")  # the worker is killed
            reader.timeout_s = 30.0
            return [first, await reader.read(signed / "ai.mp4")]
        finally:
            await reader.aclose()

    (late, late_error), (again, again_error) = asyncio.run(timeout_then_read())
    assert late_error and "took over" in late_error and late["present"] and not late["valid"]
    assert again_error is None and again["trusted"]

    summary, error = read(signed / "ai.mp4", memory_mb=16)  # too small for the interpreter itself
    assert error and "crashed" in error and not summary["valid"]


def test_workers_are_small_fresh_interpreters(signed: Path) -> None:
    """The workers import the C2PA bindings, never the gateway's torch, whatever the parent's ``__main__``."""

    async def maps() -> str:
        reader = ProvenanceReader(workers=1, timeout_s=30.0, max_bytes=10**9, memory_mb=1024, trust_anchors=None)
        try:
            await reader.start()
            (worker,) = reader._idle
            return Path(f"/proc/{worker.process.pid}/maps").read_text()
        finally:
            await reader.aclose()

    loaded = asyncio.run(maps())
    assert "libc2pa_c" in loaded and "libtorch" not in loaded


@pytest.mark.parametrize(
    ("valid", "trusted", "ai", "override", "expected"),
    [
        (True, True, True, True, ("FAKE", None, "content_credentials")),
        (True, True, True, False, ("REAL", 71.5, "detector")),
        (True, False, True, True, ("REAL", 71.5, "detector")),
        (False, False, True, True, ("REAL", 71.5, "detector")),
        (True, True, False, True, ("REAL", 71.5, "detector")),
    ],
)
def test_policy(valid: bool, trusted: bool, ai: bool, override: bool, expected: tuple[str, float | None, str]) -> None:
    """The verdict is decided once: the credentials' class comes without a confidence (not the score's)."""
    verdict = decide("REAL", 71.5, {"valid": valid, "trusted": trusted, "ai_generated": ai}, override)
    assert (verdict.predicted_class, verdict.confidence, verdict.reason, verdict.detector_class) == (*expected, "REAL")


# --- through the gateway ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(signed: Path) -> Iterator[VideoServer]:
    with VideoServer(signed) as server:
        yield server


@pytest.fixture
def trusting(make_gateway: GatewayFactory, signed: Path) -> GatewayServer:
    """A gateway whose trust anchor is the test CA."""
    return make_gateway(c2pa_trust_anchors=signed / "anchors.pem")


def predict(client: httpx.Client, url: str) -> dict[str, Any]:
    r = client.post("/api/v1/predict", json={"url": url, **FAST})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def check_detector_kept(body: dict[str, Any], unsigned: dict[str, Any]) -> None:
    """The detector's verdict stands: same class and score as for the unsigned clip."""
    assert body["verdict_reason"] == "detector"
    assert body["predicted_class"] == body["detector_class"] == unsigned["predicted_class"]
    assert body["probability_fake"] == pytest.approx(unsigned["probability_fake"], abs=1e-6)
    assert body["confidence"] == pytest.approx(unsigned["confidence"], abs=1e-6)


def test_gateway_trusted_ai_clip_is_fake(trusting: GatewayServer, clips: VideoServer, signed: Path) -> None:
    """URL and upload: trusted AI credentials make the verdict FAKE; the detector's score is still reported;
    tampered and malformed ones keep the detector's verdict; an unsigned clip answers as before."""
    with trusting.client() as c:
        unsigned = predict(c, clips.url("plain.mp4"))
        assert unsigned["provenance"]["present"] is False and unsigned["verdict_reason"] == "detector"
        assert unsigned["predicted_class"] == unsigned["detector_class"] and unsigned["errors"] == []
        # The case the override exists for: the bundled weights call this clip REAL (probability below 0.5).
        assert unsigned["predicted_class"] == "REAL", "the detector must say REAL for this test to mean anything"

        body = predict(c, clips.url("ai.mp4"))
        p = body["provenance"]
        assert p["present"] and p["valid"] and p["trusted"] and p["ai_generated"]
        assert p["signer"] == SIGNER_NAME and p["claim_generator"] == f"{GENERATOR} 1.0"
        assert body["predicted_class"] == "FAKE" and body["verdict_reason"] == "content_credentials"
        assert body["detector_class"] == unsigned["predicted_class"] and body["confidence"] is None
        assert body["probability_fake"] == pytest.approx(unsigned["probability_fake"], abs=1e-6)
        assert body["errors"] == []

        data = (signed / "ai.mp4").read_bytes()
        r = c.post("/api/v1/predict/upload", files={"file": ("ai.mp4", data, "video/mp4")}, data={"num_frames": "4"})
        assert r.status_code == 200, r.text
        assert r.json()["verdict_reason"] == "content_credentials" and r.json()["predicted_class"] == "FAKE"

        data = (signed / "tampered.mp4").read_bytes()
        files = {"file": ("tampered.mp4", data, "video/mp4")}
        r = c.post("/api/v1/predict", files=files, data={"num_frames": "4", "heatmap": "false"})
        assert r.status_code == 200, r.text
        tampered = r.json()
        assert tampered["provenance"]["present"] and tampered["provenance"]["valid"] is False
        assert "assertion.bmffHash.mismatch" in tampered["provenance"]["validation_errors"]
        check_detector_kept(tampered, unsigned)

        malformed = predict(c, clips.url("malformed.mp4"))
        assert malformed["provenance"]["present"] and malformed["provenance"]["valid"] is False
        assert [e["stage"] for e in malformed["errors"]] == ["provenance"]
        check_detector_kept(malformed, unsigned)
        assert tmp_files(trusting) == []


def test_gateway_untrusted_or_off_keeps_the_detector(
    client: httpx.Client, make_gateway: GatewayFactory, clips: VideoServer, signed: Path
) -> None:
    """The session gateway trusts no anchor: the AI clip is shown (valid, untrusted) but the detector decides.
    With GATEWAY_C2PA_OVERRIDE=false a trusted one is only reported."""
    unsigned = predict(client, clips.url("plain.mp4"))
    body = predict(client, clips.url("ai.mp4"))
    assert body["provenance"]["valid"] and not body["provenance"]["trusted"] and body["provenance"]["ai_generated"]
    check_detector_kept(body, unsigned)

    off = make_gateway(c2pa_trust_anchors=signed / "anchors.pem", c2pa_override=False)
    with off.client() as c:
        body = predict(c, clips.url("ai.mp4"))
    assert body["provenance"]["trusted"] and body["provenance"]["ai_generated"]
    check_detector_kept(body, unsigned)


def test_batch_and_jobs_report_provenance(trusting: GatewayServer, clips: VideoServer) -> None:
    with trusting.client() as c:
        r = c.post("/api/v1/predict/batch", json={"urls": [clips.url("ai.mp4"), clips.url("plain.mp4")], **FAST})
        assert r.status_code == 200, r.text
        ai, plain = (item["result"] for item in r.json()["results"])
        assert ai["verdict_reason"] == "content_credentials" and ai["provenance"]["trusted"]
        assert plain["verdict_reason"] == "detector" and plain["provenance"]["present"] is False

        (job_id,) = submit(c, {"url": clips.url("ai.mp4"), **FAST})
        job = wait_job(c, job_id)
        assert job["status"] == "done", job
        assert job["result"]["predicted_class"] == "FAKE" and job["result"]["provenance"]["ai_generated"]
