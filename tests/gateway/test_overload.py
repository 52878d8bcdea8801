"""Overload answers fast: a prediction that cannot get a slot within queue_timeout_s is 503 with Retry-After while
the slot holder is still running (the queue-full 429 is in test_errors)."""

from __future__ import annotations

from tests.gateway.conftest import FAST, GatewayFactory, VideoServer, assert_error, holding_a_slot


def test_no_slot_in_time_is_503_with_retry_after(make_gateway: GatewayFactory, video_server: VideoServer) -> None:
    busy = make_gateway(max_concurrent_predictions=1, max_queued_predictions=4, queue_timeout_s=0.5)
    with holding_a_slot(busy, video_server, 6) as c:
        r = c.post("/api/v1/predict", json={"url": video_server.url("face.mp4"), **FAST})
        assert "gateway_predictions_in_flight 1.0" in c.get("/metrics").text  # answered while the first still runs
        assert "in time" in assert_error(r, 503, "overloaded")["error"]["message"]
        assert int(r.headers["retry-after"]) > 0
