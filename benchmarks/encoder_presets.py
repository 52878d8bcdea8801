"""`python -m benchmarks.encoder_presets`: the overlay encoder's libx264 preset, chosen by measurement.

Decodes the 10 s 1280x720 benchmark clip and encodes it again (``render.measure_floor``: the overlay's path without
the drawing) with each preset, and prints wall and CPU seconds (CPU time includes the encoder's threads, so it holds
up on a busy machine) and the file size: the gateway default is the preset that keeps a predict cheapest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.triton_bench import RESULTS, bench_clip
from gateway.core.settings import Settings
from gateway.services.overlay.render import OverlayEncoding, measure_floor

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "medium")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.encoder_presets", description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=list(PRESETS))
    p.add_argument("--crf", type=int, default=23)
    p.add_argument("--runs", type=int, default=3, help="best of N per preset")
    args = p.parse_args(argv)
    clip = bench_clip()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        default = OverlayEncoding.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
        measure_floor(clip, out, dataclasses.replace(default, crf=args.crf))  # warm caches and codec init
        for preset in args.presets:
            walls, cpus = [], []
            for _ in range(args.runs):
                cpu0, wall0 = _cpu_s(), time.perf_counter()
                measure_floor(clip, out, dataclasses.replace(default, preset=preset, crf=args.crf))
                walls.append(time.perf_counter() - wall0)
                cpus.append(_cpu_s() - cpu0)
            rows.append({"preset": preset, "wall_s": min(walls), "cpu_s": min(cpus), "bytes": out.stat().st_size})
    print(f"decode + encode of {clip.name} (720p output, crf {args.crf}), best of {args.runs}")
    print(f"{'preset':>10} {'wall s':>7} {'CPU s':>7} {'MB':>6}")
    for r in rows:
        print(f"{r['preset']:>10} {r['wall_s']:7.2f} {r['cpu_s']:7.2f} {r['bytes'] / 1e6:6.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench-encoder-presets.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
