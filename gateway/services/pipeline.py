"""One prediction, stage by stage: probe -> Triton -> Grad-CAM -> overlay video -> storage -> response.

The video is already on disk (downloaded or uploaded; the caller removes it). Blocking work (probing, reading the
file, Grad-CAM, rendering) runs in worker threads so the event loop keeps serving. The rendered video is a temp
file removed at the end whatever happens (local storage keeps its own copy). If rendering or storing fails, the
verdict is still returned with ``output_url: null`` and an ``errors`` entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepfake_core import constants as C
from deepfake_core.detector_io import DetectorResult
from deepfake_core.video import VideoError, VideoInfo, VideoLimits, VideoTooLargeError, probe_video
from gateway.core.errors import GatewayError, Overloaded, TooLarge, UnsupportedVideo
from gateway.core.settings import Settings
from gateway.services.download import new_temp_path, removing
from gateway.services.gradcam import GradCamEngine
from gateway.services.metrics import STAGES, Metrics
from gateway.services.progress import ProgressTracker
from gateway.services.provenance import policy as provenance_policy  # issue 17: content credentials
from gateway.services.provenance.service import ProvenanceReader
from gateway.services.render import render_overlay
from gateway.services.sniff import sniff_file
from gateway.services.storage import Storage, StorageError
from gateway.services.triton import TritonService

log = logging.getLogger("gateway.pipeline")


@dataclass(frozen=True)
class ModelInfo:
    """The served model's identity and decision threshold (from the exported metadata, else the twin's)."""

    name: str
    version: str
    threshold: float
    num_frames: int
    crop_size: int
    training_data: str | list[str] | None
    twin_version: str

    @classmethod
    def resolve(cls, metadata_path: Path | None, twin_metadata: dict[str, Any]) -> ModelInfo:
        """Triton's classifier metadata (written by ``make export`` next to the ONNX) wins; the twin comes from the
        same checkpoint, and a mismatch is logged because Grad-CAM would then explain another model."""
        served: dict[str, Any] = {}
        if metadata_path is not None and metadata_path.is_file():
            try:
                served = json.loads(metadata_path.read_text())
            except (OSError, ValueError) as exc:
                log.warning("cannot read %s: %s", metadata_path, exc)
        meta = {**twin_metadata, **served}
        twin_version = str(twin_metadata.get("version", C.UNTRAINED_VERSION))
        version = str(meta.get("version") or C.UNTRAINED_VERSION)
        if served and version != twin_version:
            log.warning("Triton serves classifier %s but the Grad-CAM twin is %s", version, twin_version)
        return cls(
            name=C.MODEL_NAME,
            version=version,
            threshold=float(meta.get("threshold", C.DECISION_THRESHOLD)),
            num_frames=int(meta.get("num_frames", C.NUM_FRAMES)),
            crop_size=int(meta.get("crop_size", C.CROP_SIZE)),
            training_data=meta.get("training_data"),
            twin_version=twin_version,
        )


class Admission:
    """At most ``slots`` predictions at once and ``max_waiting`` waiting; beyond that a fast 429."""

    def __init__(self, slots: int, max_waiting: int, wait_timeout_s: float, metrics: Metrics) -> None:
        self._semaphore = asyncio.Semaphore(slots)
        self._max_waiting = max_waiting
        self._wait_timeout_s = wait_timeout_s
        self._waiting = 0
        self._metrics = metrics

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one prediction slot for the block."""
        if self._semaphore.locked() and self._waiting >= self._max_waiting:
            raise Overloaded("too many predictions in progress; retry later", retry_after_s=5)
        self._waiting += 1
        try:
            async with asyncio.timeout(self._wait_timeout_s):
                await self._semaphore.acquire()
        except TimeoutError as exc:
            raise Overloaded(
                "no prediction slot freed in time; retry later", retry_after_s=10, status_code=503
            ) from exc
        finally:
            self._waiting -= 1
        async with self._held():
            yield

    @contextlib.asynccontextmanager
    async def worker_slot(self) -> AsyncIterator[None]:
        """A slot for a job worker: it waits as long as it takes (the workers are few and nobody is waiting on the
        HTTP answer), and it shares the limit with the synchronous predictions, so jobs and predictions together
        never run more than ``slots`` pipelines at once."""
        await self._semaphore.acquire()
        async with self._held():
            yield

    @contextlib.asynccontextmanager
    async def _held(self) -> AsyncIterator[None]:
        """Count the slot just acquired while the block runs, then give it back."""
        self._metrics.predictions_in_flight.inc()
        try:
            yield
        finally:
            self._metrics.predictions_in_flight.dec()
            self._semaphore.release()


@dataclass
class PredictJob:
    """One prediction's input: the video file on disk and the resolved options."""

    source: Path
    size: int
    num_frames: int
    heatmap: bool
    request_id: str
    started: float  # time.perf_counter() when the request arrived
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    # The stored video's id: random, never the (client-suppliable) request id, so nobody can overwrite or guess it.
    public_id: str = field(default_factory=lambda: secrets.token_hex(16))
    errors: list[dict[str, str]] = field(default_factory=list)
    on_stage: Callable[[str], None] | None = None  # also told each stage (the jobs' workers record it)

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
        on_stage: Callable[[str], None] | None = None,
    ) -> PredictJob:
        """A job whose options the request left unset (None) take the gateway's defaults."""
        return cls(
            source=source,
            size=size,
            num_frames=num_frames or settings.num_frames,
            heatmap=settings.heatmap if heatmap is None else heatmap,
            request_id=request_id,
            started=started,
            on_stage=on_stage,
        )


