"""face_detector: MTCNN on the key frames of every batched request, O-Net following faces in between
(deepfake_core.face_following), then the analysed face tracks (deepfake_core.face_tracks.analysed_tracks): up to
`max_faces` of them, most prominent first, one row each.

P-Net, R-Net and O-Net are the ONNX models mtcnn_pnet/rnet/onet, called through BLS; frames of the same size from
all requests in the batch go through each network together.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import numpy as np

from deepfake_core import constants as C
from deepfake_core.face_following import track_faces
from deepfake_core.face_tracks import FaceTrack, analysed_tracks
from deepfake_core.mtcnn_cascade import DetectorParams, FrameFaces, MtcnnNets
from deepfake_core.triton_glue import (
    bls_call,
    input_array,
    internal_error,
    invalid_argument,
    model_parameters,
    response,
)


def _net(model: str, outputs: list[str]) -> Any:
    return lambda x: bls_call(model, {"image": x}, outputs)


class TritonPythonModel:
    """Detect faces and pick the analysed tracks per video."""

    def initialize(self, args: dict[str, str]) -> None:
        p = model_parameters(json.loads(args["model_config"]))
        self.params = DetectorParams(
            detect_max_side=int(p.get("detect_max_side", C.MTCNN_DETECT_MAX_SIDE)),
            min_face_fraction=float(p.get("min_face_fraction", C.MTCNN_MIN_FACE_FRACTION)),
            min_face_px=float(p.get("min_face_px", C.MTCNN_MIN_FACE_PX)),
            rnet_per_frame=int(p.get("rnet_per_frame", C.MTCNN_RNET_PER_FRAME)),
            onet_per_frame=int(p.get("onet_per_frame", C.MTCNN_ONET_PER_FRAME)),
            key_stride=int(p.get("key_stride", C.MTCNN_KEY_STRIDE)),
        )
        self.max_faces = int(p.get("max_faces", C.MAX_FACES))
        if self.max_faces < 1:
            raise ValueError(f"max_faces must be at least 1, got {self.max_faces}")
        self.params.followed_tracks = self.max_faces + 2
        self.nets = MtcnnNets(
            pnet=_net("mtcnn_pnet", ["prob", "reg"]),
            rnet=_net("mtcnn_rnet", ["prob", "reg"]),
            onet=_net("mtcnn_onet", ["prob", "reg", "landmarks"]),
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        videos: dict[int, tuple[np.ndarray, float]] = {}
        for i, request in enumerate(requests):
            frames, scale = input_array(request, "FRAMES"), input_array(request, "SCALE")
            if frames is None or scale is None or frames.ndim != 5 or frames.shape[0] != 1 or frames.shape[-1] != 3:
                responses[i] = invalid_argument("FRAMES must have shape [1, T, H, W, 3] (RGB)")
                continue
            videos[i] = (frames[0], float(scale.reshape(-1)[0]))

        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (frames, _) in videos.items():
            by_size[frames.shape[1:3]].append(i)
        for members in by_size.values():
            try:
                frames = np.concatenate([videos[i][0] for i in members])
                owner = np.repeat(np.arange(len(members)), [len(videos[i][0]) for i in members])
                found = track_faces(frames, self.nets, self.params, video_ids=owner)
            except Exception as exc:  # noqa: BLE001 - a failing BLS call fails these requests, not the server
                for i in members:
                    responses[i] = internal_error(f"face detection failed: {exc}")
                continue
            start = 0
            for i in members:
                frames, scale = videos[i]
                responses[i] = self._tracks(found[start : start + len(frames)], scale)
                start += len(frames)
        return responses

    def _tracks(self, faces: list[FrameFaces], scale: float) -> Any:
        """One row per analysed track ([F, T, ...]); a single empty row when no face was found."""
        chosen = analysed_tracks(faces, self.max_faces)
        t = len(faces)
        tracks = chosen.tracks or [
            FaceTrack(
                boxes=np.zeros((t, 4), np.float32),
                scores=np.zeros(t, np.float32),
                landmarks=np.zeros((t, 5, 2), np.float32),
                present=np.zeros(t, bool),
            )
        ]
        to_original = 1.0 / scale if scale > 0 else 1.0
        boxes = np.stack([track.boxes for track in tracks]) * to_original
        present = np.stack([track.present for track in tracks])
        return response(
            {
                "FACE_BOXES": boxes[None],
                "LANDMARKS": (np.stack([track.landmarks for track in tracks]) * to_original)[None],
                "FACE_SCORES": np.stack([track.scores for track in tracks])[None],
                "HAS_FACE": present[None],
                # The same boxes and mask again, as the client's copies: no ensemble output may also be a step's
                # input (model_repository/README.md, "Subsets of outputs").
                "TRACK_BOXES": boxes[None],
                "TRACK_HAS_FACE": present[None],
                "UNANALYSED_FACES": np.array([[chosen.unanalysed]], np.int32),
            }
        )
