"""The deepfake_detector ensemble's inputs and outputs as Python values (shared by clients and the gateway).

Tensor names and meanings are documented in model_repository/README.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from deepfake_core import constants as C
from deepfake_core.constants import ENSEMBLE

Label = Literal["REAL", "FAKE", "NO_FACE"]  # a video's verdict (NO_FACE: no face in any analysed frame)

VIDEO_INPUT = "VIDEO"
NUM_FRAMES_INPUT = "NUM_FRAMES"
# One row per analysed face track (most prominent first), which of them decided, how many people were not analysed.
TRACK_OUTPUTS = (
    "TRACK_PROB_FAKE",
    "TRACK_BOXES",
    "TRACK_HAS_FACE",
    "TRACK_FRAME_SCORES",
    "DECIDING_FACE",
    "UNANALYSED_FACES",
)
# Outputs every caller gets (the per-face ones included); FACE_CROPS (T x 224 x 224 x 3 uint8), FEATURE_MAPS
# (T x C x 7 x 7 float16, for Grad-CAM) and TRACK_FEATURE_MAPS (F x T x C x 7 x 7) only when asked for: they are large.
VERDICT_OUTPUTS = (
    "PROB_FAKE",
    "VIDEO_LOGIT",
    "FRAME_SCORES",
    "FACE_FOUND",
    "HAS_FACE",
    "FACE_BOXES",
    "LANDMARKS",
    "FACE_SCORES",
    "FRAME_INDICES",
    "TIMESTAMPS",
    "FPS",
    "FRAME_COUNT",
    "FRAME_SIZE",
    *TRACK_OUTPUTS,
)
CROPS_OUTPUT = "FACE_CROPS"
MAPS_OUTPUT = "FEATURE_MAPS"
TRACK_MAPS_OUTPUT = "TRACK_FEATURE_MAPS"  # [F, T, C, 7, 7] float16: Grad-CAM of every face
ALL_OUTPUTS = (*VERDICT_OUTPUTS, CROPS_OUTPUT, MAPS_OUTPUT, TRACK_MAPS_OUTPUT)
# What DetectorResult.to_json reads (the CLI's default request): the verdict outputs less VIDEO_LOGIT, LANDMARKS
# and FACE_SCORES (the per-face outputs are optional there: without them the answer has no "faces").
JSON_OUTPUTS = (
    "PROB_FAKE",
    "FRAME_SCORES",
    "FACE_FOUND",
    "HAS_FACE",
    "FACE_BOXES",
    "FRAME_INDICES",
    "TIMESTAMPS",
    "FPS",
    "FRAME_COUNT",
    "FRAME_SIZE",
    *TRACK_OUTPUTS,
)


def clean_message(message: str | None) -> str:
    """Triton's error text without the ensemble prefix it adds ("in ensemble '...', "): the model's own words."""
    text = (message or "the video was rejected").strip()
    return text.replace(f"in ensemble '{ENSEMBLE}', ", "").strip() or "the video was rejected"


def video_tensor(data: bytes) -> np.ndarray:
    """Video bytes as the ensemble's VIDEO input: uint8 [1, num_bytes], no copy."""
    return np.frombuffer(data, dtype=np.uint8)[None]


def num_frames_tensor(num_frames: int) -> np.ndarray:
    return np.array([[num_frames]], dtype=np.int32)


def ensemble_inputs(client: Any, video: bytes, num_frames: int | None = None) -> list[Any]:
    """VIDEO, and NUM_FRAMES when given, built with `client`'s classes (the module `tritonclient.grpc`, also for its
    aio client, or `tritonclient.http`). Taking the module keeps this package free of tritonclient."""
    tensors = [(VIDEO_INPUT, video_tensor(video), "UINT8")]
    if num_frames is not None:
        tensors.append((NUM_FRAMES_INPUT, num_frames_tensor(num_frames), "INT32"))
    inputs = []
    for name, array, datatype in tensors:
        tensor = client.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def requested_outputs(client: Any, names: Sequence[str]) -> list[Any]:
    """`client`'s InferRequestedOutput for each name; any non-empty subset of ALL_OUTPUTS is a valid request."""
    unknown = [n for n in names if n not in ALL_OUTPUTS]
    if not names or unknown:
        raise ValueError(f"ask for one or more of {', '.join(ALL_OUTPUTS)} (got {', '.join(names) or 'none'})")
    return [client.InferRequestedOutput(n) for n in names]


