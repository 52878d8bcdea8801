"""One prediction, stage by stage: probe -> Triton -> Grad-CAM -> overlay video -> storage -> response.

The video is already on disk (downloaded or uploaded; the caller removes it). Blocking work (probing, reading the
file, Grad-CAM, rendering) runs in worker threads so the event loop keeps serving. The rendered video is a temp
file removed at the end whatever happens (local storage keeps its own copy). If rendering or storing fails, the
verdict is still returned with ``output_url: null`` and an ``errors`` entry.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_core.decode import VideoError, VideoInfo, VideoLimits, VideoTooLargeError, probe_video
from deepfake_core.ensemble_contract import DetectorResult
from gateway.api.schemas import PredictResponse
from gateway.core.errors import GatewayError, TooLarge, UnsupportedVideo
from gateway.core.settings import Settings
from gateway.services.inference.triton import TritonService
from gateway.services.intake.sniff import sniff_file
from gateway.services.intake.temp_files import new_temp_path, removing
from gateway.services.metrics import Metrics
from gateway.services.overlay.prefetch import FramePrefetch
from gateway.services.overlay.render import OverlayEncoding, decode_format, render_overlay
from gateway.services.prediction.progress import ProgressTracker
from gateway.services.prediction.served_model import ModelState, ServedModel
from gateway.services.prediction.stages import Stage, StageClock
from gateway.services.provenance import policy as provenance_policy  # content credentials
from gateway.services.provenance.service import ProvenanceReader
from gateway.services.storage import Storage, StorageError

log = logging.getLogger("gateway.pipeline")


@dataclass
class PredictJob:
    """One prediction's input: the video file on disk and the resolved options."""

    source: Path
    size: int
    num_frames: int
    heatmap: bool
    request_id: str
    started: float  # time.perf_counter() when the request arrived
    clock: StageClock = field(default_factory=StageClock)  # the stage times, and who is told each stage
    # The stored video's id: random, never the (client-suppliable) request id, so nobody can overwrite or guess it.
    public_id: str = field(default_factory=lambda: secrets.token_hex(16))
    errors: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def with_defaults(
        cls,
        settings: Settings,
        *,
        source: Path,
        size: int,
        num_frames: int | None,
        heatmap: bool | None,
        request_id: str,
        started: float,
        clock: StageClock,
    ) -> PredictJob:
        """A job whose options the request left unset (None) take the gateway's defaults."""
        return cls(
            source=source,
            size=size,
            num_frames=num_frames or settings.num_frames,
            heatmap=settings.heatmap if heatmap is None else heatmap,
            request_id=request_id,
            started=started,
            clock=clock,
        )


