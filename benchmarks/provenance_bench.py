"""How long reading a video's content credentials takes, on the 10 s 1280x720 benchmark clip unsigned
and signed (a throwaway test chain, trusted), through the gateway's ``ProvenanceReader`` (worker processes, warm).

``python -m benchmarks.provenance_bench [--runs N]``: p50 / p95 / max per clip, in milliseconds, and as a share of
the Triton verdict's p50 quoted in docs/performance.md. The read runs beside inference, so this is CPU the
verdict shares, not time added to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.triton_bench import bench_clip
from gateway.services.provenance.service import ProvenanceReader


async def _measure(reader: ProvenanceReader, path: Path, runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        summary, error = await reader.read(path)
        times.append(time.perf_counter() - start)
        assert error is None, error
    ms = np.asarray(times) * 1000
    return {
        "p50_ms": round(float(statistics.median(ms)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "max_ms": round(float(ms.max()), 3),
        "present": bool(summary["present"]),
        "trusted": bool(summary["trusted"]),
    }


async def _run(runs: int) -> dict[str, dict[str, float]]:
    from tests.c2pa_media import make_chain, sign_video

    clip = bench_clip()
    with tempfile.TemporaryDirectory(prefix="provenance-bench-") as tmp:
        d = Path(tmp)
        chain = make_chain()
        (d / "anchors.pem").write_bytes(chain.ca_pem)
        signed = sign_video(clip, d / "signed.mp4", chain, source_type="trainedAlgorithmicMedia")
        reader = ProvenanceReader(
            workers=1, timeout_s=30.0, max_bytes=10**9, memory_mb=1024, trust_anchors=d / "anchors.pem"
        )
        await reader.start()
        try:
            return {
                f"unsigned ({clip.stat().st_size / 1e6:.1f} MB)": await _measure(reader, clip, runs),
                f"signed ({signed.stat().st_size / 1e6:.1f} MB)": await _measure(reader, signed, runs),
            }
        finally:
            await reader.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(_run(args.runs)), indent=2))


if __name__ == "__main__":
    main()
