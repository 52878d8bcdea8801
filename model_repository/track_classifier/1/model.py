"""track_classifier: every analysed face track of every batched video through temporal_classifier (BLS) as one
batch, then the video's verdict from its tracks (deepfake_core.face_verdicts).

The classifier's batch dimension carries the tracks: a video with F faces is F rows of [T, 3, 224, 224], and the
tracks of all requests in a dynamic batch go together (split into calls of at most `classifier_batch` rows).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np

from deepfake_core import constants as C
from deepfake_core.face_verdicts import video_verdict
from deepfake_core.triton_glue import (
    bls_call,
    input_array,
    internal_error,
    invalid_argument,
    model_parameters,
    response,
)

CLASSIFIER = C.CLASSIFIER_MODEL
CLASSIFIER_OUTPUTS = ["PROB_FAKE", "VIDEO_LOGIT", "FRAME_SCORES", "FEATURE_MAPS"]
TRACK_INPUTS = ("FACES", "FACE_MASK", "FACE_BOXES", "LANDMARKS", "FACE_SCORES")


class TritonPythonModel:
    """Classify the tracks, pick the deciding face, answer with its outputs and every track's."""

    def initialize(self, args: dict[str, str]) -> None:
        p = model_parameters(json.loads(args["model_config"]))
        self.batch = max(1, int(p.get("classifier_batch", "8")))

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        videos: dict[int, dict[str, np.ndarray]] = {}
        for i, request in enumerate(requests):
            arrays = {name: input_array(request, name) for name in TRACK_INPUTS}
            faces, mask = arrays["FACES"], arrays["FACE_MASK"]
            if any(a is None for a in arrays.values()) or faces is None or mask is None or faces.ndim != 6:
                responses[i] = invalid_argument("track_classifier needs FACES [1,F,T,3,224,224] and the tracks")
                continue
            if faces.shape[:3] != mask.shape or faces.shape[0] != 1:
                responses[i] = invalid_argument("FACES and FACE_MASK must have the same tracks and frames")
                continue
            videos[i] = {name: a[0] for name, a in arrays.items() if a is not None}

        by_frames: dict[int, list[int]] = defaultdict(list)
        for i, video in videos.items():
            by_frames[video["FACES"].shape[1]].append(i)
        for members in by_frames.values():
            try:
                rows = self._classify(
                    np.concatenate([videos[i]["FACES"] for i in members]),
                    np.concatenate([videos[i]["FACE_MASK"] for i in members]),
                )
            except Exception as exc:  # noqa: BLE001 - a failing BLS call fails these requests, not the server
                for i in members:
                    responses[i] = internal_error(f"classification failed: {exc}")
                continue
            start = 0
            for i in members:
                count = len(videos[i]["FACES"])
                responses[i] = self._answer(videos[i], [r[start : start + count] for r in rows])
                start += count
        return responses

    def _classify(self, faces: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        """temporal_classifier's outputs for rows [N, T, ...], in calls of at most `self.batch` rows."""
        parts = [
            bls_call(
                CLASSIFIER,
                {"FACES": faces[s : s + self.batch], "FACE_MASK": mask[s : s + self.batch]},
                CLASSIFIER_OUTPUTS,
            )
            for s in range(0, len(faces), self.batch)
        ]
        return [np.concatenate([part[k] for part in parts]) for k in range(len(CLASSIFIER_OUTPUTS))]

    @staticmethod
    def _answer(video: dict[str, np.ndarray], rows: list[np.ndarray]) -> Any:
        prob, logit, frame_scores, maps = rows
        present = video["FACE_MASK"] > 0
        d = video_verdict(prob[:, 0], present)
        return response(
            {
                "PROB_FAKE": prob[d][None],
                "VIDEO_LOGIT": logit[d][None],
                "FRAME_SCORES": frame_scores[d][None],
                "FEATURE_MAPS": maps[d][None],
                "HAS_FACE": present[d][None],
                "FACE_BOXES": video["FACE_BOXES"][d][None],
                "LANDMARKS": video["LANDMARKS"][d][None],
                "FACE_SCORES": video["FACE_SCORES"][d][None],
                "TRACK_PROB_FAKE": prob[:, 0][None],
                "TRACK_FRAME_SCORES": frame_scores[None],
                "TRACK_FEATURE_MAPS": maps[None],
                "DECIDING_FACE": np.array([[d]], np.int32),
                # The same index again, for face_crop_images (no ensemble output may be a step's input).
                "DECIDER": np.array([[d]], np.int32),
            }
        )
