"""Clip augmentations that match what served videos go through: re-compression (JPEG, H.264), downscaling,
blur, noise, colour changes and mirroring.

One draw per clip: every frame of a clip gets the same operations with the same strengths (a video is
compressed and scaled as a whole). Real and fake clips go through the same random pipeline, so the classifier
can't tell them apart by resolution or codec (the shortcut the shared training set warns about): the random
downscale to a face size of 80..200 px plus re-compression puts both classes on the same footing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import cv2
import numpy as np

__all__ = ["AugmentConfig", "augment_clip", "h264_roundtrip", "jpeg_roundtrip"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each operation (``AugmentConfig.off()`` disables all)."""

    flip: float = 0.5
    downscale: float = 0.4
    downscale_px: tuple[int, int] = (80, 200)  # face crop side the clip is reduced to, then scaled back up
    jpeg: float = 0.35
    jpeg_quality: tuple[int, int] = (50, 95)
    h264: float = 0.15
    h264_crf: tuple[int, int] = (18, 32)
    blur: float = 0.1
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    noise: float = 0.1
    noise_std: tuple[float, float] = (1.0, 5.0)
    colour: float = 0.3
    shift: float = 0.0
    shift_px: float = 4.0  # largest translation of the whole clip, in crop pixels
    border: float = 0.0
    border_frac: tuple[float, float] = (0.05, 0.3)  # black band on one or two sides, as a face off the frame gives

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(flip=0, downscale=0, jpeg=0, h264=0, blur=0, noise=0, colour=0, shift=0, border=0)

    @classmethod
    def robust(cls) -> AugmentConfig:
        """Round 3: nearly every clip re-encoded in H.264 at CRF 18..40 (reals and fakes alike, so "compressed"
        can't mean "real"), downscaled half the time, and small noise and shifts (a score must not move for a
        grey level or a pixel), and black bands on a quarter of the clips (padding must not mean "real")."""
        return cls(
            downscale=0.5,
            h264=0.85,
            h264_crf=(18, 40),
            jpeg=0.5,
            blur=0.15,
            noise=0.5,
            noise_std=(0.5, 3.0),
            shift=0.4,
            border=0.25,
        )


def jpeg_roundtrip(frame: np.ndarray, quality: int) -> np.ndarray:
    """RGB uint8 frame encoded as JPEG at ``quality`` and decoded."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        return frame
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def h264_roundtrip(frames: np.ndarray, crf: int) -> np.ndarray:
    """RGB uint8 frames [T,H,W,3] (even H, W) encoded as H.264 yuv420p at ``crf`` in memory and decoded."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast", "crf": str(int(crf))})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer, mode="r") as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if len(decoded) != len(frames):
        return frames
    return np.stack(decoded)


def augment_clip(
    crops: np.ndarray, present: np.ndarray, rng: np.random.Generator, config: AugmentConfig | None = None
) -> np.ndarray:
    """Augmented copy of uint8 crops [T,H,W,3]; frames without a face (``present`` False) stay black."""
    cfg = config or AugmentConfig()
    out = crops.copy()
    t, h, w = crops.shape[:3]
    if rng.uniform() < cfg.flip:
        out = out[:, :, ::-1]
    if rng.uniform() < cfg.colour:
        gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)
        bias = np.float32(rng.uniform(-15, 15))
        gamma = float(rng.uniform(0.8, 1.25))
        x = out.astype(np.float32) / 255.0
        x = np.power(np.clip(x * gain + bias / 255.0, 0, 1), gamma)
        out = (x * 255.0 + 0.5).astype(np.uint8)
    if rng.uniform() < cfg.shift:
        dx, dy = rng.uniform(-cfg.shift_px, cfg.shift_px, 2)
        m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
        out = np.stack([cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REFLECT) for f in out])
    if rng.uniform() < cfg.border:
        out = out.copy()
        for side in rng.choice(4, size=int(rng.integers(1, 3)), replace=False):
            band = int(round(rng.uniform(*cfg.border_frac) * (h if side < 2 else w)))
            if side == 0:
                out[:, :band] = 0
            elif side == 1:
                out[:, h - band :] = 0
            elif side == 2:
                out[:, :, :band] = 0
            else:
                out[:, :, w - band :] = 0
    if rng.uniform() < cfg.downscale:
        side = int(rng.integers(cfg.downscale_px[0], cfg.downscale_px[1] + 1))
        if side < h:
            up = cv2.INTER_LINEAR if rng.uniform() < 0.5 else cv2.INTER_CUBIC
            out = np.stack(
                [
                    cv2.resize(cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA), (w, h), interpolation=up)
                    for f in out
                ]
            )
    if rng.uniform() < cfg.blur:
        sigma = float(rng.uniform(*cfg.blur_sigma))
        out = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in out])
    if rng.uniform() < cfg.noise:
        std = float(rng.uniform(*cfg.noise_std))
        noise = rng.normal(0.0, std, size=out.shape).astype(np.float32)
        out = np.clip(out.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.uniform() < cfg.h264 and h % 2 == 0 and w % 2 == 0:
        out = h264_roundtrip(np.ascontiguousarray(out), int(rng.integers(cfg.h264_crf[0], cfg.h264_crf[1] + 1)))
    elif rng.uniform() < cfg.jpeg:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        out = np.stack([jpeg_roundtrip(np.ascontiguousarray(f), quality) for f in out])
    out = np.ascontiguousarray(out)
    out[~present] = 0
    return out
