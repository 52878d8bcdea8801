"""The gateway's one exception hierarchy and the one place that maps exceptions to JSON responses.

Every error answer has the shape ``{"error": {"type": ..., "message": ...}, "request_id": ...}`` (plus
``error.remote_status`` for failed downloads and ``error.details`` for validation errors).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("gateway")


class GatewayError(Exception):
    """Base of every error the gateway answers on purpose."""

    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The ``error`` object of the JSON answer."""
        return {"type": self.error_type, "message": self.message, **self.extra}


class InvalidRequest(GatewayError):
    """The request itself is malformed (fields, types, ranges, multipart)."""

    status_code = 422
    error_type = "invalid_request"


class UnsupportedVideo(GatewayError):
    """The bytes are not a video we can analyse (undecodable, no video stream, too long, ...)."""

    status_code = 422
    error_type = "unsupported_video"


class Unauthorized(GatewayError):
    """No API key, or one that is unknown, wrong or revoked. The message never repeats the key."""

    status_code = 401
    error_type = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="deepfake-gateway"'})


class UrlRefused(GatewayError):
    """The URL is not allowed: scheme, credentials, or an address the URL guard refuses."""

    status_code = 400
    error_type = "url_refused"


class DownloadFailed(GatewayError):
    """The remote server answered an error status or the connection failed."""

    status_code = 424
    error_type = "download_failed"

    def __init__(self, message: str, *, remote_status: int | None = None) -> None:
        super().__init__(message, remote_status=remote_status)
        self.remote_status = remote_status


class TooLarge(GatewayError):
    """The video is over the size limit."""

    status_code = 413
    error_type = "too_large"


class _RetryLater(GatewayError):
    """An error worth retrying: carries ``Retry-After``."""

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
        self.retry_after_s = retry_after_s


class Overloaded(_RetryLater):
    """Too many predictions queued (429) or no slot freed in time (503)."""

    status_code = 429
    error_type = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 5, status_code: int = 429) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.status_code = status_code


class RateLimited(_RetryLater):
    """The caller's rate limit (per API key, or per client address with open access) is used up."""

    status_code = 429
    error_type = "rate_limited"


class TritonUnavailable(_RetryLater):
    """Triton cannot be reached or is not ready."""

    status_code = 503
    error_type = "triton_unavailable"


class JobsUnavailable(_RetryLater):
    """The job store (SQLite file or Redis) cannot be reached."""

    status_code = 503
    error_type = "jobs_unavailable"


class NotFound(GatewayError):
    """No such resource (e.g. an unknown or expired job id)."""

    status_code = 404
    error_type = "not_found"


class UpstreamTimeout(GatewayError):
    """Triton or the remote server took longer than allowed."""

    status_code = 504
    error_type = "timeout"


class UpstreamFailure(GatewayError):
    """Triton (or another upstream) failed in an unexpected way."""

    status_code = 502
    error_type = "upstream_error"


INTERNAL_ERROR = {"type": "internal_error", "message": "internal error; see the gateway log"}


def error_body(exc: BaseException) -> dict[str, Any]:
    """The ``error`` object the API answers for ``exc``, with its ``status_code``: what a failed job or a batch
    entry holds (anything but a ``GatewayError`` is a 500 ``internal_error``)."""
    if isinstance(exc, GatewayError):
        return {**exc.body(), "status_code": exc.status_code}
    return {**INTERNAL_ERROR, "status_code": 500}


def request_id_of(request: Request) -> str | None:
    """The id the request-id middleware gave this request."""
    return getattr(request.state, "request_id", None)


def error_response(
    request: Request, status_code: int, error: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The JSON error answer (the one shape used everywhere)."""
    rid = request_id_of(request)
    all_headers = {**(headers or {}), **({"X-Request-ID": rid} if rid else {})}
    return JSONResponse({"error": error, "request_id": rid}, status_code=status_code, headers=all_headers)


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body",)) or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _jsonable_errors(errors: list[Any]) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors
    ]


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    request.state.error_type = exc.error_type
    if exc.status_code >= 500:
        log.warning("request %s: %s %s", request_id_of(request), exc.error_type, exc.message)
    return error_response(request, exc.status_code, exc.body(), exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    request.state.error_type = InvalidRequest.error_type
    body = {
        "type": InvalidRequest.error_type,
        "message": _validation_message(errors),
        "details": _jsonable_errors(errors),
    }
    return error_response(request, 422, body)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(request, exc.status_code, {"type": kind, "message": str(exc.detail)}, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("request %s failed unexpectedly", request_id_of(request), exc_info=exc)
    return error_response(request, 500, dict(INTERNAL_ERROR))


def register_exception_handlers(app: FastAPI) -> None:
    """Map every exception to the JSON error shape (called once by create_app)."""
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
