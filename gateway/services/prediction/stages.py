"""The stages of one prediction, listed once (``Stage``), and the clock that times them and reports each start.

Everything that names a stage reads this list: the pipeline and the predictor (``StageClock.stage``), the metrics
(``gateway_stage_duration_seconds``), the response's ``timings``, the jobs' status and progress
(``gateway.services.jobs.models.STAGE_STATUS``), the web page and ``GET /api/v1/info`` (their labels:
``gateway.api.stage_labels``) and the gateway benchmark.
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
    def timed(self) -> bool:
        """Whether the response's ``timings`` (and the stage metric) hold this stage's time."""
        return self is not Stage.PROBE  # probing is milliseconds: folded into no timing


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