class Pipeline:
    """Runs predictions with the long-lived services built in the lifespan."""

    def __init__(
        self,
        *,
        settings: Settings,
        triton: TritonService,
        gradcam: GradCamEngine,
        storage: Storage,
        metrics: Metrics,
        model: ModelInfo,
    ) -> None:
        self.settings = settings
        self.triton = triton
        self.gradcam = gradcam
        self.storage = storage
        self.metrics = metrics
        self.model = model
        # Checked here, before Triton: video_decode has its own limits (max_pixels, max_duration_s in its
        # config.pbtxt) and refuses with INVALID_ARG, but a bad file should not cost a trip to Triton.
        self.limits = VideoLimits(
            max_pixels=settings.max_pixels, max_duration_s=settings.max_duration_s, max_frames=settings.max_frames
        )
        self.progress = ProgressTracker()  # stage updates for the web page
        self.provenance = ProvenanceReader.from_settings(settings)  # issue 17: C2PA, read beside inference

    async def run(self, job: PredictJob) -> dict[str, Any]:
        """The response body of one prediction (see ``schemas.PredictResponse``)."""
        with self.progress.track(job.request_id):  # stage events for GET /api/v1/progress/{id}, done or failed

            def stage(name: str) -> None:
                self._stage(job, name)

            stage("probe")
            info = await asyncio.to_thread(self._probe, job.source)
            stage("inference")
            credentials = self.provenance.read_beside(job.source)  # issue 17: never raises, bounded in time
            result = await self._infer(job)
            stage("gradcam")
            cams = await self._gradcam(job, result)
            provenance, verdict = await self._credentials(job, credentials, result)  # issue 17
            label = verdict.predicted_class
            stage("render")
            output_url = await self._render_and_store(job, result, cams, label, info)
            self.metrics.observe_stages(job.timings)
            self.metrics.verdicts.labels(label).inc()
            body = self._response(job, result, output_url, cams is not None)
            return provenance_policy.apply(body, verdict, provenance)  # issue 17

    async def _credentials(
        self, job: PredictJob, credentials: asyncio.Task[tuple[dict[str, Any], str | None]], result: DetectorResult
    ) -> tuple[dict[str, Any], provenance_policy.Verdict]:
        """Issue 17: the C2PA summary (an ``errors`` entry when it could not be read) and the verdict policy."""
        provenance, error = await credentials
        if error is not None:
            job.errors.append({"stage": "provenance", "type": "credentials_unreadable", "message": error})
        detector = result.predicted_class(self.model.threshold)
        return provenance, provenance_policy.decide(detector, provenance, self.settings.c2pa_override)

    def _stage(self, job: PredictJob, name: str) -> None:
        self.progress.stage(job.request_id, name)
        if job.on_stage is not None:
            job.on_stage(name)

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
        start = time.perf_counter()
        video = await asyncio.to_thread(job.source.read_bytes)
        result = await self.triton.detect(video, job.num_frames, with_maps=job.heatmap)
        job.timings["inference"] = time.perf_counter() - start
        return result

    async def _gradcam(self, job: PredictJob, result: DetectorResult) -> np.ndarray | None:
        if not (job.heatmap and result.face_found and result.feature_maps is not None):
            return None
        start = time.perf_counter()
        cams = await asyncio.to_thread(self.gradcam.compute_from_maps, result.feature_maps, result.has_face)
        job.timings["gradcam"] = time.perf_counter() - start
        return cams

    async def _render_and_store(
        self, job: PredictJob, result: DetectorResult, cams: np.ndarray | None, label: str, info: VideoInfo
    ) -> str | None:
        s = self.settings
        rendered = new_temp_path(s.tmp_dir, f"{job.request_id}-overlay", ".mp4")
        with removing(rendered):
            start = time.perf_counter()
            try:
                await asyncio.to_thread(
                    render_overlay,
                    job.source,
                    rendered,
                    result,
                    cams,
                    label=label,
                    threshold=self.model.threshold,
                    max_side=s.output_max_side,
                    preset=s.encoder_preset,
                    crf=s.crf,
                    info=info,
                )
            except Exception as exc:  # the verdict is worth returning without its video
                log.exception("request %s: rendering the overlay failed", job.request_id)
                job.errors.append({"stage": "render", "type": "render_failed", "message": _short(exc)})
                return None
            finally:
                job.timings["render"] = time.perf_counter() - start
            self._stage(job, "upload")
            start = time.perf_counter()
            try:
                stored = await self.storage.save(rendered, job.public_id)
            except Exception as exc:  # StorageError after retries, or anything unexpected
                log.warning("request %s: storing the overlay failed: %s", job.request_id, exc)
                self.metrics.storage_failures.inc()
                job.errors.append({"stage": "upload", "type": "storage_failed", "message": _short(exc)})
                return None
            finally:
                job.timings["upload"] = time.perf_counter() - start
            return stored.url

    def _response(
        self, job: PredictJob, result: DetectorResult, output_url: str | None, heatmap: bool
    ) -> dict[str, Any]:
        verdict = result.to_json(self.model.threshold)
        total = time.perf_counter() - job.started
        return {
            "predicted_class": verdict["predicted_class"],
            "confidence": verdict["confidence"],
            "output_url": output_url,
            "execution_time": f"{total:.2f} sec.",
            "probability_fake": verdict["probability_fake"],
            "threshold": verdict["threshold"],
            "frames_analyzed": verdict["frames_analyzed"],
            "faces_detected": verdict["faces_detected"],
            "frame_scores": verdict["frame_scores"],
            "timings": {k: round(v, 3) for k, v in job.timings.items()},
            "model": {"name": self.model.name, "version": self.model.version},
            "request_id": job.request_id,
            "errors": job.errors,
            "video": verdict["video"],
            "heatmap": heatmap,
        }


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
