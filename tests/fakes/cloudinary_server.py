"""A local server that speaks Cloudinary's Upload API, for pointing the real `cloudinary` SDK at in tests.

What it implements, as Cloudinary does (and as the SDK 1.46 sends it, checked on the wire):

- `POST /v1_1/{cloud_name}/{resource_type}/upload`, `multipart/form-data`: the params as form fields (lists as
  `key[]`), the bytes in a `file` part (the SDK names it after the local path unless `filename=` is given).
- Signed requests: `api_key`, `timestamp` and `signature` are required; the signature is the SHA-1 hex of the
  params sorted as `k=v` and joined by `&` (signature version 2: `&` inside a pair escaped as `%26`; lists joined
  by `,`; empty values left out), excluding `file`, `api_key`, `resource_type`, `cloud_name` and `signature`, with
  the API secret appended. It is recomputed twice, independently and with `cloudinary.utils.api_sign_request`.
  A wrong one gets 401 `{"error": {"message": "Invalid Signature ..."}}`; a timestamp over an hour off gets 400.
- Chunked uploads (`upload_large`): every part carries `X-Unique-Upload-Id` and `Content-Range: bytes a-b/total`;
  the first part must come first, every part but the last must be at least `chunk_min_bytes` (5 MiB by default,
  Cloudinary's rule), the last completes the asset once the parts cover the file. Non-final parts are answered
  `{"done": false, "bytes": ..., "public_id": ..., ...}` (the SDK copies `public_id` from each reply into the next
  part); the final part gets the full upload result.
- The result: `public_id` (`folder/` + `public_id`), `version`, `secure_url`
  (`https://res.cloudinary.com/<cloud>/video/upload/v<version>/<public_id>.mp4`), `url`, `bytes`, `format`,
  `resource_type`, `etag`, ... and, for decodable videos, `duration`, `width`, `height`, `frame_rate`.
- Errors are `{"error": {"message": ...}}` with the status the SDK maps to its exceptions (400 BadRequest,
  401 AuthorizationRequired, 404 NotFound, 500 GeneralError, ...), and an `X-Cld-Error` header.

Usage::

    with FakeCloudinary("key", "secret", "demo") as fake:
        cloudinary.uploader.upload(path, resource_type="video", api_key="key", api_secret="secret",
                                   cloud_name="demo", upload_prefix=fake.upload_prefix)
        assert fake.uploads[0].data == path.read_bytes()

`fail_next(n, status=500, skip=0)` makes the next n requests (after `skip`) fail; their bodies are read first, so
they are recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
import secrets
import socket
import string
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from types import TracebackType
from typing import Any

import cloudinary.utils
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CHUNK_MIN_BYTES = 5 * 1024 * 1024
"""Cloudinary's rule: every part of a chunked upload but the last must be at least 5 MB."""

UNSIGNED_PARAMS = frozenset({"file", "api_key", "resource_type", "cloud_name", "signature"})
"""Params left out of the string to sign."""

RESOURCE_TYPES = frozenset({"image", "video", "raw", "auto"})
MAX_CLOCK_SKEW_S = 3600
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")

Params = dict[str, str | list[str]]


def string_to_sign(params: Params) -> str:
    """Cloudinary's string to sign (signature version 2), written independently of the SDK."""
    pairs = []
    for key, value in params.items():
        if key in UNSIGNED_PARAMS:
            continue
        text = ",".join(value) if isinstance(value, list) else value
        if text:
            pairs.append(f"{key}={text}".replace("&", "%26"))
    return "&".join(sorted(pairs))


def expected_signature(params: Params, api_secret: str, algorithm: str = "sha1") -> str:
    """The hex digest Cloudinary expects in `signature` for these params."""
    return hashlib.new(algorithm, (string_to_sign(params) + api_secret).encode("utf-8")).hexdigest()