class Pipeline:
    """Runs predictions with the long-lived services built in the lifespan."""

    def __init__(
        self,
        *,
        settings: Settings,
        triton: TritonService,
        served: ServedModel,
        storage: Storage,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.triton = triton
        self.served = served  # the Grad-CAM twin and the model info, swapped together by the twin follower
        self.storage = storage
        self.metrics = metrics
        # Checked here, before Triton: video_decode has its own limits (max_pixels, max_duration_s in its
        # config.pbtxt) and refuses with INVALID_ARG, but a bad file should not cost a trip to Triton.
        self.limits = VideoLimits(
            max_pixels=settings.max_pixels, max_duration_s=settings.max_duration_s, max_frames=settings.max_frames
        )
        self.progress = ProgressTracker()  # stage updates for the web page
        self.provenance = ProvenanceReader.from_settings(settings)  # C2PA, read beside inference

    async def run(self, job: PredictJob) -> PredictResponse:
        """The answer of one prediction: its verdict decided once (the detector's, then the credentials' policy)."""
        clock = job.clock
        model = self.served.state  # one model for the whole prediction, whatever the twin follower swaps meanwhile
        # stage events for GET /api/v1/progress/{id}, then done or failed
        with self.progress.track(job.request_id) as report, clock.listening(report):
            with clock.stage(Stage.PROBE):
                info = await asyncio.to_thread(self._probe, job.source)
            with self._prefetch(job, info) as prefetch:
                with clock.stage(Stage.INFERENCE):
                    credentials = self.provenance.read_beside(job.source)  # never raises, bounded in time
                    result = await self._infer(job)
                cams = await self._gradcam(job, result, model)
                provenance, verdict = await self._verdict(job, credentials, result)
                output_url = await self._render_and_store(
                    job, result, cams, verdict.predicted_class, info, model, prefetch
                )
            self.metrics.observe_stages(clock.timings)
            self.metrics.verdicts.labels(verdict.predicted_class).inc()
            return self._response(job, result, verdict, provenance, output_url, cams is not None, model)

    def _prefetch(self, job: PredictJob, info: VideoInfo) -> AbstractContextManager[FramePrefetch | None]:
        """The render's decoder, started now so that it decodes while Triton works (None when disabled)."""
        budget = self.settings.render_prefetch_mb * 1024 * 1024
        if budget <= 0:
            return nullcontext(None)
        longer, pixel_format = decode_format(info, self.settings.output_max_side)
        return FramePrefetch(job.source, longer, pixel_format, max_bytes=budget)

    async def _verdict(
        self,
        job: PredictJob,
        credentials: asyncio.Task[tuple[dict[str, Any], str | None]],
        result: DetectorResult,
    ) -> tuple[dict[str, Any], provenance_policy.Verdict]:
        """The C2PA summary (an ``errors`` entry when it could not be read) and the verdict: the detector's class
        and confidence, then the credentials' policy. Nothing after this decides the class again."""
        provenance, error = await credentials
        if error is not None:
            job.errors.append({"stage": "provenance", "type": "credentials_unreadable", "message": error})
        # Served scores have their checkpoint's threshold folded in (make export): 0.5 decides, by construction.
        verdict = provenance_policy.decide(
            result.predicted_class(),
            result.confidence_percent(),
            provenance,
            self.settings.c2pa_override,
        )
        return provenance, verdict

    def _probe(self, path: Path) -> VideoInfo:
        """Refuse what is not a video, or too big, before it is sent to Triton; the renderer reuses the probe.

        Content first (images, archives, playlists, text: whatever the extension says), then the headers and a
        demux pass against the limits (413), then one decoded frame; a single frame is a still image (422).
        """
        refusal = sniff_file(path)
        if refusal is not None:
            raise UnsupportedVideo(refusal)
        try:
            info = probe_video(path, self.limits)
        except VideoTooLargeError as exc:
            raise TooLarge(f"the video is too large to analyse: {exc}") from exc
        except VideoError as exc:
            raise UnsupportedVideo(str(exc)) from exc
        if "gif" in info.container.split(",") or info.codec in ("gif", "apng", "webp"):
            raise UnsupportedVideo(f"not a video: the file is an animated image ({info.codec})")
        if info.width * info.height > self.limits.max_pixels:  # the header may not have known the size
            raise TooLarge(
                f"the video is too large to analyse: frame size {info.width}x{info.height} exceeds the limit of "
                f"{self.limits.max_pixels} pixels"
            )
        minimum = self.settings.min_frames
        if info.frame_count < minimum:
            raise UnsupportedVideo(
                f"the video has only {info.frame_count} frame(s); at least {minimum} are needed (one frame is a "
                "still image, not a video)"
            )
        return info

    async def _infer(self, job: PredictJob) -> DetectorResult:
        video = await asyncio.to_thread(job.source.read_bytes)
        return await self.triton.detect(video, job.num_frames, with_maps=job.heatmap)

    async def _gradcam(self, job: PredictJob, result: DetectorResult, model: ModelState) -> np.ndarray | None:
        """CAMs [F, T, h, w], one row per analysed face (from TRACK_FEATURE_MAPS), or [T, h, w] of the deciding face
        when only FEATURE_MAPS came; None without heatmaps, and None (with an ``errors`` entry) when Triton serves
        another checkpoint than the twin's: its heatmaps would explain another model."""
        maps = result.track_feature_maps if result.track_feature_maps is not None else result.feature_maps
        if not (job.heatmap and result.face_found and maps is not None):
            job.clock.report(Stage.GRADCAM)  # skipped: its time stays 0
            return None
        info = model.info
        if info.served is not None and not info.twin_matches:
            job.clock.report(Stage.GRADCAM)
            job.errors.append(
                {
                    "stage": Stage.GRADCAM.value,
                    "type": "twin_mismatch",
                    "message": f"no heatmap: Triton serves checkpoint {info.served_sha256 or 'untrained'}, the "
                    f"Grad-CAM twin is {info.twin_sha256 or 'untrained'}",
                }
            )
            return None
        engine = model.gradcam
        with job.clock.stage(Stage.GRADCAM):
            if result.track_feature_maps is None or result.track_has_face is None:
                return await asyncio.to_thread(engine.compute_from_maps, maps, result.has_face)
            track_maps, present = result.track_feature_maps, result.track_has_face
            return await asyncio.to_thread(
                lambda: np.stack([engine.compute_from_maps(m, p) for m, p in zip(track_maps, present, strict=True)])
            )

    async def _render_and_store(
        self,
        job: PredictJob,
        result: DetectorResult,
        cams: np.ndarray | None,
        label: str,
        info: VideoInfo,
        model: ModelState,
        prefetch: FramePrefetch | None = None,
    ) -> str | None:
        s = self.settings
        rendered = new_temp_path(s.tmp_dir, f"{job.request_id}-overlay", ".mp4")
        with removing(rendered):
            try:
                with job.clock.stage(Stage.RENDER):
                    await asyncio.to_thread(
                        render_overlay,
                        job.source,
                        rendered,
                        result,
                        cams,
                        label=label,
                        encoding=OverlayEncoding.from_settings(s),
                        info=info,
                        frames=prefetch.frames() if prefetch is not None else None,
                    )
            except Exception as exc:  # the verdict is worth returning without its video
                log.exception("request %s: rendering the overlay failed", job.request_id)
                job.errors.append({"stage": Stage.RENDER.value, "type": "render_failed", "message": _short(exc)})
                return None
            try:
                with job.clock.stage(Stage.UPLOAD):
                    stored = await self.storage.save(rendered, job.public_id)
            except Exception as exc:  # StorageError after retries, or anything unexpected
                log.warning("request %s: storing the overlay failed: %s", job.request_id, exc)
                self.metrics.storage_failures.inc()
                job.errors.append({"stage": Stage.UPLOAD.value, "type": "storage_failed", "message": _short(exc)})
                return None
            return stored.url

    def _response(
        self,
        job: PredictJob,
        result: DetectorResult,
        verdict: provenance_policy.Verdict,
        provenance: dict[str, Any],
        output_url: str | None,
        heatmap: bool,
        model: ModelState,
    ) -> PredictResponse:
        evidence = result.evidence_json()
        total = time.perf_counter() - job.started
        return PredictResponse.model_validate(
            {
                "predicted_class": verdict.predicted_class,
                "confidence": verdict.confidence,
                "verdict_reason": verdict.reason,
                "detector_class": verdict.detector_class,
                "output_url": output_url,
                "execution_time": f"{total:.2f} sec.",
                "probability_fake": evidence["probability_fake"],
                "threshold": evidence["threshold"],
                "frames_analyzed": evidence["frames_analyzed"],
                "faces_detected": evidence["faces_detected"],
                "frame_scores": evidence["frame_scores"],
                "faces": evidence["faces"],
                "deciding_face": evidence["deciding_face"],
                "faces_not_analysed": evidence["faces_not_analysed"],
                "timings": {stage.value: round(seconds, 3) for stage, seconds in job.clock.timings.items()},
                "model": {"name": model.info.name, "version": model.info.version},
                "request_id": job.request_id,
                "errors": job.errors,
                "video": evidence["video"],
                "heatmap": heatmap,
                "provenance": provenance,
            }
        )


def _short(exc: BaseException, limit: int = 300) -> str:
    """A short, single-line message for the ``errors`` entry. Only messages written for users are passed on
    (StorageError redacts credentials, VideoError speaks of the video); anything else stays in the log."""
    if isinstance(exc, GatewayError):
        text = exc.message
    elif isinstance(exc, (StorageError, VideoError)):
        text = str(exc)
    else:
        text = f"unexpected {type(exc).__name__}; see the gateway log"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