def ensemble_request(
    client: Any, video: bytes, num_frames: int | None = None, extra_outputs: Sequence[str] = ()
) -> tuple[list[Any], list[Any]]:
    """The ensemble's inputs (`ensemble_inputs`) and the verdict outputs plus `extra_outputs` (CROPS_OUTPUT,
    MAPS_OUTPUT)."""
    return ensemble_inputs(client, video, num_frames), requested_outputs(client, (*VERDICT_OUTPUTS, *extra_outputs))


def logit(p: float) -> float:
    """``log(p / (1 - p))``: a threshold's logit is the shift that folds it to 0.5 (``make export``)."""
    return math.log(p / (1.0 - p))


def stated_confidence(prob_fake: float, threshold: float = C.DECISION_THRESHOLD) -> float:
    """Confidence in [0.5, 1] of the class the verdict states (FAKE when ``prob_fake >= threshold``).

    Served models have their threshold folded into the score (``make export``), so the threshold is 0.5 and this
    is ``max(p, 1 - p)``. Were another threshold given, the score is first moved so that the threshold maps to 0.5
    (a shift in logit space), so a stated class never comes with less than 50 % confidence.
    """
    p = min(max(float(prob_fake), 0.0), 1.0)
    if threshold != C.DECISION_THRESHOLD and 0.0 < p < 1.0:
        shift = logit(threshold)
        z = math.log(p) - math.log1p(-p) - shift
        p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return max(p if prob_fake >= threshold else 1.0 - p, 0.5)  # max: float rounding at the threshold itself


