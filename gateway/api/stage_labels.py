"""What people read for each stage of a prediction: the web page's progress list and timings table, and the
labels ``GET /api/v1/info`` gives clients (the stages themselves: ``gateway.services.prediction.stages``)."""

from __future__ import annotations

from gateway.services.prediction.stages import Stage

# stage -> (the page's progress list, the page's timings table; None: not timed)
LABELS: dict[Stage, tuple[str, str | None]] = {
    Stage.DOWNLOAD: ("Fetching the video", "Download / upload"),
    Stage.PROBE: ("Checking the video", None),
    Stage.INFERENCE: ("Finding faces and scoring frames", "Faces and scores (Triton)"),
    Stage.GRADCAM: ("Computing heatmaps", "Heatmaps"),
    Stage.RENDER: ("Drawing the overlay video", "Overlay video"),
    Stage.UPLOAD: ("Storing the video", "Storing"),
}


def label(stage: Stage) -> str:
    """The stage in the page's progress list."""
    return LABELS[stage][0]


def timing_label(stage: Stage) -> str | None:
    """The stage in the page's timings table (None: the response does not time it)."""
    return LABELS[stage][1]


def describe() -> list[dict[str, str | bool]]:
    """The stages for clients (``GET /api/v1/info``): name, label and whether the response times it."""
    return [{"name": stage.value, "label": label(stage), "timed": stage.timed} for stage in Stage]
