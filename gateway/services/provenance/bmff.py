"""A cheap look at an ISO BMFF file's (MP4/MOV) top-level boxes: is a C2PA manifest store box there?

Embedded C2PA manifests in BMFF live in a top-level ``uuid`` box with the C2PA UUID. Reading the top-level headers
costs a few seeks, so files without one skip the worker entirely.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Literal

C2PA_UUID = bytes.fromhex("d8fec3d61b0e483c92975828877ec481")
MAX_BOXES = 4096  # a real file has a handful of top-level boxes; past this the file is left to the reader

Scan = Literal["c2pa", "none", "unknown"]


def scan_top_level(path: Path) -> Scan:
    """``c2pa``: a BMFF file with a C2PA box; ``none``: a BMFF file without one; ``unknown``: not BMFF (other
    containers such as RIFF may carry manifests too) or a layout this scan does not follow."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        offset, count = 0, 0
        while offset + 8 <= size:
            count += 1
            if count > MAX_BOXES:
                return "unknown"
            f.seek(offset)
            header = f.read(8)
            length, kind = struct.unpack(">I4s", header)
            head = 8
            if length == 1:
                length = struct.unpack(">Q", f.read(8))[0]
                head = 16
            elif length == 0:
                length = size - offset
            if count == 1 and kind != b"ftyp":
                return "unknown"
            if length < head:
                return "unknown"
            if kind == b"uuid" and f.read(16) == C2PA_UUID:
                return "c2pa"
            offset += length
        return "none"
