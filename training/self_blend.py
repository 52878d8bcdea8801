"""Self-blended images (SBI; Shiohara and Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022).

A fake is made from a real face alone: a copy of the face is transformed (colour, sharpness, a small shift and
scale) and blended back over the original through a soft face mask built from landmarks. The result has the
statistical traces of face swapping (a blending boundary, colour and frequency mismatch inside the face region,
slight misalignment) without any identity change, so a classifier trained on it learns those traces rather than
one generator's fingerprints, which is what lets SBI models generalise to unseen face-swap methods.

MTCNN gives only 5 landmarks (eyes, nose, mouth corners), not SBI's 68/81, so the mask is an ellipse or an
enlarged convex hull fitted to them, randomly sized to reach from brows to chin, then elastically deformed,
blurred and scaled by a blend ratio.

For a clip, ONE ``BlendParams`` draw is applied to all T frames (the mask follows each frame's landmarks): a real
face-swap is consistent over time, and a per-frame random blend would teach the temporal model a flicker cue
that real deepfakes don't have.

Pixels where the mask is 0 are returned unchanged (bit-exact); only the masked region is altered.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["BlendParams", "blend_mask", "draw_params", "self_blend", "self_blend_clip", "transform_source"]


@dataclass(frozen=True)
class BlendParams:
    """Everything random about one self-blend (shared by all frames of a clip)."""

    hull: bool  # True: enlarged convex hull of the landmarks; False: ellipse
    width_scale: float  # mask half-width, in eye distances
    height_scale: float  # mask half-height, in eye-to-mouth distances
    centre_shift: float  # mask centre moved up (negative) or down, in eye-to-mouth distances
    elastic_amplitude: float  # pixels
    elastic_seed: int
    blur_sigma: float  # mask edge softness, pixels
    blend_ratio: float  # mask maximum (1 = the transformed face replaces the original inside the mask)
    rgb_shift: tuple[float, float, float]  # added to each channel of the source copy
    hue_shift: float  # degrees
    sat_scale: float
    brightness: float  # added, 0..255 scale
    contrast: float  # multiplies deviations from the mean
    sharpness: float  # <0 blur, >0 sharpen (unsharp mask amount), 0 none
    scale: float  # source copy scaled about the face centre
    shift: tuple[float, float]  # source copy shift, fraction of the crop size


def draw_params(rng: np.random.Generator) -> BlendParams:
    """One random draw of ``BlendParams`` (ranges after SBI's source-target augmentation)."""
    sharp = 0.0
    u = rng.uniform()
    if u < 0.3:
        sharp = -float(rng.uniform(0.5, 1.5))
    elif u < 0.6:
        sharp = float(rng.uniform(0.3, 1.0))
    return BlendParams(
        hull=bool(rng.uniform() < 0.5),
        width_scale=float(rng.uniform(0.95, 1.35)),
        height_scale=float(rng.uniform(1.5, 2.1)),
        centre_shift=float(rng.uniform(-0.35, 0.05)),
        elastic_amplitude=float(rng.uniform(0.0, 8.0)),
        elastic_seed=int(rng.integers(0, 2**31 - 1)),
        blur_sigma=float(rng.uniform(2.0, 9.0)),
        blend_ratio=float(rng.choice([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])),
        rgb_shift=tuple(float(v) for v in rng.uniform(-20, 20, 3)),  # type: ignore[arg-type]
        hue_shift=float(rng.uniform(-10, 10)),
        sat_scale=float(rng.uniform(0.8, 1.2)),
        brightness=float(rng.uniform(-20, 20)),
        contrast=float(rng.uniform(0.85, 1.15)),
        sharpness=sharp,
        scale=float(rng.uniform(0.95, 1.05)),
        shift=(float(rng.uniform(-0.03, 0.03)), float(rng.uniform(-0.03, 0.03))),
    )


def _face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """(centre, eye distance, eye-to-mouth distance, roll angle in degrees) from 5 MTCNN landmarks."""
    eyes = landmarks[:2].mean(0)
    mouth = landmarks[3:5].mean(0)
    eye_vec = landmarks[1] - landmarks[0]
    eye_dist = max(float(np.hypot(*eye_vec)), 4.0)
    em = max(float(np.hypot(*(mouth - eyes))), 4.0)
    angle = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    centre = (eyes + mouth) / 2.0
    return centre, eye_dist, em, angle


def _elastic(mask: np.ndarray, amplitude: float, seed: int) -> np.ndarray:
    if amplitude <= 0:
        return mask
    h, w = mask.shape
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-1.0, 1.0, size=(2, 6, 6)).astype(np.float32)
    dx = cv2.resize(coarse[0], (w, h), interpolation=cv2.INTER_CUBIC) * amplitude
    dy = cv2.resize(coarse[1], (w, h), interpolation=cv2.INTER_CUBIC) * amplitude
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,))


