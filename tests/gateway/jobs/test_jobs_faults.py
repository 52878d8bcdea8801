"""Jobs under faults: Triton stopped during a batch, Cloudinary failing. Real Triton, real gateways."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.cloudinary_server import FakeCloudinary
from tests.gateway.conftest import FAST, GatewayFactory, VideoServer, tmp_files
from tests.gateway.jobs.jobs_helpers import read_events, submit, wait_job
from triton_runtime.process import TritonProcess
from triton_runtime.server import ServerOptions


def test_triton_stopped_during_a_batch(
    make_gateway: GatewayFactory, video_server: VideoServer, model_repository: Path, tmp_path: Path
) -> None:
    """A second Triton just for this test, stopped once the batch's first job is done: every other job ends
    (done before the stop, or failed with Triton's error after its retries); none stays running or queued, none
    is lost. With Triton back, the same video is analysed."""
    own = TritonProcess.on_free_ports(tmp_path / "triton-jobs.log", ServerOptions(model_repository=model_repository))
    own.start()
    try:
        gw = make_gateway(triton_grpc_url=own.grpc_url, job_max_attempts=2, job_retry_backoff_s=0.2)
        with gw.client() as c:
            ids = submit(c, {"urls": [video_server.url("slow/1/face.mp4")] * 4, **FAST})
            assert wait_job(c, ids[0])["status"] == "done"
            own.stop()
            jobs = [wait_job(c, i) for i in ids[1:]]
            failed = [j for j in jobs if j["status"] == "failed"]
            assert failed, "the stop came after the whole batch: nothing was tested"
            for job in failed:
                # Unreachable (503); or, for a call in flight when Triton shut down, its error (502)
                error = job["error"]
                assert (error["type"], error["status_code"]) in {("triton_unavailable", 503), ("upstream_error", 502)}
                assert "Triton" in error["message"], error
                assert job["attempts"] == 2 and job["result"] is None  # retried once, then failed
            assert all(j["status"] == "done" for j in jobs if j not in failed)
            events = read_events(c, failed[-1]["id"])
            metrics = c.get("/metrics").text
            assert f'gateway_jobs_total{{outcome="failed"}} {float(len(failed))}' in metrics
            assert 'gateway_jobs_total{outcome="retried"}' in metrics
            last = events[-1][1]
            assert last["status"] == "failed" and last["error"]["message"] == failed[-1]["error"]["message"]
            own.start()  # same ports
            deadline = time.monotonic() + 60
            while c.get("/api/v1/health").status_code != 200:  # the gRPC channel reconnects with its own backoff
                assert time.monotonic() < deadline, "the gateway did not reconnect to the restarted Triton"
                time.sleep(0.5)
            (again,) = submit(c, {"url": video_server.url("face.mp4"), **FAST})
            job = wait_job(c, again)
            assert job["status"] == "done" and job["result"]["predicted_class"] in ("REAL", "FAKE"), job
        assert tmp_files(gw) == []
    finally:
        own.stop()


@pytest.fixture
def fake() -> Iterator[FakeCloudinary]:
    with FakeCloudinary("test-key", "test-secret-value", "demo") as server:
        yield server


def test_cloudinary_failing_keeps_the_verdict(
    make_gateway: GatewayFactory, fake: FakeCloudinary, video_server: VideoServer
) -> None:
    gw = make_gateway(
        storage="cloudinary", cloudinary_url=fake.cloudinary_url, cloudinary_backoff_s=0.05, cloudinary_retries=2
    )
    fake.fail_next(100, status=500)
    with gw.client() as c:
        (job_id,) = submit(c, {"url": video_server.url("face.mp4"), **FAST})
        job = wait_job(c, job_id)
        assert job["status"] == "done" and job["attempts"] == 1, job  # the verdict is the job's result
        result = job["result"]
        assert result["predicted_class"] in ("REAL", "FAKE") and result["output_url"] is None
        assert [e["stage"] for e in result["errors"]] == ["upload"] and result["errors"][0]["type"] == "storage_failed"
        assert "test-secret-value" not in str(job)
        assert len(fake.requests) == 2 and fake.uploads == []
        fake.reset()  # Cloudinary is back: the next job's video is stored
        (later,) = submit(c, {"url": video_server.url("face.mp4"), **FAST})
        stored = wait_job(c, later)["result"]
        assert stored["output_url"] == fake.uploads[0].response["secure_url"] and stored["errors"] == []
    assert tmp_files(gw) == []
