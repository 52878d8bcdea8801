"""Prometheus metrics of one gateway app (own registry, so several apps can live in one process) and the
middleware that gives every request an id and counts it.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.services.prediction.stages import Stage

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Metrics:
    """The gateway's metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("gateway_in_flight_requests", "HTTP requests being served", registry=self.registry)
        self.predictions_in_flight = Gauge(
            "gateway_predictions_in_flight", "predictions holding a slot", registry=self.registry
        )
        self.stage = Histogram(
            "gateway_stage_duration_seconds",
            "time per predict stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.verdicts = Counter(
            "gateway_verdicts", "predictions by predicted class", ["predicted_class"], registry=self.registry
        )
        self.errors = Counter("gateway_errors", "error answers by type", ["type"], registry=self.registry)
        self.jobs = Counter(
            "gateway_jobs",
            "jobs run by this replica, by outcome (done, failed, retried)",
            ["outcome"],
            registry=self.registry,
        )
        self.storage_failures = Counter(
            "gateway_storage_failures", "overlay videos that could not be stored", registry=self.registry
        )

    def observe_stages(self, timings: dict[Stage, float]) -> None:
        for stage, seconds in timings.items():
            self.stage.labels(stage.value).observe(seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


def new_request_id(candidate: str | None = None) -> str:
    """The client's X-Request-ID when it is short and plain, else a fresh random id."""
    if candidate and _REQUEST_ID.match(candidate):
        return candidate
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Pure ASGI middleware: request id (``request.state.request_id`` and ``X-Request-ID``) and request metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"x-request-id")
        request_id = new_request_id(raw.decode("latin-1") if raw else None)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                response_headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in response_headers):
                    response_headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = response_headers
            await send(message)

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            route = _route_label(scope)
            self.metrics.requests.labels(route, scope.get("method", ""), str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            error_type = state.get("error_type")
            if error_type:
                self.metrics.errors.labels(error_type).inc()


def _route_label(scope: Scope) -> str:
    """The matched route's path template (bounded label values); 'unmatched' otherwise."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
