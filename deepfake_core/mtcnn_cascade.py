"""The MTCNN cascade (P-Net -> R-Net -> O-Net) in NumPy, batched across frames.

A port of facenet-pytorch's `detect_face` with the three networks pluggable: Triton's face_detector calls them
through BLS, training and tests through ONNX Runtime or torch. P-Net runs once per pyramid scale on all frames of
that size at once; R-Net and O-Net run once on the candidates of all frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from deepfake_core import constants as C

# (images float32 [N,3,H,W]) -> tuple of float32 arrays, see NETWORK OUTPUTS below.
NetFn = Callable[[np.ndarray], Sequence[np.ndarray]]


@dataclass
class MtcnnNets:
    """The three networks as callables.

    pnet(x[N,3,H,W]) -> (prob[N,2,h,w], reg[N,4,h,w]); rnet(x[N,3,24,24]) -> (prob[N,2], reg[N,4]);
    onet(x[N,3,48,48]) -> (prob[N,2], reg[N,4], landmarks[N,10]). Inputs are normalised by `normalize`.
    """

    pnet: NetFn
    rnet: NetFn
    onet: NetFn


@dataclass
class DetectorParams:
    """Knobs of the cascade. Defaults come from the shared constants."""

    thresholds: tuple[float, float, float] = C.MTCNN_THRESHOLDS
    factor: float = C.MTCNN_SCALE_FACTOR
    detect_max_side: int = C.MTCNN_DETECT_MAX_SIDE
    min_face_fraction: float = C.MTCNN_MIN_FACE_FRACTION
    min_face_px: float = C.MTCNN_MIN_FACE_PX
    max_batch: int = 256  # largest R-Net/O-Net call; bigger candidate sets are split
    pnet_max_batch: int = 64  # largest P-Net call, in frames
    # Probe pass: the full pyramid runs on this many evenly spaced frames first; the other frames then only search
    # faces from PROBE_SIZE_SLACK times the smallest face found (the full pyramid again if the probe found none).
    probe_frames: int = 4
    probe_size_slack: float = 0.6
    # Candidates kept per frame after P-Net and after R-Net (best scores first): bounds R-Net/O-Net work on busy
    # frames; the cascade keeps only a handful of boxes per face anyway.
    # Measured on the 10 s 720p benchmark clip: 0.60 s -> 0.39 s for 32 frames at 20/4, box IoU unchanged on the
    # test fixtures; 24/8 leaves room for several people per frame.
    rnet_per_frame: int = C.MTCNN_RNET_PER_FRAME
    onet_per_frame: int = C.MTCNN_ONET_PER_FRAME
    # face_following.track_faces: the full cascade on every key_stride-th frame, O-Net follows faces in between
    # (1: the cascade on every frame).
    key_stride: int = C.MTCNN_KEY_STRIDE
    # face_following.track_faces follows this many of the most prominent key-frame tracks between key frames: the
    # faces that will be classified (MAX_FACES) and two runners-up, which may still overtake them over all frames.
    followed_tracks: int = C.MAX_FACES + 2


@dataclass
class FrameFaces:
    """Faces found in one frame, in the input frame's pixel coordinates."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # x1, y1, x2, y2
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 5, 2), np.float32))  # (x, y) each


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8/float NHWC RGB -> float32 NCHW scaled as MTCNN was trained ((x - 127.5) / 128)."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2)
    return (x - 127.5) * 0.0078125


def _resize_batch(images: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.stack([cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA) for im in images])


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Non-maximum suppression; returns kept indices, best first.

    "union" (IoU) runs in OpenCV's C++; "min" (intersection over the smaller box, used once on few final boxes)
    in NumPy.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    if mode == "union":
        xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
        keep = cv2.dnn.NMSBoxes(xywh.astype(np.float64).tolist(), scores.astype(np.float64).tolist(), 0.0, threshold)
        return np.asarray(keep, dtype=np.int64).reshape(-1)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)[::-1]
    kept = []
    while order.size:
        i = order[0]
        kept.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        order = rest[(w * h) / np.minimum(area[i], area[rest]) <= threshold]
    return np.asarray(kept, dtype=np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, image_ids: np.ndarray, threshold: float, mode: str = "union"
) -> np.ndarray:
    """NMS within each image: boxes of different images are shifted apart so they never overlap."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    offset = image_ids.astype(np.float32)[:, None] * (boxes.max() + 1.0)
    return nms(boxes + offset, scores, threshold, mode)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow boxes to squares around their centres (facenet's rerec)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply bounding-box regression (facenet's bbreg)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _crop_patches(images: np.ndarray, image_ids: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Cut each box from its image (clipped to the image, as facenet's pad) and resize it to size x size."""
    n, h, w = images.shape[:3]
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x1 = np.maximum(b[:, 0], 1)
    y1 = np.maximum(b[:, 1], 1)
    x2 = np.minimum(b[:, 2], w)
    y2 = np.minimum(b[:, 3], h)
    out = np.zeros((len(boxes), size, size, 3), dtype=np.uint8)
    for k in range(len(boxes)):
        if y2[k] > y1[k] - 1 and x2[k] > x1[k] - 1:
            patch = images[image_ids[k], y1[k] - 1 : y2[k], x1[k] - 1 : x2[k]]
            if patch.size:
                out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


