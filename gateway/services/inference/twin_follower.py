"""Keep the Grad-CAM twin and the reported model in step with the classifier Triton serves.

Triton is the one source of the served classifier's identity: the ``served.*`` parameters of temporal_classifier's
config (``python -m export`` writes them; Triton in poll mode reloads a re-export), read with ``get_model_config``
at start and on each check. When the served checkpoint digest differs from the twin's, the follower looks for that
checkpoint locally (the path the export recorded, then ``GATEWAY_CHECKPOINT``); found with the same digest, it builds
a new Grad-CAM engine off the event loop and swaps the ``ServedModel`` state, so the heatmaps keep explaining the
model that made the verdict. Not found (e.g. a gateway image with another baked checkpoint), it keeps the twin and
reports the mismatch (``/api/v1/health`` degraded, both digests; predictions skip the heatmap). Requests in flight
finish with the state they started with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepfake_core.checkpoint import checkpoint_digest
from deepfake_core.served_identity import ServedIdentity, local_path
from gateway.core.settings import Settings
from gateway.services.inference.gradcam import GradCamEngine
from gateway.services.inference.triton import TritonService
from gateway.services.prediction.model_info import ModelInfo
from gateway.services.prediction.served_model import ModelState, ServedModel

log = logging.getLogger("gateway.twin")

Loader = Callable[[Path | None], tuple[GradCamEngine, dict[str, Any]]]


class TwinFollower:
    """Asks Triton which classifier it serves and swaps the twin (or reports the mismatch) when it changes."""

    def __init__(self, settings: Settings, triton: TritonService, served: ServedModel, load: Loader) -> None:
        self.settings = settings
        self.triton = triton
        self.served = served
        self.load = load
        self._missing: str | None = None  # the served digest last found nowhere locally (logged once)
        self._digests: dict[tuple[Path, int, int], str] = {}  # (path, mtime, size) -> sha256: hash each file once

    async def run(self) -> None:
        """Check every `twin_reload_interval_s` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.settings.twin_reload_interval_s)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - a failed reload keeps the current twin; the next check retries
                log.exception("reloading the Grad-CAM twin failed")

    async def check(self) -> bool:
        """Ask Triton; reload the twin when it serves another checkpoint that is available here. True on a reload."""
        identity = await self.triton.served_identity()
        if identity is None:
            return False  # Triton unreachable (or no identity): what was known stands
        state = self.served.state
        if identity.checkpoint_sha256 == state.info.twin_sha256:
            if identity != state.info.served:
                self._update_info(state, identity)
            return False
        path = self._find(identity)
        if path is None and identity.checkpoint_sha256 is not None:
            if identity != state.info.served:
                self._update_info(state, identity)
            if self._missing != identity.checkpoint_sha256:
                self._missing = identity.checkpoint_sha256
                log.warning(
                    "Triton serves checkpoint %s (%s), which the gateway cannot find; the Grad-CAM twin stays %s: "
                    "no heatmaps until they match",
                    identity.checkpoint_sha256,
                    identity.checkpoint_path,
                    state.info.twin_sha256 or "untrained",
                )
            return False
        engine, twin_metadata = await asyncio.to_thread(self.load, path)
        info = ModelInfo.resolve(identity, twin_metadata, identity.checkpoint_sha256)
        self.served.swap(ModelState(gradcam=engine, info=info, twin_metadata=twin_metadata))
        self._missing = None
        log.info("Grad-CAM twin follows the served classifier: %s (threshold %s)", info.version, info.threshold)
        return True

    def _update_info(self, state: ModelState, identity: ServedIdentity) -> None:
        """Same twin, new answer from Triton (first answer, or a mismatch appearing or changing)."""
        info = ModelInfo.resolve(identity, state.twin_metadata, state.info.twin_sha256)
        self.served.swap(ModelState(gradcam=state.gradcam, info=info, twin_metadata=state.twin_metadata))
        if not info.twin_matches:
            log.warning(
                "Triton serves classifier %s (%s); the Grad-CAM twin is %s (%s)",
                info.version,
                info.served_sha256 or "untrained",
                info.twin_version,
                info.twin_sha256 or "untrained",
            )

    def _find(self, identity: ServedIdentity) -> Path | None:
        """A local checkpoint with the served digest (None also for the untrained model, which needs no file)."""
        if identity.checkpoint_sha256 is None:
            return None
        for candidate in (local_path(identity.checkpoint_path), self.settings.checkpoint):
            if candidate is not None and self._digest(candidate) == identity.checkpoint_sha256:
                return candidate
        return None

    def _digest(self, path: Path) -> str | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in self._digests:
            try:
                self._digests[key] = checkpoint_digest(path)
            except OSError:
                return None
        return self._digests[key]
