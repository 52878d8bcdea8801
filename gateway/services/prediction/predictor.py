"""The one owner of a prediction from a URL or an upload: ``POST /api/v1/predict``, the batch route and the job
workers all go through ``Predictor``.

Always in this order: a prediction slot (``Admission``), the video onto disk (the ``download`` stage, timed and
reported), the options resolved against the settings, the pipeline; the temp file is removed when it ends,
however it ends.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.api.schemas import PredictOptions, PredictResponse
from gateway.core.settings import Settings
from gateway.services.intake.download import Downloader
from gateway.services.intake.temp_files import removing
from gateway.services.intake.upload import capped, check_declared_size, receive_upload
from gateway.services.prediction.admission import Admission
from gateway.services.prediction.pipeline import Pipeline, PredictJob
from gateway.services.prediction.stages import Listener, Stage, StageClock

MULTIPART_SLACK_BYTES = 64 * 1024  # boundaries, part headers and the small fields around the file


@dataclass(frozen=True)
class Prediction:
    """The answer, and the stored overlay's id (the jobs remove it with the job)."""

    body: PredictResponse
    public_id: str


@dataclass(frozen=True)
class _Video:
    path: Path
    size: int
    fields: Mapping[str, str]


class Predictor:
    """Runs one prediction per call, from a URL or from an upload stream."""

    def __init__(self, *, settings: Settings, admission: Admission, downloader: Downloader, pipeline: Pipeline) -> None:
        self.settings = settings
        self.admission = admission
        self.downloader = downloader
        self.pipeline = pipeline

    async def from_url(
        self,
        url: str,
        options: PredictOptions,
        request_id: str,
        *,
        started: float | None = None,
        wait: bool = False,
        on_stage: Listener | None = None,
    ) -> Prediction:
        """Download ``url`` (URL guard, limits) and analyse it. ``wait``: a job worker, which waits for a slot as
        long as it takes instead of a fast 429; ``on_stage``: also told each stage."""

        @contextlib.asynccontextmanager
        async def fetch() -> AsyncIterator[_Video]:
            async with self.downloader.fetch(url, prefix=request_id) as downloaded:
                yield _Video(downloaded.path, downloaded.size, {})

        return await self._predict(fetch, lambda _: options, request_id, started, wait, on_stage)

    async def from_upload(
        self,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        content_length: str | None,
        parse_options: Callable[[Mapping[str, str]], PredictOptions],
        request_id: str,
        started: float | None = None,
    ) -> Prediction:
        """A multipart upload (a ``file`` part, options as form fields, parsed by ``parse_options``), streamed to
        disk with the upload limit; refused (413) by its Content-Length before a slot is taken."""
        limit = self.settings.max_upload_bytes
        check_declared_size(content_length, limit, slack=MULTIPART_SLACK_BYTES)

        @contextlib.asynccontextmanager
        async def fetch() -> AsyncIterator[_Video]:
            uploaded = await receive_upload(
                capped(chunks, limit + MULTIPART_SLACK_BYTES, limit),
                content_type,
                tmp_dir=self.settings.tmp_dir,
                max_bytes=limit,
                prefix=request_id,
            )
            with removing(uploaded.path):
                yield _Video(uploaded.path, uploaded.size, uploaded.fields)

        return await self._predict(fetch, parse_options, request_id, started, False, None)

    async def _predict(
        self,
        fetch: Callable[[], contextlib.AbstractAsyncContextManager[_Video]],
        parse_options: Callable[[Mapping[str, str]], PredictOptions],
        request_id: str,
        started: float | None,
        wait: bool,
        on_stage: Listener | None,
    ) -> Prediction:
        started = time.perf_counter() if started is None else started
        clock = StageClock([on_stage] if on_stage else [])
        async with self._slot(wait), contextlib.AsyncExitStack() as stack:
            with clock.stage(Stage.DOWNLOAD):
                video = await stack.enter_async_context(fetch())
            options = parse_options(video.fields)
            job = PredictJob.with_defaults(
                self.settings,
                source=video.path,
                size=video.size,
                num_frames=options.num_frames,
                heatmap=options.heatmap,
                request_id=request_id,
                started=started,
                clock=clock,
            )
            return Prediction(await self.pipeline.run(job), job.public_id)

    def _slot(self, wait: bool) -> contextlib.AbstractAsyncContextManager[None]:
        return self.admission.worker_slot() if wait else self.admission.slot()
