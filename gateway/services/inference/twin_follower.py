"""Keep the Grad-CAM twin and the reported model in step with the classifier Triton serves.

`make export --checkpoint PATH` rewrites `temporal_classifier/1/` (model.onnx, metadata.json); Triton in poll mode
reloads it. The follower notices metadata.json's new checkpoint digest, loads that checkpoint (its path is in the
metadata; the digest must match), builds a new Grad-CAM engine off the event loop and swaps it in, so the heatmaps
keep explaining the model that made the verdict. Requests in flight finish with the engine they started with.
A re-export of the same checkpoint at another precision (`--precision fp32`, or INT8 passing its gate) keeps the twin
and updates only the reported precision and its reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepfake_core.checkpoint import checkpoint_digest
from gateway.core.settings import Settings
from gateway.services.inference.gradcam import GradCamEngine
from gateway.services.prediction.model_info import ModelInfo, served_metadata
from gateway.services.prediction.pipeline import Pipeline

log = logging.getLogger("gateway.twin")

Loader = Callable[[Path | None], tuple[GradCamEngine, dict[str, Any]]]


def served_digest(metadata_path: Path) -> tuple[str | None, Path | None] | None:
    """(checkpoint digest or None for the untrained model, checkpoint path) from metadata.json; None if unreadable."""
    try:
        meta = json.loads(metadata_path.read_text())
    except (OSError, ValueError):
        return None
    path = meta.get("checkpoint_path")
    return meta.get("checkpoint_sha256"), Path(path) if path else None


class TwinFollower:
    """Polls the served classifier's metadata.json and reloads the twin when its checkpoint changes."""

    def __init__(self, settings: Settings, pipeline: Pipeline, load: Loader) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.load = load
        self.metadata_path = settings.model_metadata
        start = settings.checkpoint if settings.checkpoint and settings.checkpoint.is_file() else None
        self.current: str | None = checkpoint_digest(start) if start else None

    async def run(self) -> None:
        """Check every `twin_reload_interval_s` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.settings.twin_reload_interval_s)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - a failed reload keeps the current twin; the next check retries
                log.exception("reloading the Grad-CAM twin failed")

    async def check(self) -> bool:
        """Reload when the served checkpoint differs from the twin's; True when it did."""
        if self.metadata_path is None:
            return False
        served = served_digest(self.metadata_path)
        if served is None:
            return False
        if served[0] == self.current:
            self._follow_precision()
            return False
        digest, path = served
        if digest is not None and (path is None or not path.is_file() or checkpoint_digest(path) != digest):
            log.warning("Triton serves checkpoint %s, which the gateway cannot find (%s): twin kept", digest, path)
            return False
        engine, twin_metadata = await asyncio.to_thread(self.load, path if digest else None)
        model = ModelInfo.resolve(self.metadata_path, twin_metadata)
        self.pipeline.gradcam, self.pipeline.model = engine, model
        self.current = digest
        log.info("Grad-CAM twin follows the served classifier: %s (threshold %s)", model.version, model.threshold)
        return True

    def _follow_precision(self) -> None:
        """Same checkpoint, maybe another served precision: report what metadata.json now says."""
        model = self.pipeline.model
        now = model.with_precision_of(served_metadata(self.metadata_path))
        if now != model:
            self.pipeline.model = now
            log.info("the served classifier's precision is now %s (%s)", now.precision, now.precision_reason)
