"""Receiving a multipart upload: the file part streamed to a temp file with a size limit, the other fields kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from gateway.core.errors import (
    InvalidRequest,
    TooLarge,
    UnsupportedVideo,
)
from gateway.services.intake.temp_files import LimitedWriter, new_temp_path


@dataclass
class Uploaded:
    """A received upload: the file's temp path and size, its name, and the other (small) form fields."""

    path: Path
    size: int
    filename: str | None
    fields: dict[str, str]


class _MultipartSink:
    """python-multipart callbacks: the ``file`` part goes to a counted writer, small fields to memory."""

    MAX_FIELD_BYTES = 1024
    MAX_FIELDS = 16

    def __init__(self, writer: LimitedWriter, file_field: str) -> None:
        self.writer = writer
        self.file_field = file_field
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_seen = False
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._name = None
        self._is_file = False
        self._value = bytearray()

    def _header_end(self) -> None:
        self._headers[self._header_field.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise InvalidRequest("a multipart part has no name")
        self._name = name.decode("utf-8", "replace")
        if self._name == self.file_field:
            if self.file_seen:
                raise InvalidRequest(f"send one {self.file_field!r} part only")
            self.file_seen = True
            self._is_file = True
            raw = options.get(b"filename")
            self.filename = raw.decode("utf-8", "replace") if raw is not None else None
        elif b"filename" in options:
            raise InvalidRequest(f"unexpected file part {self._name!r}: send the video in the {self.file_field!r} part")
        elif len(self.fields) >= self.MAX_FIELDS:
            raise InvalidRequest("too many form fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.writer.add(data[start:end])
            return
        self._value.extend(data[start:end])
        if len(self._value) > self.MAX_FIELD_BYTES:
            raise InvalidRequest(f"form field {self._name!r} is too long")

    def _part_end(self) -> None:
        if self._name is not None and not self._is_file:
            self.fields[self._name] = self._value.decode("utf-8", "replace")


async def receive_upload(
    chunks: AsyncIterator[bytes],
    content_type: str,
    *,
    tmp_dir: Path,
    max_bytes: int,
    prefix: str = "upload",
    file_field: str = "file",
) -> Uploaded:
    """Stream a multipart/form-data body to a temp file under ``tmp_dir`` with a byte limit.

    The caller removes ``Uploaded.path`` (wrap it in ``removing``); on error the file is removed here.
    """
    mime, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise InvalidRequest("send the video as multipart/form-data with a 'file' part")
    path = new_temp_path(tmp_dir, prefix, ".video")
    try:
        with path.open("wb") as f:
            writer = LimitedWriter(f, max_bytes, "upload")
            sink = _MultipartSink(writer, file_field)
            parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
            try:
                async for chunk in chunks:
                    parser.write(chunk)
                    if writer.should_flush:
                        await writer.flush()
                parser.finalize()
            except FormParserError as exc:
                raise InvalidRequest(f"malformed multipart body: {exc}") from exc
            await writer.flush()
        if not sink.file_seen:
            raise InvalidRequest(f"the multipart body has no {file_field!r} part")
        if writer.size == 0:
            raise UnsupportedVideo("the uploaded file is empty (0 bytes)")
        return Uploaded(path, writer.size, sink.filename, sink.fields)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def check_declared_size(content_length: str | None, limit: int, *, slack: int) -> None:
    """Refuse (413) an upload whose Content-Length is over ``limit`` plus ``slack`` (the multipart framing) before
    anything is read."""
    declared = content_length or ""
    if declared.isdigit() and int(declared) > limit + slack:
        raise TooLarge(f"the upload is {int(declared)} bytes, over the limit of {limit} bytes")


async def capped(chunks: AsyncIterator[bytes], cap: int, limit: int) -> AsyncIterator[bytes]:
    """The body, refused (413) once it passes ``cap`` bytes in all, with or without a Content-Length: the file part
    has its own limit, this one also bounds what the multipart parser skips (anything after the last boundary)."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > cap:
            raise TooLarge(f"the upload is larger than the limit of {limit} bytes")
        yield chunk
