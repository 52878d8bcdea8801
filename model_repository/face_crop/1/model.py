"""face_crop: square crops with margin around each tracked face, resized to 224 and normalised."""

from __future__ import annotations

from typing import Any

import numpy as np

from deepfake_core.crop import crop_faces
from deepfake_core.preprocess import normalize_crops
from deepfake_core.triton_glue import input_array, invalid_argument, response


class TritonPythonModel:
    """Crop the same boxes the detector reported, per track; frames without the face are masked, not faked."""

    def initialize(self, args: dict[str, str]) -> None:
        pass

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._crop(request) for request in requests]

    @staticmethod
    def _crop(request: Any) -> Any:
        frames = input_array(request, "FRAMES")
        boxes = input_array(request, "FACE_BOXES")
        present = input_array(request, "HAS_FACE")
        scale = input_array(request, "SCALE")
        if frames is None or boxes is None or present is None or scale is None or frames.ndim != 5:
            return invalid_argument("face_crop needs FRAMES [1,T,H,W,3], FACE_BOXES [1,F,T,4], HAS_FACE [1,F,T], SCALE")
        if boxes.ndim != 4 or present.ndim != 3 or not frames.shape[1] == boxes.shape[2] == present.shape[2]:
            return invalid_argument("FRAMES, FACE_BOXES and HAS_FACE must cover the same frames")
        mask = present[0].astype(bool)  # [F, T]
        to_frames = float(scale.reshape(-1)[0])  # boxes: original -> frames' pixels
        crops = np.stack([crop_faces(frames[0], track * to_frames, m) for track, m in zip(boxes[0], mask, strict=True)])
        return response(
            {
                "FACES": normalize_crops(crops)[None],
                "FACE_MASK": mask.astype(np.float32)[None],
                "FACE_FOUND": np.array([[mask.any()]], bool),
            }
        )
