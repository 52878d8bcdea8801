"""The gateway's temp folder: leftovers of a killed gateway removed at the next start, never those of a live one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.services.intake.temp_files import LOCK_NAME, claim_tmp_dir

HOLD = """
import sys, time
from pathlib import Path
from gateway.services.intake.temp_files import claim_tmp_dir
lock = claim_tmp_dir(Path(sys.argv[1]))
(Path(sys.argv[1]) / "download-in-flight.video").write_bytes(b"x")
print("held" if lock.held else "not held", flush=True)
time.sleep(60)
"""


def test_leftovers_of_a_killed_gateway_are_removed_but_not_a_live_ones(tmp_path: Path) -> None:
    tmp_dir = tmp_path / "tmp"
    live = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout is not None and live.stdout.readline().strip() == "held"
        second = claim_tmp_dir(tmp_dir)  # a second gateway on the same folder while the first lives
        assert not second.held and second.removed == 0
        assert (tmp_dir / "download-in-flight.video").exists()
    finally:
        live.kill()  # kill -9: its file stays, its lock goes with it
        live.wait(10)
    (tmp_dir / "render-old").mkdir()
    (tmp_dir / "render-old" / "frame.bin").write_bytes(b"y")
    lock = claim_tmp_dir(tmp_dir)
    try:
        assert lock.held and lock.removed == 2
        assert [p.name for p in tmp_dir.iterdir()] == [LOCK_NAME]
    finally:
        lock.close()
