"""Request and response bodies of the API (pydantic models; they also document the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deepfake_core import constants as C
from gateway.api.provenance_schemas import Provenance, VerdictReason


class PredictOptions(BaseModel):
    """Options of one prediction; unset fields take the gateway's defaults."""

    model_config = ConfigDict(extra="forbid")

    num_frames: int | None = Field(
        default=None, ge=1, le=C.MAX_NUM_FRAMES, description="frames analysed, evenly spaced over the video"
    )
    heatmap: bool | None = Field(default=None, description="Grad-CAM heatmap in the overlay video")


class PredictRequest(PredictOptions):
    """``POST /api/v1/predict`` with JSON: the video's URL and options."""

    url: str = Field(
        min_length=1, max_length=4096, description="http(s) URL of the video", examples=["https://example.org/v.mp4"]
    )


class FrameScore(BaseModel):
    """One analysed frame."""

    frame_index: int = Field(description="index of the frame in the video")
    timestamp: float = Field(description="seconds from the start")
    score: float | None = Field(
        description="the frame's fake probability on the video's calibrated scale: the video's logit is the mean of "
        "its frames' logits, so frames scoring >= 0.5 pull the verdict towards FAKE and a video whose frames all "
        "score >= 0.5 is FAKE; one frame is weak evidence on its own. null where no face was found"
    )
    box: list[float] | None = Field(description="face box x1, y1, x2, y2 in video pixels; null where no face")


class FaceFrame(BaseModel):
    """One analysed frame in which a face was found."""

    frame_index: int = Field(description="index of the frame in the video")
    timestamp: float = Field(description="seconds from the start")
    score: float | None = Field(description="this face's fake probability in this frame (same scale as FrameScore)")
    box: list[float] = Field(description="this face's box x1, y1, x2, y2 in video pixels")


class FaceVerdict(BaseModel):
    """One analysed person (face track): its own verdict and the frames it is in."""

    track_id: int = Field(description="the track's index: 0 is the most prominent face (presence x size x score)")
    predicted_class: Literal["REAL", "FAKE"]
    confidence: float = Field(description="percentage for this face's class")
    probability_fake: float = Field(description="calibrated probability that this face is manipulated")
    deciding: bool = Field(description="this face's score is the video's (the highest of all faces)")
    first_seen: float = Field(description="seconds: first analysed frame with this face")
    last_seen: float = Field(description="seconds: last analysed frame with this face")
    frames: list[FaceFrame]


class Timings(BaseModel):
    """Seconds per stage (0 for a stage that did not run)."""

    download: float = 0.0
    inference: float = 0.0
    gradcam: float = 0.0
    render: float = 0.0
    upload: float = 0.0


class ModelRef(BaseModel):
    name: str
    version: str


class VideoInfo(BaseModel):
    width: int
    height: int
    fps: float
    frames: int


class ErrorEntry(BaseModel):
    """A stage that failed without failing the prediction (e.g. storing the overlay video)."""

    stage: str
    type: str
    message: str


class PredictResponse(BaseModel):
    """The verdict, the overlay video's URL and how the time was spent."""

    predicted_class: Literal["REAL", "FAKE", "NO_FACE"]
    confidence: float | None = Field(
        description="percentage for the predicted class; null for NO_FACE and when content credentials decide"
    )
    output_url: str | None = Field(description="the Grad-CAM overlay video (H.264 mp4); null if it could not be stored")
    execution_time: str = Field(examples=["3.21 sec."])
    probability_fake: float = Field(
        description="calibrated probability that the video is manipulated; >= 0.5 exactly when predicted_class is FAKE"
    )
    threshold: float = Field(description="decision threshold of probability_fake: 0.5 (folded into the calibration)")
    frames_analyzed: int
    faces_detected: int
    frame_scores: list[FrameScore] = Field(description="per analysed frame, the deciding face's score and box")
    faces: list[FaceVerdict] = Field(
        default_factory=list,
        description="every analysed person, most prominent first; the video's probability_fake is the highest of "
        "theirs (one manipulated person makes the video manipulated); empty for NO_FACE",
    )
    deciding_face: int | None = Field(default=None, description="track_id of the face that decided the verdict")
    faces_not_analysed: int = Field(
        default=0, description="people beyond the service's limit of faces per video (4 by default), not analysed"
    )
    timings: Timings
    model: ModelRef
    request_id: str
    errors: list[ErrorEntry] = Field(default_factory=list)
    video: VideoInfo | None = None
    heatmap: bool = Field(description="whether the overlay carries Grad-CAM heatmaps")
    # Content credentials (C2PA) beside the verdict; README "Content credentials".
    provenance: Provenance = Field(default_factory=Provenance, description="the video's C2PA content credentials")
    verdict_reason: VerdictReason = Field(
        default="detector",
        description="content_credentials: valid, trusted credentials declare the video AI-generated, so the class "
        "is FAKE whatever the detector says (confidence is then null); detector: the detector's verdict",
    )
    detector_class: Literal["REAL", "FAKE", "NO_FACE"] | None = Field(
        default=None, description="the detector's own class (differs from predicted_class only by the credentials)"
    )


