"""The stages of one prediction, listed once (``Stage``), and the clock that times them and reports each start.

Everything that names a stage reads this list: the pipeline and the predictor (``StageClock.stage``), the metrics
(``gateway_stage_duration_seconds``), the response's ``timings``, the jobs' status and progress, the web page (its
stage list is rendered from ``Stage``, see ``gateway.api.routes.web``; also in ``GET /api/v1/info``) and the
gateway benchmark.
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


class Stage(enum.StrEnum):
    """A prediction's stages, in the order they run."""

    DOWNLOAD = "download"  # the video onto disk: downloaded from its URL, or received as an upload
    PROBE = "probe"
    INFERENCE = "inference"
    GRADCAM = "gradcam"
    RENDER = "render"
    UPLOAD = "upload"  # the overlay video into the storage

    @property
    def about(self) -> StageInfo:
        return _ABOUT[self]

    @property
    def timed(self) -> bool:
        """Whether the response's ``timings`` (and the stage metric) hold this stage's time."""
        return self.about.timing_label is not None


@dataclass(frozen=True)
class StageInfo:
    """What the page shows for a stage, and where a job is when the stage starts."""

    label: str  # the page's progress list
    timing_label: str | None  # the page's timings table; None: not timed
    job_status: str  # a ``JobStatus`` value
    job_progress: float


_ABOUT = {
    Stage.DOWNLOAD: StageInfo("Fetching the video", "Download / upload", "downloading", 0.05),
    Stage.PROBE: StageInfo("Checking the video", None, "analysing", 0.2),
    Stage.INFERENCE: StageInfo("Finding faces and scoring frames", "Faces and scores (Triton)", "analysing", 0.3),
    Stage.GRADCAM: StageInfo("Computing heatmaps", "Heatmaps", "analysing", 0.6),
    Stage.RENDER: StageInfo("Drawing the overlay video", "Overlay video", "rendering", 0.7),
    Stage.UPLOAD: StageInfo("Storing the video", "Storing", "uploading", 0.9),
}
TIMED = tuple(stage for stage in Stage if stage.timed)

Listener = Callable[[Stage], None]


@dataclass
class StageClock:
    """The stage times of one prediction, and who is told when a stage starts."""

    listeners: list[Listener] = field(default_factory=list)
    timings: dict[Stage, float] = field(default_factory=lambda: dict.fromkeys(TIMED, 0.0))

    def report(self, stage: Stage) -> None:
        """Tell the listeners that ``stage`` starts (without timing it: a stage that is skipped)."""
        for listener in self.listeners:
            listener(stage)

    @contextlib.contextmanager
    def stage(self, stage: Stage) -> Iterator[None]:
        """Report ``stage`` and time the block as its duration (however the block ends)."""
        self.report(stage)
        start = time.perf_counter()
        try:
            yield
        finally:
            if stage.timed:
                self.timings[stage] = time.perf_counter() - start

    @contextlib.contextmanager
    def listening(self, listener: Listener) -> Iterator[None]:
        """Also tell ``listener`` the stages that start within the block."""
        self.listeners.append(listener)
        try:
            yield
        finally:
            self.listeners.remove(listener)


def describe() -> list[dict[str, str | bool]]:
    """The stages for clients (``GET /api/v1/info``): name, label and whether the response times it."""
    return [{"name": stage.value, "label": stage.about.label, "timed": stage.timed} for stage in Stage]