def _top_per_image(image_ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the first k entries of each image in `image_ids` (entries come best first, as NMS returns)."""
    order = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[order]
    rank = np.arange(len(order)) - np.searchsorted(sorted_ids, sorted_ids, side="left")
    return np.sort(order[rank < k])


def _run_chunked(fn: NetFn, x: np.ndarray, chunk: int) -> list[np.ndarray]:
    parts = [fn(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """P-Net image scales: the smallest searched face maps to P-Net's 12 px window, down to a 12 px image."""
    scale = 12.0 / min_face
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def detection_scale(height: int, width: int, max_side: int) -> float:
    """Factor that brings a frame down to the detection resolution (never up)."""
    return min(1.0, max_side / max(height, width))


def detection_images(frames: np.ndarray, params: DetectorParams) -> tuple[np.ndarray, float]:
    """Frames [N,H,W,3] brought down to the detection resolution (never up), and the factor applied."""
    height, width = frames.shape[1:3]
    ds = detection_scale(height, width, params.detect_max_side)
    if ds >= 1.0:
        return frames, 1.0
    return _resize_batch(frames, max(1, round(height * ds)), max(1, round(width * ds))), ds


def detect_faces(
    frames: np.ndarray,
    nets: MtcnnNets,
    params: DetectorParams | None = None,
    video_ids: np.ndarray | None = None,
) -> list[FrameFaces]:
    """Run the cascade on frames [N,H,W,3] uint8 RGB (same size). Returns one FrameFaces per frame.

    `video_ids` [N] tells which video each frame belongs to when frames of several videos are batched together;
    each video gets its own probe pass, so its result does not depend on what it was batched with.
    """
    params = params or DetectorParams()
    images, ds = detection_images(frames, params)
    ids = np.zeros(len(frames), np.int64) if video_ids is None else np.asarray(video_ids)
    return scale_faces(detect_scaled(images, nets, params, ids), 1.0 / ds)


def scale_faces(found: Sequence[FrameFaces], factor: float) -> list[FrameFaces]:
    """Coordinates multiplied by `factor` (detection resolution -> frame pixels)."""
    return [
        FrameFaces(
            boxes=(f.boxes * factor).astype(np.float32),
            scores=f.scores,
            landmarks=(f.landmarks * factor).astype(np.float32),
        )
        for f in found
    ]


def detect_scaled(images: np.ndarray, nets: MtcnnNets, params: DetectorParams, ids: np.ndarray) -> list[FrameFaces]:
    """`detect_faces` on images already at detection resolution; coordinates in those images' pixels."""
    n = len(images)
    if n == 0:
        return []
    base_min_face = max(params.min_face_px, params.min_face_fraction * min(images.shape[1:3]))
    min_face = np.full(n, base_min_face)
    probe = np.zeros(n, bool)
    for video in np.unique(ids):
        members = np.flatnonzero(ids == video)
        if len(members) > params.probe_frames > 0:
            picks = np.unique(np.linspace(0, len(members) - 1, params.probe_frames).round().astype(np.int64))
            probe[members[picks]] = True
    found: list[FrameFaces] = [FrameFaces() for _ in range(n)]
    first = np.flatnonzero(probe)
    for i, faces in zip(first, _cascade(images[first], nets, params, base_min_face, min_face[first]), strict=True):
        found[i] = faces
    for video in np.unique(ids[probe]):
        sizes = [
            float(np.sqrt(np.prod(found[i].boxes[:, 2:] - found[i].boxes[:, :2], axis=1)).min())
            for i in np.flatnonzero(probe & (ids == video))
            if len(found[i].boxes)
        ]
        if sizes:
            min_face[ids == video] = max(base_min_face, params.probe_size_slack * min(sizes))
    rest = np.flatnonzero(~probe)
    for i, faces in zip(rest, _cascade(images[rest], nets, params, base_min_face, min_face[rest]), strict=True):
        found[i] = faces
    return found


def refine_boxes(
    images: np.ndarray, image_ids: np.ndarray, boxes: np.ndarray, nets: MtcnnNets, params: DetectorParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """O-Net on given boxes (one per entry of `image_ids`): (accepted [K] bool, boxes [K,4], scores [K],
    landmarks [K,5,2]), as the cascade's last stage computes them. Used to follow a face between detections."""
    if len(boxes) == 0:
        return np.zeros(0, bool), np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    boxes = _square(np.asarray(boxes, np.float32))
    ok, refined, score, points = _onet(images, image_ids, boxes, nets, params)
    return ok, refined.astype(np.float32), score.astype(np.float32), points.astype(np.float32)


def _onet(
    images: np.ndarray, image_ids: np.ndarray, boxes: np.ndarray, nets: MtcnnNets, params: DetectorParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The O-Net stage on square boxes: (accepted, regressed boxes, scores, landmarks), one row per box."""
    prob, reg, marks = _run_chunked(nets.onet, normalize(_crop_patches(images, image_ids, boxes, 48)), params.max_batch)
    ok = prob[:, 1] > params.thresholds[2]
    bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    points = np.stack([bw * marks[:, :5] + boxes[:, :1] - 1, bh * marks[:, 5:] + boxes[:, 1:2] - 1], axis=-1)
    return ok, _regress(boxes, reg), prob[:, 1], points


def _cascade(
    images: np.ndarray, nets: MtcnnNets, params: DetectorParams, base_min_face: float, min_face: np.ndarray
) -> list[FrameFaces]:
    """P-Net -> R-Net -> O-Net on images at detection resolution; coordinates in those images' pixels.

    The pyramid's scales are fixed by `base_min_face` (so they are the same whatever the batch holds); image i takes
    part in the scales that search faces of at least min_face[i] pixels. Each level is resized from the full
    images, as facenet-pytorch does (resizing from the previous level is cheaper but shifts boxes by pixels).
    """
    n = len(images)
    if n == 0:
        return []
    th = params.thresholds
    height, width = images.shape[1:3]

    # Stage 1: P-Net on every pyramid scale, all frames that search it at once.
    found: list[np.ndarray] = []
    for scale in pyramid_scales(height, width, base_min_face, params.factor):
        members = np.flatnonzero(scale <= 12.0 / min_face + 1e-9)
        if len(members) == 0:
            continue
        level = _resize_batch(images[members], int(height * scale + 1), int(width * scale + 1))
        prob, reg = _run_chunked(nets.pnet, normalize(level), params.pnet_max_batch)[:2]
        local, ys, xs = np.nonzero(prob[:, 1] >= th[0])
        if len(local) == 0:
            continue
        score = prob[local, 1, ys, xs]
        r = reg[local, :, ys, xs]
        q1x, q1y = np.floor((2 * xs + 1) / scale), np.floor((2 * ys + 1) / scale)
        q2x, q2y = np.floor((2 * xs + 12) / scale), np.floor((2 * ys + 12) / scale)
        cand = np.column_stack([q1x, q1y, q2x, q2y, score, r, members[local]]).astype(np.float32)
        cand = cand[batched_nms(cand[:, :4], cand[:, 4], members[local], 0.5)]
        found.append(cand)
    if not found:
        return [FrameFaces() for _ in range(n)]
    cand = np.concatenate(found)
    ids = cand[:, 9].astype(np.int64)
    keep = batched_nms(cand[:, :4], cand[:, 4], ids, 0.7)
    keep = keep[_top_per_image(ids[keep], params.rnet_per_frame)]
    cand, ids = cand[keep], ids[keep]
    w = cand[:, 2] - cand[:, 0]
    h = cand[:, 3] - cand[:, 1]
    boxes = np.column_stack(
        [
            cand[:, 0] + cand[:, 5] * w,
            cand[:, 1] + cand[:, 6] * h,
            cand[:, 2] + cand[:, 7] * w,
            cand[:, 3] + cand[:, 8] * h,
        ]
    )
    boxes = _square(boxes)

    # Stage 2: R-Net refines and rejects.
    prob, reg = _run_chunked(nets.rnet, normalize(_crop_patches(images, ids, boxes, 24)), params.max_batch)
    ok = prob[:, 1] > th[1]
    boxes, ids, reg, score = boxes[ok], ids[ok], reg[ok], prob[ok, 1]
    keep = batched_nms(boxes, score, ids, 0.7)
    keep = keep[_top_per_image(ids[keep], params.onet_per_frame)]
    boxes = _square(_regress(boxes[keep], reg[keep]))
    ids = ids[keep]
    if len(boxes) == 0:
        return [FrameFaces() for _ in range(n)]

    # Stage 3: O-Net gives the final boxes, scores and five landmarks.
    ok, boxes, score, points = _onet(images, ids, boxes, nets, params)
    boxes, ids, score, points = boxes[ok], ids[ok], score[ok], points[ok]
    keep = batched_nms(boxes, score, ids, 0.7, mode="min")
    boxes, ids, score, points = boxes[keep], ids[keep], score[keep], points[keep]

    result = []
    for i in range(n):
        sel = ids == i
        result.append(
            FrameFaces(
                boxes=boxes[sel].astype(np.float32),
                scores=score[sel].astype(np.float32),
                landmarks=points[sel].astype(np.float32),
            )
        )
    return result
