"""What a file is, from its first bytes: refuse images, documents, archives, playlists and text before FFmpeg.

FFmpeg opens far more than videos: an animated GIF is a video to it, a playlist (``.m3u8``) or a concat list names
other files or URLs, and its probing guesses formats from text. The gateway accepts only what looks like a video
container, so these are refused here with a message that says what the file is, whatever its name or extension.
"""

from __future__ import annotations

import codecs
from pathlib import Path

SNIFF_BYTES = 512

# Prefix -> what the file is. Checked in order; every entry is at least 4 bytes or otherwise distinctive.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"PK\x05\x06", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x7fELF", "a program (ELF)"),
    (b"ID3", "an MP3 audio file"),
    (b"fLaC", "a FLAC audio file"),
    (b"OggS\x00\x02", "an Ogg file"),  # Ogg Theora videos exist but the models were never tested on them
)
_RIFF_KINDS = {b"WEBP": "a WebP image", b"WAVE": "a WAV audio file"}
# Text that FFmpeg would read as a list of other files or URLs, by its first line.
_TEXT_KINDS: tuple[tuple[str, str], ...] = (
    ("#extm3u", "a playlist (.m3u8/.m3u); send the video file itself"),
    ("ffconcat", "an FFmpeg concat list"),
    ("<?xml", "an XML document (a DASH manifest?)"),
    ("<!doctype", "an HTML page (does the URL need a login?)"),
    ("<html", "an HTML page (does the URL need a login?)"),
    ("{", "a JSON document"),
    ("[", "a JSON document"),
    ("v=0", "an SDP description"),
)


def _text_of(head: bytes) -> str | None:
    """The head as text (UTF-8, a BOM and a character cut at the end of the sample allowed), or None for binary."""
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        return None
    return text if text and all(ch.isprintable() or ch in "\t\r\n\f" for ch in text) else None


def describe_non_video(head: bytes) -> str | None:
    """What the file is when its first bytes show it is not a video; None when it may be one."""
    for prefix, what in _SIGNATURES:
        if head.startswith(prefix):
            return what
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_KINDS:
        return _RIFF_KINDS[head[8:12]]
    text = _text_of(head)
    if text is not None:
        first = text.lstrip().lower()
        for start, kind in _TEXT_KINDS:
            if first.startswith(start):
                return kind
        return "a text file"
    return None


def sniff_file(path: Path) -> str | None:
    """Why the file is refused (``not a video: the file is ...``), or None when it may be a video."""
    with path.open("rb") as f:
        what = describe_non_video(f.read(SNIFF_BYTES))
    return None if what is None else f"not a video: the file is {what}"
