"""Content sniffing: what the first bytes say a file is, whatever its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.services.intake.sniff import describe_non_video, sniff_file
from tests.media import face_video


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"GIF89a\x10\x00", "GIF"),
        (b"\x89PNG\r\n\x1a\n\x00", "PNG"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WebP"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "WAV"),
        (b"PK\x03\x04\x14\x00", "ZIP"),
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"%PDF-1.4\n", "PDF"),
        (b"\x7fELF\x02\x01", "program"),
        (b"ID3\x04\x00", "MP3"),
        (b"#EXTM3U\n#EXTINF:10,\nhttp://x/seg.ts\n", "playlist"),
        (b"\xef\xbb\xbf  #EXTM3U\n", "playlist"),  # BOM and blanks first
        (b"ffconcat version 1.0\nfile a.mp4\n", "concat"),
        (b"<?xml version='1.0'?><MPD>", "XML"),
        (b"<!DOCTYPE html><html>", "HTML"),
        (b"<HTML><body>", "HTML"),
        (b'{"url": "x"}', "JSON"),
        (b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n", "SDP"),
        ("Vidéo: réunion du lundi\n".encode(), "text"),
        ("é".encode() * 300, "text"),  # a multi-byte character cut at the sample's end is still text
    ],
)
def test_non_videos_are_named(head: bytes, what: str) -> None:
    described = describe_non_video(head)
    assert described is not None and what.lower() in described.lower(), described


@pytest.mark.parametrize(
    "head",
    [
        b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00",  # mp4
        b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01",  # Matroska / WebM
        b"RIFF\x00\x00\x00\x00AVI LIST",  # AVI
        b"\x47\x40\x00\x10\x00",  # MPEG-TS
        b"YUV4MPEG2 W64 H64 F25:1\nFRAME\n\x00\x80\x00",  # raw video: judged by the probe, not here
        b"",
    ],
)
def test_video_containers_pass(head: bytes) -> None:
    assert describe_non_video(head) is None


def test_sniff_file_reads_the_head_only(tmp_path: Path) -> None:
    video = tmp_path / "v.txt"  # the extension does not matter
    face_video(video.with_suffix(".mp4"), width=64, height=64, seconds=0.2)
    video.write_bytes(video.with_suffix(".mp4").read_bytes())
    assert sniff_file(video) is None
    fake = tmp_path / "v.mp4"
    fake.write_bytes(b"#EXTM3U\n" + b"#EXTINF:1,\nhttp://169.254.169.254/x.ts\n" * 10_000)
    assert sniff_file(fake) == "not a video: the file is a playlist (.m3u8/.m3u); send the video file itself"