@dataclass
class DetectorResult:
    """One video's answer from the ensemble (batch dimension removed)."""

    prob_fake: float
    frame_scores: np.ndarray  # [T], 0 where no face
    face_found: bool
    has_face: np.ndarray  # bool [T]
    face_boxes: np.ndarray  # [T, 4] x1, y1, x2, y2 in original pixels; zeros where no face
    frame_indices: np.ndarray  # [T] index of each analysed frame in the video
    timestamps: np.ndarray  # [T] seconds
    fps: float
    frame_count: int
    width: int
    height: int
    # Outside JSON_OUTPUTS: None when not requested.
    video_logit: float | None = None
    landmarks: np.ndarray | None = None  # [T, 5, 2]
    face_scores: np.ndarray | None = None  # [T] detector confidence
    face_crops: np.ndarray | None = None  # [T, 224, 224, 3] uint8 when requested
    feature_maps: np.ndarray | None = None  # [T, C, h, w] float16 when requested (the encoder's maps)
    # Per analysed face track (F rows, most prominent first; one empty row when no face): None when not requested.
    track_prob_fake: np.ndarray | None = None  # [F]
    track_boxes: np.ndarray | None = None  # [F, T, 4] original pixels; zeros where the face is absent
    track_has_face: np.ndarray | None = None  # bool [F, T]
    track_frame_scores: np.ndarray | None = None  # [F, T]
    track_feature_maps: np.ndarray | None = None  # [F, T, C, h, w] float16 when requested
    deciding_face: int = 0  # the track whose score is the video's (the highest)
    unanalysed_faces: int = 0  # people beyond the ensemble's max_faces, not analysed

    @classmethod
    def from_outputs(cls, get: Callable[[str], np.ndarray | None]) -> DetectorResult:
        """Build from a tritonclient result's `as_numpy` (gRPC or HTTP), or a dict's `get`; needs JSON_OUTPUTS."""

        def out(name: str) -> np.ndarray:
            value = get(name)
            if value is None:
                raise KeyError(f"the server's answer lacks {name}")
            return value[0]

        def optional(name: str) -> np.ndarray | None:
            return None if get(name) is None else out(name)

        size = out("FRAME_SIZE")
        logit = optional("VIDEO_LOGIT")
        deciding = optional("DECIDING_FACE")
        unanalysed = optional("UNANALYSED_FACES")
        track_has_face = optional("TRACK_HAS_FACE")
        return cls(
            prob_fake=float(out("PROB_FAKE")[0]),
            frame_scores=out("FRAME_SCORES"),
            face_found=bool(out("FACE_FOUND")[0]),
            has_face=out("HAS_FACE").astype(bool),
            face_boxes=out("FACE_BOXES"),
            frame_indices=out("FRAME_INDICES"),
            timestamps=out("TIMESTAMPS"),
            fps=float(out("FPS")[0]),
            frame_count=int(out("FRAME_COUNT")[0]),
            width=int(size[0]),
            height=int(size[1]),
            video_logit=None if logit is None else float(logit[0]),
            landmarks=optional("LANDMARKS"),
            face_scores=optional("FACE_SCORES"),
            face_crops=optional(CROPS_OUTPUT),
            feature_maps=optional(MAPS_OUTPUT),
            track_prob_fake=optional("TRACK_PROB_FAKE"),
            track_boxes=optional("TRACK_BOXES"),
            track_has_face=None if track_has_face is None else track_has_face.astype(bool),
            track_frame_scores=optional("TRACK_FRAME_SCORES"),
            track_feature_maps=optional(TRACK_MAPS_OUTPUT),
            deciding_face=0 if deciding is None else int(deciding[0]),
            unanalysed_faces=0 if unanalysed is None else int(unanalysed[0]),
        )

    def predicted_class(self, threshold: float = C.DECISION_THRESHOLD) -> Label:
        """REAL, FAKE, or NO_FACE when no face was found in any analysed frame."""
        if not self.face_found:
            return "NO_FACE"
        return "FAKE" if self.prob_fake >= threshold else "REAL"

    def frames_json(self) -> list[dict[str, Any]]:
        """Per analysed frame: index, time, score and face box (None where no face)."""
        rows = []
        for i in range(len(self.frame_indices)):
            face = bool(self.has_face[i])
            rows.append(
                {
                    "frame_index": int(self.frame_indices[i]),
                    "timestamp": round(float(self.timestamps[i]), 4),
                    "score": round(float(self.frame_scores[i]), 6) if face else None,
                    "box": [round(float(v), 1) for v in self.face_boxes[i]] if face else None,
                }
            )
        return rows

    def face_tracks(self) -> list[int]:
        """Indices of the analysed tracks that hold a face (empty without the per-face outputs or without faces)."""
        if self.track_has_face is None or self.track_prob_fake is None or not self.face_found:
            return []
        return [int(k) for k in np.flatnonzero(self.track_has_face.any(axis=1))]

    def faces_json(self, threshold: float = C.DECISION_THRESHOLD) -> list[dict[str, Any]]:
        """Per analysed face: its verdict, when it was seen and its frames (only those it is in)."""
        if self.track_prob_fake is None or self.track_has_face is None or self.track_boxes is None:
            return []
        scores = self.track_frame_scores
        faces = []
        for k in self.face_tracks():
            prob = float(self.track_prob_fake[k])
            seen = np.flatnonzero(self.track_has_face[k])
            faces.append(
                {
                    "track_id": k,
                    "predicted_class": "FAKE" if prob >= threshold else "REAL",
                    "confidence": round(100.0 * stated_confidence(prob, threshold), 2),
                    "probability_fake": round(prob, 6),
                    "deciding": k == self.deciding_face,
                    "first_seen": round(float(self.timestamps[seen[0]]), 4),
                    "last_seen": round(float(self.timestamps[seen[-1]]), 4),
                    "frames": [
                        {
                            "frame_index": int(self.frame_indices[i]),
                            "timestamp": round(float(self.timestamps[i]), 4),
                            "score": None if scores is None else round(float(scores[k, i]), 6),
                            "box": [round(float(v), 1) for v in self.track_boxes[k, i]],
                        }
                        for i in seen
                    ],
                }
            )
        return faces

    def confidence_percent(self, threshold: float = C.DECISION_THRESHOLD) -> float | None:
        """The stated class's confidence in percent (None for NO_FACE)."""
        if not self.face_found:
            return None
        return round(100.0 * stated_confidence(self.prob_fake, threshold), 2)

    def to_json(self, threshold: float = C.DECISION_THRESHOLD) -> dict[str, Any]:
        """The verdict as a JSON-ready dict."""
        return {
            "predicted_class": self.predicted_class(threshold),
            "confidence": self.confidence_percent(threshold),
            **self.evidence_json(threshold),
        }

    def evidence_json(self, threshold: float = C.DECISION_THRESHOLD) -> dict[str, Any]:
        """Everything but the verdict: score, frames, faces, video (the gateway adds the verdict it decides)."""
        return {
            "probability_fake": round(self.prob_fake, 6),
            "threshold": threshold,
            "face_found": self.face_found,
            "frames_analyzed": int(len(self.frame_indices)),
            "faces_detected": int(self.has_face.sum()),
            "video": {
                "width": self.width,
                "height": self.height,
                "fps": round(self.fps, 3),
                "frames": self.frame_count,
            },
            "frame_scores": self.frames_json(),
            "faces": self.faces_json(threshold),
            "deciding_face": self.deciding_face if self.face_tracks() else None,
            "faces_not_analysed": self.unanalysed_faces,
        }
