"""face_crop_images: the deciding face's normalised FACES (track DECIDING_FACE of [1,F,T,3,224,224]) -> the RGB
uint8 crops [1,T,224,224,3] they were made from."""

from __future__ import annotations

from typing import Any

from deepfake_core.preprocess import denormalize_crops
from deepfake_core.triton_glue import input_array, invalid_argument, response


class TritonPythonModel:
    """Undo the classifier's normalisation (exact for uint8 pixels); runs only when a client asks for FACE_CROPS."""

    def initialize(self, args: dict[str, str]) -> None:
        pass

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._images(request) for request in requests]

    @staticmethod
    def _images(request: Any) -> Any:
        faces = input_array(request, "FACES")
        decider = input_array(request, "DECIDING_FACE")
        if faces is None or faces.ndim != 6 or faces.shape[0] != 1 or faces.shape[3] != 3 or decider is None:
            return invalid_argument("face_crop_images needs FACES [1, F, T, 3, H, W] and DECIDING_FACE [1, 1]")
        track = int(decider.reshape(-1)[0])
        if not 0 <= track < faces.shape[1]:
            return invalid_argument(f"DECIDING_FACE {track} is not one of the {faces.shape[1]} tracks")
        return response({"FACE_CROPS": denormalize_crops(faces[:, track])})