class ErrorDetail(BaseModel):
    """One field-level problem of an invalid request."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    type: str = Field(examples=["unsupported_video"])
    message: str = Field(description="what is wrong, for a person")
    remote_status: int | None = Field(default=None, description="download_failed: the remote server's status")
    details: list[ErrorDetail] | None = Field(default=None, description="invalid_request: each field's problem")


class ErrorResponse(BaseModel):
    """Every error answer."""

    error: ErrorBody
    request_id: str | None


class CheckResult(BaseModel):
    ok: bool
    detail: str
    served_sha256: str | None = Field(
        default=None, description="model check: the checkpoint digest Triton reports (its model config)"
    )
    grad_cam_sha256: str | None = Field(default=None, description="model check: the Grad-CAM twin's checkpoint digest")


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="ok: every check passes; degraded: the gateway is up but a check fails (the code is 503 "
        "when predictions cannot be served; 200 when only the job store is away or the Grad-CAM twin is not the "
        "served checkpoint, i.e. verdicts without heatmaps)"
    )
    checks: dict[str, CheckResult]


class ModelInfoResponse(BaseModel):
    name: str
    version: str
    threshold: float
    num_frames: int = Field(description="frames the model was trained with")
    crop_size: int
    training_data: str | list[str] | None = None
    gradcam_version: str = Field(description="version of the PyTorch twin used for Grad-CAM")
    precision: str | None = Field(
        default=None, description="the served classifier's precision (fp32, int8), per Triton"
    )
    precision_reason: str | None = Field(
        default=None,
        description="why it is served at that precision, e.g. 'fp32: the INT8 gate refused (...)', per Triton",
    )
    checkpoint_sha256: str | None = Field(
        default=None,
        description="the served checkpoint's digest, per Triton (null: untrained, or Triton not asked yet)",
    )
    gradcam_checkpoint_sha256: str | None = Field(default=None, description="the Grad-CAM twin's checkpoint digest")


class StageInfo(BaseModel):
    """One stage of a prediction (``gateway.services.prediction.stages``), in the order they run."""

    name: str
    label: str
    timed: bool = Field(description="whether the response's timings hold this stage's time")


class InfoResponse(BaseModel):
    model: ModelInfoResponse
    defaults: dict[str, int | bool]
    limits: dict[str, int | float]
    storage: str
    triton_url: str
    stages: list[StageInfo]


# --- jobs and batches --------------------------------------------------------------------------------------------


class JobsRequest(PredictOptions):
    """``POST /api/v1/jobs``: one ``url`` or several ``urls`` (one job each), options for all of them."""

    url: str | None = Field(default=None, min_length=1, max_length=4096, description="http(s) URL of one video")
    urls: list[Annotated[str, Field(min_length=1, max_length=4096)]] | None = Field(
        default=None, min_length=1, description="several videos: one job each"
    )
    callback_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="the job (as GET /api/v1/jobs/{id} gives it) is POSTed here when it ends; same URL rules as "
        "downloads",
    )

    @model_validator(mode="after")
    def _one_of_url_or_urls(self) -> JobsRequest:
        if (self.url is None) == (self.urls is None):
            raise ValueError("give either url or urls")
        return self


class JobRef(BaseModel):
    id: str
    status: str
    url: str = Field(description="the video's URL")
    href: str = Field(description="GET this for the job's status and result")


class JobsAccepted(BaseModel):
    """The jobs made (or, for a repeated Idempotency-Key, made before), in the order of the URLs."""

    jobs: list[JobRef]


class JobError(ErrorBody):
    status_code: int | None = Field(
        default=None, description="what the synchronous API would have answered (none for a lost worker)"
    )


class CallbackOutcome(BaseModel):
    status: Literal["delivered", "failed"]
    attempts: int
    http_status: int | None = None
    error: str | None = None


class JobResponse(BaseModel):
    """A job: its status, progress and, once done, the same body as ``POST /api/v1/predict``."""

    id: str
    status: Literal["queued", "downloading", "analysing", "rendering", "uploading", "done", "failed"]
    stage: str | None = Field(description="the pipeline's stage (download, probe, inference, gradcam, render, upload)")
    progress: float = Field(ge=0, le=1)
    attempts: int = Field(description="runs started so far")
    max_attempts: int
    url: str | None
    created_at: float = Field(description="Unix time")
    updated_at: float
    finished_at: float | None
    result: PredictResponse | None = Field(description="when done")
    error: JobError | None = Field(description="when failed; while queued for a retry, the last attempt's error")
    callback: CallbackOutcome | None = None


class BatchRequest(PredictOptions):
    """``POST /api/v1/predict/batch``: a few URLs analysed while the client waits."""

    urls: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(min_length=1)


class BatchItem(BaseModel):
    """One URL's outcome: ``result`` with status 200, else ``error`` with the status predict would have given."""

    url: str
    status: int
    result: PredictResponse | None = None
    error: ErrorBody | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
