"""The credentials reader process: ``python -m gateway.services.provenance.worker``.

A fresh interpreter that imports only the standard library and the C2PA bindings (never the gateway's torch or
FastAPI). Protocol, one JSON object per line: the first line on stdin is the configuration (``settings``: the c2pa
settings JSON, ``memory_bytes``: the address-space cap); the worker answers ``{"ready": true}``, then one summary
line per ``{"path": ...}`` line. Anything the native library prints goes to stderr, never into the protocol.
"""

from __future__ import annotations

import json
import os
import sys

from gateway.services.provenance import read


def main() -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # fd 1 (what native code writes to) is stderr from here on
    config = json.loads(sys.stdin.readline())
    read.init_worker(config["settings"], int(config["memory_bytes"]))
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        path = json.loads(line)["path"]
        try:
            summary = read.read_summary(path)
        except MemoryError:
            summary = {**read.absent(), "present": True, "error": "out of memory while reading the manifest store"}
        except OSError as exc:
            summary = {**read.absent(), "error": f"cannot read the file: {exc.strerror}"}
        except Exception as exc:  # a manifest whose JSON has unexpected shapes: reported, the worker lives on
            summary = {**read.absent(), "present": True, "error": f"unexpected manifest content ({type(exc).__name__})"}
        protocol.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
