"""video_decode: raw video bytes -> T evenly spaced RGB frames, their indices and timestamps, fps, size."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from deepfake_core import constants as C
from deepfake_core.decode import VideoError, VideoLimits, sample_video
from deepfake_core.triton_glue import input_array, invalid_argument, model_parameters, response


class TritonPythonModel:
    """Decode each request's video in one sequential pass; bad videos fail only their own request."""

    def initialize(self, args: dict[str, str]) -> None:
        params = model_parameters(json.loads(args["model_config"]))
        self.limits = VideoLimits(
            max_pixels=int(params.get("max_pixels", VideoLimits.max_pixels)),
            max_duration_s=float(params.get("max_duration_s", VideoLimits.max_duration_s)),
        )
        self.max_side = int(params.get("analysis_max_side", C.ANALYSIS_MAX_SIDE))
        self.threads = int(params.get("decode_threads", C.VERDICT_DECODE_THREADS))

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._decode(request) for request in requests]

    def _decode(self, request: Any) -> Any:
        video = input_array(request, "VIDEO")
        num = input_array(request, "NUM_FRAMES")
        if video is None or video.shape[0] != 1:
            return invalid_argument("send exactly one video per request (VIDEO shape [1, num_bytes])")
        num_frames = C.NUM_FRAMES if num is None else int(num.reshape(-1)[0])
        if not 1 <= num_frames <= C.MAX_NUM_FRAMES:
            return invalid_argument(f"NUM_FRAMES must be between 1 and {C.MAX_NUM_FRAMES}, got {num_frames}")
        if video.shape[1] == 0:
            return invalid_argument("the video is empty (0 bytes)")
        try:
            s = sample_video(io.BytesIO(video[0]), num_frames, self.max_side, self.limits, threads=self.threads)
        except VideoError as exc:
            return invalid_argument(str(exc))
        return response(
            {
                "FRAMES": s.frames[None],
                "FRAME_INDICES": s.indices.astype(np.int64)[None],
                "TIMESTAMPS": s.timestamps.astype(np.float32)[None],
                "FPS": np.array([[s.fps]], np.float32),
                "FRAME_COUNT": np.array([[s.frame_count]], np.int64),
                "FRAME_SIZE": np.array([[s.width, s.height]], np.int32),
                "SCALE": np.array([[s.scale]], np.float32),
            }
        )