class CloudinaryApiError(Exception):
    """An error answered as Cloudinary does: the status and `{"error": {"message": ...}}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class RequestRecord:
    """One request the server received (recorded before it is answered; `status` set after)."""

    path: str
    cloud_name: str
    resource_type: str
    headers: dict[str, str]
    params: Params = field(default_factory=dict)
    file_name: str | None = None
    file_size: int = 0
    content_range: str | None = None
    upload_id: str | None = None
    status: int = 0
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def chunk_range(self) -> tuple[int, int, int] | None:
        """`(first, last, total)` from `Content-Range`, or None for a one-request upload."""
        match = _CONTENT_RANGE.fullmatch(self.content_range.strip()) if self.content_range else None
        return (int(match[1]), int(match[2]), int(match[3])) if match else None


@dataclass
class UploadRecord:
    """One completed asset: its bytes as reassembled by the server and the reply the client got."""

    public_id: str
    resource_type: str
    data: bytes
    params: Params
    file_name: str | None
    upload_id: str | None
    chunk_ranges: list[tuple[int, int, int]]
    response: dict[str, Any]


@dataclass
class _Failure:
    status: int
    message: str
    body: bytes | None


@dataclass
class _ChunkSession:
    total: int
    resource_type: str
    params: Params
    file_name: str | None
    public_id: str | None
    parts: dict[int, bytes] = field(default_factory=dict)
    ranges: list[tuple[int, int, int]] = field(default_factory=list)


class FakeCloudinary:
    """Cloudinary's Upload API on a free loopback port, served by uvicorn in a background thread."""

    def __init__(
        self,
        api_key: str = "fake-api-key",
        api_secret: str = "fake-api-secret",
        cloud_name: str = "fake-cloud",
        *,
        chunk_min_bytes: int = CHUNK_MIN_BYTES,
        validate_media: bool = False,
        signature_algorithm: str = "sha1",
        host: str = "127.0.0.1",
    ) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.cloud_name = cloud_name
        self.chunk_min_bytes = chunk_min_bytes
        self.validate_media = validate_media
        """When set, `video` uploads that PyAV cannot decode are refused (400), as Cloudinary does."""
        self.signature_algorithm = signature_algorithm
        self.host = host
        self.requests: list[RequestRecord] = []
        self.uploads: list[UploadRecord] = []
        self.assets: dict[tuple[str, str], UploadRecord] = {}
        self.signature_disagreements = 0
        """Requests where the independent signature and the SDK's `api_sign_request` differed (must stay 0)."""
        self._failures: deque[_Failure | None] = deque()
        self._sessions: dict[tuple[str, str], _ChunkSession] = {}
        self._lock = threading.Lock()
        self._last_version = 0
        self._port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.app = Starlette(
            routes=[Route("/v1_1/{cloud}/{resource_type}/upload", self._upload, methods=["POST"])],
            exception_handlers={404: self._not_found, 405: self._not_found},
        )

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> FakeCloudinary:
        """Bind a free port and serve until `stop()`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(64)
        self._socket = sock
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-cloudinary", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake Cloudinary server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> FakeCloudinary:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what tests use --------------------------------------------------------------------------------------

    @property
    def upload_prefix(self) -> str:
        """What the SDK's `upload_prefix` option (or the URL's `?upload_prefix=`) must be set to."""
        return f"http://{self.host}:{self._port}"

    @property
    def cloudinary_url(self) -> str:
        """`cloudinary://KEY:SECRET@CLOUD?upload_prefix=...` for this server."""
        return f"cloudinary://{self.api_key}:{self.api_secret}@{self.cloud_name}?upload_prefix={self.upload_prefix}"

    def fail_next(
        self, n: int = 1, status: int = 500, *, message: str | None = None, body: bytes | None = None, skip: int = 0
    ) -> None:
        """Answer the next `n` requests (after letting `skip` through) with `status` and a Cloudinary error JSON,
        or with the raw `body` (e.g. a proxy's HTML page)."""
        text = message or f"Server error {status} (injected by the fake)"
        with self._lock:
            self._failures.extend(None for _ in range(skip))
            self._failures.extend(_Failure(status, text, body) for _ in range(n))

    def reset(self) -> None:
        """Forget requests, uploads, assets, pending failures and chunk sessions."""
        with self._lock:
            self.requests.clear()
            self.uploads.clear()
            self.assets.clear()
            self._failures.clear()
            self._sessions.clear()
            self.signature_disagreements = 0

    # -- the protocol ----------------------------------------------------------------------------------------

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return _error_response(404, f"Resource not found - {request.url.path}")

    async def _upload(self, request: Request) -> Response:
        cloud = request.path_params["cloud"]
        resource_type = request.path_params["resource_type"]
        record = RequestRecord(
            path=request.url.path,
            cloud_name=cloud,
            resource_type=resource_type,
            headers={k.lower(): v for k, v in request.headers.items()},
            content_range=request.headers.get("content-range"),
            upload_id=request.headers.get("x-unique-upload-id"),
        )
        with self._lock:
            self.requests.append(record)
        try:
            # Read the whole body first: answering before would reset the client mid-send.
            params, data, file_name = await _read_form(request)
            record.params, record.file_name, record.file_size = params, file_name, len(data or b"")
            with self._lock:
                failure = self._failures.popleft() if self._failures else None
            if failure is not None:
                record.status = failure.status
                if failure.body is not None:
                    return Response(failure.body, failure.status, media_type="text/html")
                raise CloudinaryApiError(failure.status, failure.message)
            result = self._handle(record, params, data, file_name)
        except CloudinaryApiError as exc:
            record.status, record.response = exc.status, {"error": {"message": exc.message}}
            return _error_response(exc.status, exc.message)
        record.status, record.response = 200, result
        return JSONResponse(result, headers={"X-Request-Id": uuid.uuid4().hex})

    def _handle(
        self, record: RequestRecord, params: Params, data: bytes | None, file_name: str | None
    ) -> dict[str, Any]:
        if record.cloud_name != self.cloud_name:
            raise CloudinaryApiError(401, f"Invalid cloud_name {record.cloud_name}")
        if record.resource_type not in RESOURCE_TYPES:
            raise CloudinaryApiError(404, f"Invalid resource type {record.resource_type}")
        self._authenticate(params)
        if data is None:
            raise CloudinaryApiError(400, "Missing required parameter - file")
        if not data:
            raise CloudinaryApiError(400, "Empty file")
        resource_type = "video" if record.resource_type == "auto" else record.resource_type
        if record.content_range is None:
            if record.upload_id is not None:
                raise CloudinaryApiError(400, "X-Unique-Upload-Id without Content-Range")
            return self._finish(resource_type, params, data, file_name, None, [])
        return self._chunk(record, resource_type, params, data, file_name)

    def _authenticate(self, params: Params) -> None:
        api_key = params.get("api_key")
        if not api_key:
            raise CloudinaryApiError(401, "Must supply api_key")
        if api_key != self.api_key:
            raise CloudinaryApiError(401, f"Unknown API key {api_key}")
        timestamp = params.get("timestamp")
        if not isinstance(timestamp, str) or not timestamp.isdigit():
            raise CloudinaryApiError(400, "Missing required parameter - timestamp")
        if abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW_S:
            reported = datetime.fromtimestamp(int(timestamp), UTC).isoformat()
            raise CloudinaryApiError(400, f"Stale request - reported time is {reported} which is out of range")
        signature = params.get("signature")
        if not isinstance(signature, str) or not signature:
            raise CloudinaryApiError(401, "Missing required parameter - signature")
        ours = expected_signature(params, self.api_secret, self.signature_algorithm)
        to_sign = {k: v for k, v in params.items() if k not in UNSIGNED_PARAMS}
        sdk = cloudinary.utils.api_sign_request(to_sign, self.api_secret, self.signature_algorithm, 2)
        if ours != sdk:
            with self._lock:
                self.signature_disagreements += 1
            raise CloudinaryApiError(500, f"fake: independent signature {ours} != SDK's {sdk}")
        if not hmac.compare_digest(signature, ours):
            raise CloudinaryApiError(
                401, f"Invalid Signature {signature}. String to sign - '{string_to_sign(params)}'."
            )

    def _chunk(
        self, record: RequestRecord, resource_type: str, params: Params, data: bytes, file_name: str | None
    ) -> dict[str, Any]:
        if not record.upload_id:
            raise CloudinaryApiError(400, "Chunked upload without X-Unique-Upload-Id")
        span = record.chunk_range
        if span is None:
            raise CloudinaryApiError(400, f"Invalid Content-Range {record.content_range!r}")
        first, last, total = span
        if last < first or last >= total or last - first + 1 != len(data):
            raise CloudinaryApiError(400, f"Content-Range {record.content_range} does not match a {len(data)} B part")
        is_final = last + 1 == total
        if not is_final and len(data) < self.chunk_min_bytes:
            raise CloudinaryApiError(
                400, f"Chunk size {len(data)} is smaller than the minimum {self.chunk_min_bytes} for a non-final part"
            )
        key = (record.cloud_name, record.upload_id)
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                if first != 0:
                    raise CloudinaryApiError(400, "The first part of a chunked upload must be sent first")
                session = _ChunkSession(
                    total=total,
                    resource_type=resource_type,
                    params=params,
                    file_name=file_name,
                    public_id=_public_id(params, None) if params.get("public_id") else None,
                )
                self._sessions[key] = session
            if total != session.total or resource_type != session.resource_type:
                raise CloudinaryApiError(400, "Parts of one upload disagree on the total size or resource type")
            for start, chunk in session.parts.items():
                same = start == first and len(chunk) == len(data)
                if not same and first < start + len(chunk) and start < last + 1:
                    raise CloudinaryApiError(400, f"Part {record.content_range} overlaps an earlier part")
            session.parts[first] = data
            session.ranges.append(span)
            received = sum(len(chunk) for chunk in session.parts.values())
            if not is_final:
                reply: dict[str, Any] = {
                    "done": False,
                    "bytes": received,
                    "type": params.get("type") or "upload",
                    "resource_type": resource_type,
                }
                if session.public_id:
                    reply["public_id"] = session.public_id
                return reply
            position, pieces = 0, []
            for start in sorted(session.parts):
                if start != position:
                    raise CloudinaryApiError(400, f"Missing bytes {position}-{start - 1} of the chunked upload")
                pieces.append(session.parts[start])
                position += len(session.parts[start])
            if position != total:
                raise CloudinaryApiError(400, f"Chunked upload ended at byte {position} of {total}")
            del self._sessions[key]
        return self._finish(
            resource_type, session.params, b"".join(pieces), session.file_name, record.upload_id, session.ranges
        )

    def _finish(
        self,
        resource_type: str,
        params: Params,
        data: bytes,
        file_name: str | None,
        upload_id: str | None,
        ranges: list[tuple[int, int, int]],
    ) -> dict[str, Any]:
        public_id = _public_id(params, file_name)
        overwrite = params.get("overwrite", "1") not in ("0", "false")
        with self._lock:
            existing = self.assets.get((resource_type, public_id))
        if existing is not None and not overwrite:
            return {**existing.response, "existing": True}
        media = _probe_video(data) if resource_type == "video" else None
        if resource_type == "video" and media is None and self.validate_media:
            raise CloudinaryApiError(400, "Unsupported video format or file")
        suffix = PurePosixPath(file_name or "").suffix.lstrip(".").lower()
        fmt = suffix or ("mp4" if resource_type == "video" else "")
        with self._lock:
            self._last_version = version = max(int(time.time()), self._last_version + 1)
        delivery_type = params.get("type") or "upload"
        tail = public_id if resource_type == "raw" or not fmt else f"{public_id}.{fmt}"
        path = f"{self.cloud_name}/{resource_type}/{delivery_type}/v{version}/{tail}"
        folder = params.get("folder")
        result: dict[str, Any] = {
            "asset_id": uuid.uuid4().hex,
            "public_id": public_id,
            "version": version,
            "version_id": secrets.token_hex(16),
            "signature": hashlib.sha1(f"public_id={public_id}&version={version}".encode()).hexdigest(),
            "format": fmt,
            "resource_type": resource_type,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tags": [],
            "pages": 0,
            "bytes": len(data),
            "type": delivery_type,
            "etag": hashlib.md5(data).hexdigest(),
            "placeholder": False,
            "url": f"http://res.cloudinary.com/{path}",
            "secure_url": f"https://res.cloudinary.com/{path}",
            "asset_folder": folder if isinstance(folder, str) else "",
            "display_name": public_id.rsplit("/", 1)[-1],
            "original_filename": PurePosixPath(file_name).stem if file_name else "file",
            "api_key": self.api_key,
        }
        if upload_id is not None:
            result["done"] = True
        if media is not None:
            result.update(media)
        record = UploadRecord(public_id, resource_type, data, params, file_name, upload_id, list(ranges), result)
        with self._lock:
            self.uploads.append(record)
            self.assets[(resource_type, public_id)] = record
        return result


async def _read_form(request: Request) -> tuple[Params, bytes | None, str | None]:
    """The form's params (lists from `key[]`), the `file` part's bytes and its file name."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise CloudinaryApiError(400, f"Unsupported Content-Type {content_type!r}")
    params: Params = {}
    data: bytes | None = None
    file_name: str | None = None
    async with request.form(max_files=4, max_fields=500) as form:
        for key, value in form.multi_items():
            if key == "file":
                if isinstance(value, UploadFile):
                    data, file_name = await value.read(), value.filename
                elif re.match(r"^(https?|ftp|s3|gs)://|^data:", value):
                    raise CloudinaryApiError(400, "The fake does not fetch remote files or data URIs")
                else:
                    data = value.encode("utf-8")
            elif isinstance(value, UploadFile):
                raise CloudinaryApiError(400, f"Unexpected file in parameter {key}")
            elif key.endswith("[]"):
                listed = params.setdefault(key[:-2], [])
                if isinstance(listed, list):
                    listed.append(value)
            else:
                params[key] = value
    return params, data, file_name


def _public_id(params: Params, file_name: str | None) -> str:
    """`folder/public_id`, a name from the file (`use_filename`), or 20 random characters, as Cloudinary does."""
    given = params.get("public_id")
    folder = params.get("folder")
    if isinstance(given, str) and given:
        public_id = given
    elif params.get("use_filename") in ("1", "true") and file_name:
        public_id = PurePosixPath(file_name).stem
        if params.get("unique_filename") not in ("0", "false"):
            public_id += "_" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(6))
    else:
        public_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(20))
    if isinstance(folder, str) and folder.strip("/"):
        public_id = f"{folder.strip('/')}/{public_id}"
    return public_id


def _probe_video(data: bytes) -> dict[str, Any] | None:
    """Duration, size and rate as Cloudinary reports them, when PyAV can open the bytes as a video."""
    try:
        import av
    except ImportError:  # pragma: no cover - av is a core dependency
        return None
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            duration = container.duration / 1_000_000 if container.duration else None
            if duration is None and stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            rate = float(stream.average_rate) if stream.average_rate else None
            return {
                "width": stream.codec_context.width,
                "height": stream.codec_context.height,
                "duration": duration,
                "frame_rate": rate,
                "nb_frames": stream.frames or None,
                "video": {
                    "codec": stream.codec_context.name,
                    "pix_format": stream.codec_context.format.name if stream.codec_context.format else None,
                },
            }
    except Exception:
        return None


def _error_response(status: int, message: str) -> JSONResponse:
    header = message.encode("latin-1", "replace").decode("latin-1")[:500]
    return JSONResponse({"error": {"message": message}}, status_code=status, headers={"X-Cld-Error": header})
