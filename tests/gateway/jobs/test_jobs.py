"""Jobs with the default SQLite store, end to end: real uvicorn, the real Triton, the loopback video server."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from gateway.services.jobs.models import NewJob
from gateway.services.jobs.sqlite_store import SqliteJobStore
from tests.gateway.conftest import (
    FAST,
    GatewayFactory,
    GatewayServer,
    VideoServer,
    assert_error,
    holding_a_slot,
    tmp_files,
)
from tests.gateway.jobs.jobs_helpers import STATUS_ORDER, CallbackReceiver, read_events, submit, wait_job


def test_job_gives_the_same_result_as_predict(
    client: httpx.Client, gateway: GatewayServer, video_server: VideoServer
) -> None:
    url = video_server.url("face.mp4")
    r = client.post("/api/v1/jobs", json={"url": url, **FAST})
    assert r.status_code == 202, r.text
    (ref,) = r.json()["jobs"]
    assert r.headers["location"] == ref["href"] == f"/api/v1/jobs/{ref['id']}" and ref["url"] == url
    assert ref["status"] in ("queued", "downloading")
    job = wait_job(client, ref["id"])
    assert job["status"] == "done" and job["progress"] == 1.0 and job["attempts"] == 1, job
    assert job["error"] is None and job["finished_at"] >= job["created_at"]
    result = job["result"]
    sync = client.post("/api/v1/predict", json={"url": url, **FAST}).json()
    assert result["predicted_class"] == sync["predicted_class"] and result["frames_analyzed"] == 4
    assert result["probability_fake"] == pytest.approx(sync["probability_fake"], abs=1e-6)
    assert result["request_id"] == ref["id"] and result["errors"] == []
    video = client.get(result["output_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert tmp_files(gateway) == []


def test_batch_of_urls_and_their_events(client: httpx.Client, video_server: VideoServer) -> None:
    urls = [video_server.url("face.mp4"), video_server.url("faceless.mp4"), video_server.url("status/404")]
    ids = submit(client, {"urls": urls, **FAST})
    assert len(set(ids)) == 3
    events = read_events(client, ids[0])  # opened at once: follows the job from queued (or later) to done
    statuses = [data["status"] for name, data in events if name == "status"]
    assert statuses[-1] == "done" and len(statuses) >= 2, events
    positions = [STATUS_ORDER.index(s) for s in statuses]
    assert positions == sorted(positions), statuses  # never backwards
    assert {"analysing", "rendering"} <= set(statuses) or statuses[0] != "queued"
    done = [wait_job(client, i) for i in ids]
    assert done[0]["result"]["predicted_class"] in ("REAL", "FAKE")
    assert done[1]["result"]["predicted_class"] == "NO_FACE"
    failed = done[2]
    assert failed["status"] == "failed" and failed["result"] is None
    assert failed["error"]["type"] == "download_failed" and failed["error"]["remote_status"] == 404
    assert failed["error"]["status_code"] == 424 and failed["attempts"] == 1  # a 404 is not retried
    ended = read_events(client, ids[2])  # a finished job: its last state, then the stream ends
    assert [d["status"] for _, d in ended] == ["failed"]


def test_bad_job_requests(client: httpx.Client, video_server: VideoServer) -> None:
    assert_error(client.get("/api/v1/jobs/0123456789abcdef0123456789abcdef"), 404, "not_found")
    assert_error(client.get("/api/v1/jobs/nope/events"), 404, "not_found")
    url = video_server.url("face.mp4")
    assert_error(client.post("/api/v1/jobs", json={"url": url, "urls": [url]}), 422, "invalid_request")
    assert_error(client.post("/api/v1/jobs", json={"num_frames": 4}), 422, "invalid_request")
    assert_error(client.post("/api/v1/jobs", json={"urls": []}), 422, "invalid_request")
    too_many = assert_error(client.post("/api/v1/jobs", json={"urls": [url] * 101}), 422, "invalid_request")
    assert "at most 100" in too_many["error"]["message"]
    assert_error(client.post("/api/v1/jobs", json={"url": "file:///etc/passwd"}), 400, "url_refused")
    refused = client.post("/api/v1/jobs", json={"url": url, "callback_url": "http://user:pw@127.0.0.1/x"})
    assert_error(refused, 400, "url_refused")
    assert_error(client.post("/api/v1/jobs", content=b"{not json"), 422, "invalid_request")
    upload = client.post("/api/v1/jobs", files={"file": ("v.mp4", b"data")})
    assert "video URLs" in assert_error(upload, 422, "invalid_request")["error"]["message"]
    bad_key = client.post("/api/v1/jobs", json={"url": url}, headers={"Idempotency-Key": "x" * 201})
    assert_error(bad_key, 422, "invalid_request")


def test_idempotency_and_a_full_queue(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    """A gateway that only queues (no workers): the same key gives the same jobs; past max_queued_jobs, 429."""
    gw = make_gateway(job_workers=0, max_queued_jobs=3)
    body = {"urls": [video_server.url("face.mp4"), video_server.url("faceless.mp4")]}
    with gw.client() as c:
        first = c.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
        assert first.status_code == 202, first.text
        again = c.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
        assert again.status_code == 200 and again.json() == first.json()
        other = c.post(
            "/api/v1/jobs", json={"url": video_server.url("face.mp4")}, headers={"Idempotency-Key": "order-42"}
        )
        assert "another request body" in assert_error(other, 422, "invalid_request")["error"]["message"]
        assert c.post("/api/v1/jobs", json={"url": video_server.url("face.mp4")}).status_code == 202  # 3 queued
        full = c.post("/api/v1/jobs", json={"url": video_server.url("face.mp4")})
        assert_error(full, 429, "overloaded")
        assert int(full.headers["retry-after"]) > 0
        again = c.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})  # no new job: fine
        assert again.status_code == 200
        for ref in first.json()["jobs"]:
            assert c.get(ref["href"]).json()["status"] == "queued"


def test_callback_is_posted_and_retried(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    gw = make_gateway(callback_backoff_s=0.1)
    with CallbackReceiver() as hook, gw.client() as c:
        hook.fail_next = 1  # the first POST gets a 500: retried
        (job_id,) = submit(c, {"url": video_server.url("face.mp4"), **FAST, "callback_url": hook.url})
        (posted,) = hook.wait(1)
        assert hook.statuses == [500, 200]
        assert posted["id"] == job_id and posted["status"] == "done"
        assert posted["result"]["predicted_class"] in ("REAL", "FAKE") and posted["result"]["frames_analyzed"] == 4
        deadline = time.monotonic() + 10
        while (job := c.get(f"/api/v1/jobs/{job_id}").json())["callback"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert job["callback"] == {"status": "delivered", "attempts": 2, "http_status": 200, "error": None}
        # A callback to an address the URL guard refuses (not allowlisted): the job is done, the callback failed.
        (refused,) = submit(c, {"url": video_server.url("face.mp4"), **FAST, "callback_url": "http://10.1.2.3/hook"})
        wait_job(c, refused)
        deadline = time.monotonic() + 10
        while (job := c.get(f"/api/v1/jobs/{refused}").json())["callback"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert job["status"] == "done" and job["callback"]["status"] == "failed"
        assert "non-public address" in job["callback"]["error"] and job["callback"]["attempts"] == 1


def test_jobs_survive_a_restart(make_gateway: GatewayFactory, video_server: VideoServer, tmp_path: Path) -> None:
    """A gateway stopped mid-job gives the job back; a gateway that died leaves a running job, which the next one
    on the same data folder queues again (one more attempt) and runs."""
    data = tmp_path / "shared-data"
    gw = make_gateway(data_dir=data)
    with gw.client() as c:
        (slow,) = submit(c, {"url": video_server.url("slow/3/face.mp4"), **FAST})
        assert wait_job(c, slow, until=("downloading",))["attempts"] == 1
    gw.__exit__(None, None, None)  # a clean stop while the job downloads

    # A gateway that died mid-job: its worker holds a lease nobody will extend.
    async def die_holding_a_job() -> str:
        store = SqliteJobStore(data / "jobs.sqlite3")
        await store.open()
        job = NewJob(request={"url": video_server.url("faceless.mp4"), **FAST})
        await store.create([job], max_attempts=3, max_queued=100)
        # claim in order: the slow job (released, queued first) then this one
        claimed = [await store.claim("dead-worker", lease_s=3600), await store.claim("dead-worker", lease_s=3600)]
        assert [c.id for c in claimed if c] == [slow, job.id]
        await store.release(slow, "dead-worker")  # only the second stays held by the dead worker
        await store.close()
        return job.id

    import asyncio

    orphan = asyncio.run(die_holding_a_job())
    again = make_gateway(data_dir=data)
    with again.client() as c:
        resumed = wait_job(c, slow)
        assert resumed["status"] == "done" and resumed["attempts"] == 1, resumed  # a clean stop costs no attempt
        recovered = wait_job(c, orphan)
        assert recovered["status"] == "done" and recovered["attempts"] == 2, recovered
        assert recovered["result"]["predicted_class"] == "NO_FACE"
    assert tmp_files(again) == []


def test_retention_removes_old_jobs_and_their_videos(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    gw = make_gateway(job_result_ttl_s=2.0, retention_interval_s=0.2)
    with gw.client() as c:
        body = {"url": video_server.url("face.mp4"), **FAST}
        (job_id,) = submit(c, body, **{"Idempotency-Key": "kept-for-a-while"})
        job = wait_job(c, job_id)
        name = job["result"]["output_url"].rsplit("/", 1)[-1]
        assert (gw.settings.media_dir / name).is_file()
        deadline = time.monotonic() + 30
        while c.get(f"/api/v1/jobs/{job_id}").status_code == 200:
            assert time.monotonic() < deadline, "the job was not removed"
            time.sleep(0.2)
        assert_error(c.get(f"/api/v1/jobs/{job_id}"), 404, "not_found")
        assert not (gw.settings.media_dir / name).exists()
        assert c.get(job["result"]["output_url"]).status_code == 404
        # The key went with its job: the same request now makes a new one.
        (fresh,) = submit(c, body, **{"Idempotency-Key": "kept-for-a-while"})
        assert fresh != job_id


def test_predict_batch(client: httpx.Client, video_server: VideoServer) -> None:
    urls = [video_server.url("face.mp4"), video_server.url("status/500"), video_server.url("faceless.mp4")]
    r = client.post("/api/v1/predict/batch", json={"urls": urls, **FAST})
    assert r.status_code == 200, r.text
    items = r.json()["results"]
    assert [i["url"] for i in items] == urls and [i["status"] for i in items] == [200, 424, 200]
    assert items[0]["result"]["predicted_class"] in ("REAL", "FAKE") and items[0]["result"]["frames_analyzed"] == 4
    assert items[1]["error"]["type"] == "download_failed" and items[1]["result"] is None
    assert items[2]["result"]["predicted_class"] == "NO_FACE"
    ids = {i["result"]["request_id"] for i in items if i["result"]}
    assert len(ids) == 2  # each entry its own request id
    too_many = client.post("/api/v1/predict/batch", json={"urls": [urls[0]] * 9})
    assert "at most 8" in assert_error(too_many, 422, "invalid_request")["error"]["message"]
    assert_error(client.post("/api/v1/predict/batch", json={"urls": []}), 422, "invalid_request")


def test_jobs_share_the_prediction_slots(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    """With one slot held by a synchronous prediction, a job waits for it instead of adding a second pipeline."""
    gateway = make_gateway(max_concurrent_predictions=1, max_queued_predictions=4, queue_timeout_s=60)
    with holding_a_slot(gateway, video_server, 4) as c:
        [job_id] = submit(c, {"url": video_server.url("face.mp4"), **FAST})
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert c.get(f"/api/v1/jobs/{job_id}").json()["status"] in ("queued", "downloading")
            assert "gateway_predictions_in_flight 1.0" in c.get("/metrics").text
            time.sleep(0.2)
    with gateway.client() as c:
        assert wait_job(c, job_id)["status"] == "done"