def blend_mask(shape: tuple[int, int], landmarks: np.ndarray, params: BlendParams) -> np.ndarray:
    """Soft face mask float32 [H, W] in [0, blend_ratio] from 5 landmarks [5, 2] (pixel x, y)."""
    h, w = shape
    centre, eye_dist, em, angle = _face_frame(landmarks)
    theta = np.radians(angle)
    down = np.array([-np.sin(theta), np.cos(theta)])  # face "down" direction
    centre = centre + down * params.centre_shift * em
    half_w = params.width_scale * eye_dist
    half_h = params.height_scale * em
    hard = np.zeros((h, w), np.float32)
    if params.hull:
        # Landmarks pushed out from the centre, plus brow and chin points, to cover the whole face.
        right = np.array([np.cos(theta), np.sin(theta)])
        pts = [centre + (p - centre) * 1.6 for p in landmarks]
        pts += [centre - down * half_h + right * s * half_w * 0.7 for s in (-1, 1)]
        pts += [centre + down * half_h * 0.9 + right * s * half_w * 0.5 for s in (-1, 1)]
        pts += [centre + right * s * half_w for s in (-1, 1)]
        hull = cv2.convexHull(np.round(np.array(pts)).astype(np.int32))
        cv2.fillConvexPoly(hard, hull, (1.0,))
    else:
        cv2.ellipse(
            hard,
            (round(float(centre[0])), round(float(centre[1]))),
            (max(1, round(half_w)), max(1, round(half_h))),
            angle,
            0,
            360,
            (1.0,),
            -1,
        )
    hard = _elastic(hard, params.elastic_amplitude, params.elastic_seed)
    soft = cv2.GaussianBlur(hard, (0, 0), params.blur_sigma)
    soft = np.where(soft < 1e-3, 0.0, soft).astype(np.float32)  # no faint tails: exact 0 means untouched
    return np.clip(soft, 0.0, 1.0) * params.blend_ratio


def transform_source(image: np.ndarray, landmarks: np.ndarray, params: BlendParams) -> np.ndarray:
    """The colour/sharpness/geometry-transformed copy of an RGB uint8 image, float32 [H, W, 3] in 0..255."""
    img: np.ndarray = image.astype(np.float32)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + params.hue_shift * 256.0 / 360.0) % 256.0
    hsv[..., 1] = np.clip(hsv[..., 1] * params.sat_scale, 0, 255)
    img = cv2.cvtColor(hsv.round().astype(np.uint8), cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
    img = img + np.asarray(params.rgb_shift, np.float32)
    img = (img - img.mean()) * params.contrast + img.mean() + params.brightness
    if params.sharpness < 0:
        img = cv2.GaussianBlur(img, (0, 0), -params.sharpness)
    elif params.sharpness > 0:
        img = img + params.sharpness * (img - cv2.GaussianBlur(img, (0, 0), 1.5))
    h, w = image.shape[:2]
    centre, *_ = _face_frame(landmarks)
    matrix = np.asarray(cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 0.0, params.scale), np.float64)
    matrix[:, 2] += (params.shift[0] * w, params.shift[1] * h)
    img = cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(img, 0, 255)


def self_blend(image: np.ndarray, landmarks: np.ndarray, params: BlendParams) -> tuple[np.ndarray, np.ndarray]:
    """(blended RGB uint8 image, mask float32 [H, W]). Pixels with mask 0 are exactly the input's."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
    mask = blend_mask((image.shape[0], image.shape[1]), landmarks, params)
    source = transform_source(image, landmarks, params)
    m = mask[..., None]
    blended = np.clip(np.round(source * m + image.astype(np.float32) * (1.0 - m)), 0, 255).astype(np.uint8)
    return np.where(m > 0, blended, image), mask


def self_blend_clip(
    crops: np.ndarray, landmarks: np.ndarray, present: np.ndarray, params: BlendParams
) -> tuple[np.ndarray, np.ndarray]:
    """Self-blend every face frame of a clip with the same ``params``: crops [T,H,W,3] uint8, landmarks
    [T,5,2], present [T] -> (blended crops, masks [T,H,W]); frames without a face are left as they are."""
    out = crops.copy()
    masks = np.zeros(crops.shape[:3], np.float32)
    for t in np.flatnonzero(present):
        out[t], masks[t] = self_blend(crops[t], landmarks[t], params)
    return out, masks
