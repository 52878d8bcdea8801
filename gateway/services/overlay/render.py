"""The overlay video: every input frame with the face box, the Grad-CAM heatmap and a verdict banner.

One streaming pass: ``iter_video_frames`` decodes (and scales) one frame at a time as I420, the pixels under the
face box and the banner are converted to RGB, drawn on and converted back in place, and ``H264Writer`` encodes the
I420 frame (H.264 yuv420p mp4, faststart): no whole-frame colour conversion. Memory stays at a few
frames whatever the video's length. Same frame count and rate as the input.

Output size: ``max_side`` limits the SHORTER side (720 means "720p": 1920x1080 -> 1280x720, a portrait
1080x1920 -> 720x1280, 1280x720 stays); videos are never upscaled.

What each output frame shows (analysed frame = one of the T frames Triton looked at):
- the face box of the analysed frame nearest in time; between two analysed frames that both have a face the
  box is linearly interpolated, so it follows the face; near an analysed frame without a face, no box;
- the Grad-CAM map of that nearest analysed frame, mapped through the (interpolated) face's crop region exactly
  as the crop was cut (``deepfake_core.crop.crop_region``) and alpha-blended (jet) INSIDE the face box only;
- the box outline coloured by that frame's score (green = real, yellow = the threshold, red = fake);
- a banner at the top: verdict, video probability of FAKE and the current frame's score (of the deciding face);
- with several analysed faces (issue 14), every face gets its own box, coloured by its own scores, and its own
  Grad-CAM (``cams`` [F, T, h, w], one row per track); the banner speaks of the face that decided the verdict.
Everything else is left as decoded. Drawing is in RGB on those regions only. Odd output sizes (rare: I420 needs
even ones) take an RGB path that converts whole frames.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from deepfake_core import constants as C
from deepfake_core.crop import crop_region
from deepfake_core.decode import VideoInfo, analysis_size, i420_planes, iter_video_frames, pack_i420, probe_video
from deepfake_core.encode import H264Writer
from deepfake_core.ensemble_contract import DetectorResult
from gateway.core.settings import Settings

__all__ = ["HEATMAP_ALPHA", "RenderStats", "measure_floor", "output_size", "render_overlay", "score_colour"]

HEATMAP_ALPHA = 0.45
_FAKE_RGB = (230, 40, 40)
_REAL_RGB = (40, 200, 70)
_NO_FACE_RGB = (200, 200, 200)
_TEXT_RGB = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class RenderStats:
    """What was written: frame count, rate, encoded size and the wall time of the whole pass (seconds)."""

    frames: int
    fps: float
    width: int
    height: int
    seconds: float


def output_size(width: int, height: int, max_side: int) -> tuple[int, int, int]:
    """(width, height, longer side) of the overlay for a ``width`` x ``height`` video: shorter side <= max_side.

    The longer side is what ``iter_video_frames`` takes as its limit; the size it gives is the returned one up
    to rounding.
    """
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side}")
    shorter, longer = min(width, height), max(width, height)
    if shorter <= max_side:
        return width, height, longer
    scale = max_side / shorter
    new_longer = max(1, round(longer * scale))
    return max(1, round(width * scale)), max(1, round(height * scale)), new_longer


def score_colour(score: float, threshold: float) -> tuple[int, int, int]:
    """RGB from green (score 0) through yellow (the threshold) to red (score 1)."""
    threshold = min(max(threshold, 1e-6), 1 - 1e-6)
    s = min(max(float(score), 0.0), 1.0)
    if s < threshold:
        return round(255 * s / threshold), 210, 40
    return 255, round(210 * (1 - (s - threshold) / (1 - threshold))), 40


def _rate(fps: float) -> Fraction:
    """The exact rate of a probed fps (probe_video's float64 of the stream's rational rate)."""
    return Fraction(fps).limit_denominator(1001 * 1000)


def _output_frames(info: VideoInfo, max_side: int) -> tuple[int, int, int, str]:
    """(width, height, longer-side limit, pixel format) of the frames ``iter_video_frames`` gives the overlay:
    I420 (no colour conversion) unless a side is odd, which yuv420p can't hold: RGB then (the writer pads it)."""
    _, _, longer = output_size(info.width, info.height, max_side)
    out_w, out_h, _ = analysis_size(info.width, info.height, longer)
    return out_w, out_h, longer, "yuv420p" if out_w % 2 == 0 and out_h % 2 == 0 else "rgb24"


def decode_format(info: VideoInfo, max_side: int) -> tuple[int, str]:
    """(longer side, pixel format) at which ``render_overlay`` decodes the source."""
    _, _, longer, pixel_format = _output_frames(info, max_side)
    return longer, pixel_format


@dataclass(frozen=True)
class OverlayEncoding:
    """How the overlay video is encoded: its shorter side at most ``max_side``, libx264 ``preset`` and ``crf``.
    The defaults live only in ``Settings`` (GATEWAY_OUTPUT_MAX_SIDE, GATEWAY_ENCODER_PRESET, GATEWAY_CRF)."""

    max_side: int
    preset: str
    crf: int

    @classmethod
    def from_settings(cls, settings: Settings) -> OverlayEncoding:
        return cls(settings.output_max_side, settings.encoder_preset, settings.crf)


def measure_floor(source: str | Path, destination: str | Path, encoding: OverlayEncoding) -> float:
    """Seconds to decode ``source`` and encode it again with the overlay's settings and no drawing (the floor).

    Frames go from the decoder to the encoder as I420, scaled when needed, without any colour conversion: the
    cheapest decode + re-encode there is (the overlay converts only the pixels it draws on)."""
    start = time.perf_counter()
    info = probe_video(source)
    out_w, out_h, longer, pixel_format = _output_frames(info, encoding.max_side)
    with ExitStack() as stack:
        writer = stack.enter_context(
            H264Writer(destination, out_w, out_h, _rate(info.fps), preset=encoding.preset, crf=encoding.crf)
        )
        for _, _, pixels in iter_video_frames(source, longer, pixel_format=pixel_format):
            if pixel_format == "yuv420p":
                writer.write_i420(pixels)
            else:
                writer.write(np.ascontiguousarray(pixels))
    return time.perf_counter() - start


class _Overlay:
    """Per-frame drawing state: which analysed frame rules each output frame, cached heat patches and banners."""

    def __init__(
        self,
        result: DetectorResult,
        cams: np.ndarray | None,
        label: str,
        scale_x: float,
        scale_y: float,
        out_w: int,
        out_h: int,
    ) -> None:
        # The other analysed faces: an overlay each (boxes and heatmap only); this one is the deciding face's.
        self.others: list[_Overlay] = []
        per_track = cams if cams is not None and cams.ndim == 4 else None  # one row of maps per track
        if result.track_has_face is not None:
            for k in result.face_tracks():
                if k != result.deciding_face:
                    face_cams = None if per_track is None else per_track[k]
                    face = _track_result(result, k)
                    self.others.append(_Overlay(face, face_cams, label, scale_x, scale_y, out_w, out_h))
        if per_track is not None:
            cams = per_track[result.deciding_face]
        self.indices = np.asarray(result.frame_indices, dtype=np.int64).reshape(-1)
        n = len(self.indices)
        self.has_face = np.asarray(result.has_face, dtype=bool).reshape(-1)[:n]
        self.boxes = np.asarray(result.face_boxes, dtype=np.float64).reshape(-1, 4)[:n]
        self.scores = np.asarray(result.frame_scores, dtype=np.float64).reshape(-1)[:n]
        if label == "NO_FACE" or not self.has_face.any():
            self.has_face = np.zeros(n, bool)
            cams = None
        if cams is not None and len(cams) != n:
            raise ValueError(f"{len(cams)} Grad-CAM maps for {n} analysed frames")
        self.cams = cams
        order = np.argsort(self.indices, kind="stable")
        self.indices, self.has_face = self.indices[order], self.has_face[order]
        self.boxes, self.scores = self.boxes[order], self.scores[order]
        self.cam_rows = order  # cams stay in the caller's order; row of each sorted slot
        self.label, self.prob = label, float(result.prob_fake)
        self.scale = np.array([scale_x, scale_y, scale_x, scale_y])
        self.out_w, self.out_h = out_w, out_h
        self.thickness = max(2, round(min(out_w, out_h) / 180))
        self.banner_h = max(18, round(min(out_w, out_h) * 0.06))
        self._heat: dict[int, np.ndarray] = {}
        self._patch_key: tuple[int, ...] | None = None
        self._patch: np.ndarray | None = None
        self._banners: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # --- which analysed frame, which box -------------------------------------------------------------------

    def state(self, index: int) -> tuple[int, np.ndarray | None]:
        """(slot of the analysed frame nearest to frame ``index``, face box in ORIGINAL pixels or None)."""
        n = len(self.indices)
        if n == 0:
            return -1, None
        after = int(np.searchsorted(self.indices, index, side="right"))  # first slot with index > frame
        before = after - 1
        if before < 0:
            k = 0
        elif after >= n:
            k = before
        else:
            k = before if index - self.indices[before] <= self.indices[after] - index else after
        if not self.has_face[k]:
            return k, None
        if before >= 0 and after < n and self.has_face[before] and self.has_face[after]:
            span = self.indices[after] - self.indices[before]
            if span > 0:
                w = (index - self.indices[before]) / span
                return k, (1 - w) * self.boxes[before] + w * self.boxes[after]
        return k, self.boxes[k]

    # --- drawing -------------------------------------------------------------------------------------------

    def _coloured_heat(self, slot: int) -> np.ndarray:
        heat = self._heat.get(slot)
        if heat is None:
            assert self.cams is not None
            cam = np.asarray(self.cams[self.cam_rows[slot]], dtype=np.float32)
            cam8 = (np.clip(cam, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            heat = cv2.cvtColor(cv2.applyColorMap(cam8, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
            self._heat[slot] = heat
        return heat

    def _heat_patch(self, slot: int, box: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
        """The heatmap over the face box ``rect`` (output pixels), sampled through the face's crop region."""
        region = crop_region(box) * self.scale  # the crop the CAM covers, in output pixels
        key = (slot, *rect, *np.round(region * 8).astype(np.int64).tolist())
        if key == self._patch_key and self._patch is not None:
            return self._patch
        heat = self._coloured_heat(slot)
        x1, y1, x2, y2 = rect
        hh, hw = heat.shape[:2]
        ax = hw / max(float(region[2] - region[0]), 1e-6)
        ay = hh / max(float(region[3] - region[1]), 1e-6)
        # The heatmap pixels under the face box (to the nearest pixel: about 1/100 of the box), resized to it.
        # cv2.resize of this small patch is ~5x faster than an exact warpAffine of the whole heatmap.
        u1 = min(max(int((x1 - region[0]) * ax), 0), hw - 1)
        v1 = min(max(int((y1 - region[1]) * ay), 0), hh - 1)
        u2 = min(max(int(np.ceil((x2 - region[0]) * ax)), u1 + 1), hw)
        v2 = min(max(int(np.ceil((y2 - region[1]) * ay)), v1 + 1), hh)
        patch = cv2.resize(heat[v1:v2, u1:u2], (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
        self._patch_key, self._patch = key, patch
        return patch

    def _banner(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Text pixels of the banner (RGB layer and mask), drawn once per distinct text."""
        cached = self._banners.get(text)
        if cached is not None:
            return cached
        h = self.banner_h
        layer = np.zeros((h, self.out_w, 3), np.uint8)
        font_scale = h / 36.0
        thick = max(1, round(h / 22))
        label_colour = {"FAKE": _FAKE_RGB, "REAL": _REAL_RGB}.get(self.label, _NO_FACE_RGB)
        (label_w, text_h), _ = cv2.getTextSize(self.label, _FONT, font_scale, thick + 1)
        baseline_y = (h + text_h) // 2
        x = max(4, h // 3)
        cv2.putText(layer, self.label, (x, baseline_y), _FONT, font_scale, label_colour, thick + 1, cv2.LINE_AA)
        cv2.putText(layer, text, (x + label_w + h // 2, baseline_y), _FONT, font_scale, _TEXT_RGB, thick, cv2.LINE_AA)
        mask = layer.any(axis=2).astype(np.uint8)
        self._banners[text] = (layer, mask)
        return layer, mask

    def banner_text(self, slot: int, has_box: bool) -> str:
        if self.label == "NO_FACE":
            return "no face found"
        frame_part = f"frame {self.scores[slot]:.2f}" if has_box and slot >= 0 else "frame: no face"
        return f"P(fake) {self.prob:.2f}  |  {frame_part}"

    def _box_rect(self, box: np.ndarray | None) -> tuple[int, int, int, int] | None:
        """The face box in output pixels (clipped), or None when there is nothing to draw."""
        if box is None:
            return None
        scaled = box * self.scale
        x1 = int(np.clip(np.floor(scaled[0]), 0, self.out_w))
        y1 = int(np.clip(np.floor(scaled[1]), 0, self.out_h))
        x2 = int(np.clip(np.ceil(scaled[2]), 0, self.out_w))
        y2 = int(np.clip(np.ceil(scaled[3]), 0, self.out_h))
        return (x1, y1, x2, y2) if x2 - x1 >= 2 and y2 - y1 >= 2 else None

    def _draw_box(
        self, canvas: np.ndarray, slot: int, box: np.ndarray, rect: tuple[int, int, int, int], origin: tuple[int, int]
    ) -> None:
        """Heatmap and outline of the face box ``rect`` (output pixels) on ``canvas``, whose top-left pixel is
        output pixel ``origin``."""
        x1, y1, x2, y2 = rect
        ox, oy = origin
        if self.cams is not None:
            roi = canvas[y1 - oy : y2 - oy, x1 - ox : x2 - ox]
            patch = self._heat_patch(slot, box, rect)
            cv2.addWeighted(roi, 1.0 - HEATMAP_ALPHA, patch, HEATMAP_ALPHA, 0.0, dst=roi)
        colour = score_colour(self.scores[slot], C.DECISION_THRESHOLD)  # served scores are folded to 0.5
        cv2.rectangle(canvas, (x1 - ox, y1 - oy), (x2 - 1 - ox, y2 - 1 - oy), colour, self.thickness, cv2.LINE_8)

    def _draw_banner(self, strip: np.ndarray, slot: int, has_box: bool) -> None:
        """The banner on the top ``banner_h`` rows (RGB, full width), in place."""
        np.right_shift(strip, 2, out=strip)  # darken to a quarter: the banner stays see-through
        layer, mask = self._banner(self.banner_text(slot, has_box))
        cv2.copyTo(layer, mask, strip)  # in place; ~100x faster than np.copyto(where=)

    def draw(self, frame: np.ndarray, index: int) -> None:
        """Draw on one output frame (RGB uint8, C-contiguous) in place."""
        for other in self.others:
            other.draw_face(frame, index)
        slot, box = self.draw_face(frame, index)
        self._draw_banner(frame[: self.banner_h], slot, box is not None)

    def draw_face(self, frame: np.ndarray, index: int) -> tuple[int, np.ndarray | None]:
        """This face's heatmap and box on one RGB output frame; returns ``state(index)``."""
        slot, box = self.state(index)
        rect = self._box_rect(box)
        if rect is not None and box is not None:
            self._draw_box(frame, slot, box, rect, (0, 0))
        return slot, box

    def draw_i420(self, yuv: np.ndarray, index: int) -> None:
        """Draw on one packed I420 output frame in place: only the face box's and the banner's pixels are converted
        to RGB and back (OpenCV's BT.601 matches FFmpeg's within 1 level on average), the rest of the frame is
        passed to the encoder as decoded. Converting whole frames both ways cost ~40 % of the render's CPU."""
        planes = i420_planes(yuv, self.out_w, self.out_h)
        for other in self.others:
            other.draw_face_i420(planes, index)
        slot, box = self.draw_face_i420(planes, index)
        region = _even_region(0, 0, self.out_w, self.banner_h, self.out_w, self.out_h)
        canvas = _region_rgb(planes, region)
        self._draw_banner(canvas[: self.banner_h], slot, box is not None)
        _store_region(planes, region, canvas)

    def draw_face_i420(
        self, planes: tuple[np.ndarray, np.ndarray, np.ndarray], index: int
    ) -> tuple[int, np.ndarray | None]:
        """This face's heatmap and box on one I420 output frame's planes; returns ``state(index)``."""
        slot, box = self.state(index)
        rect = self._box_rect(box)
        if rect is not None and box is not None:
            reach = self.thickness  # the outline is drawn centred on the box edge
            region = _even_region(
                rect[0] - reach, rect[1] - reach, rect[2] + reach, rect[3] + reach, self.out_w, self.out_h
            )
            canvas = _region_rgb(planes, region)
            self._draw_box(canvas, slot, box, rect, (region[0], region[1]))
            _store_region(planes, region, canvas)
        return slot, box


def _track_result(result: DetectorResult, k: int) -> DetectorResult:
    """``result`` as if track ``k`` were the only face: its boxes, presence and frame scores."""
    assert result.track_boxes is not None and result.track_has_face is not None
    scores = result.track_frame_scores
    return replace(
        result,
        face_boxes=result.track_boxes[k],
        has_face=result.track_has_face[k],
        frame_scores=np.zeros(len(result.frame_indices), np.float32) if scores is None else scores[k],
        track_boxes=None,
        track_has_face=None,
        track_prob_fake=None,
        track_frame_scores=None,
    )


def _even_region(x1: int, y1: int, x2: int, y2: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The rectangle grown to even coordinates (I420 shares one chroma sample per 2x2 pixels), inside the frame."""
    x1, y1 = max(0, x1) & ~1, max(0, y1) & ~1
    x2, y2 = min(width, x2 + (x2 & 1)), min(height, y2 + (y2 & 1))
    return x1, y1, x2, y2


def _region_rgb(planes: tuple[np.ndarray, np.ndarray, np.ndarray], region: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = region
    y, u, v = planes
    packed = pack_i420(
        y[y1:y2, x1:x2], u[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2], v[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2]
    )
    return cv2.cvtColor(packed, cv2.COLOR_YUV2RGB_I420)


def _store_region(
    planes: tuple[np.ndarray, np.ndarray, np.ndarray], region: tuple[int, int, int, int], rgb: np.ndarray
) -> None:
    x1, y1, x2, y2 = region
    h, w = y2 - y1, x2 - x1
    packed = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    y, u, v = planes
    chroma = (h // 2) * (w // 2)
    y[y1:y2, x1:x2] = packed[: h * w].reshape(h, w)
    u[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2] = packed[h * w : h * w + chroma].reshape(h // 2, w // 2)
    v[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2] = packed[h * w + chroma :].reshape(h // 2, w // 2)


def render_overlay(
    source: str | Path,
    destination: str | Path,
    result: DetectorResult,
    cams: np.ndarray | None,
    *,
    label: str,
    encoding: OverlayEncoding,
    info: VideoInfo | None = None,
    frames: Iterable[tuple[int, float, np.ndarray]] | None = None,
) -> RenderStats:
    """Write the overlay video of ``source`` to ``destination`` (H.264 yuv420p mp4, faststart).

    ``info``: the source's ``probe_video`` result when the caller already has it (probed here otherwise).
    ``frames``: the source's decoded frames at ``decode_format(info, encoding.max_side)`` when the caller decoded ahead
    (``prefetch.FramePrefetch``); decoded here otherwise.

    ``result``: Triton's answer (boxes in original pixels); ``cams``: ``[T, h, w]`` Grad-CAM maps in [0, 1] of
    the analysed frames in ``result``'s order (the deciding face's), or ``[F, T, h, w]`` one row per analysed track
    (every face's), or None for no heatmap; ``label``: REAL, FAKE or NO_FACE (NO_FACE:
    banner only). ``encoding.max_side`` limits the shorter side. Raises ``deepfake_core.decode.VideoError`` for an
    unreadable source; a partial output is deleted.
    """
    start = time.perf_counter()
    info = info or probe_video(source)
    out_w, out_h, longer, pixel_format = _output_frames(info, encoding.max_side)
    i420 = pixel_format == "yuv420p"
    src_w = result.width if result.width > 0 else info.width
    src_h = result.height if result.height > 0 else info.height
    writer: H264Writer | None = None
    overlay: _Overlay | None = None
    with ExitStack() as stack:  # the writer deletes its partial file when the block raises
        if frames is None:
            frames = iter_video_frames(source, longer, pixel_format=pixel_format)
        for index, _, pixels in frames:
            if writer is None:
                writer = stack.enter_context(
                    H264Writer(destination, out_w, out_h, _rate(info.fps), preset=encoding.preset, crf=encoding.crf)
                )
                overlay = _Overlay(result, cams, label, out_w / src_w, out_h / src_h, out_w, out_h)
            assert overlay is not None
            if i420:
                overlay.draw_i420(pixels, index)
                writer.write_i420(pixels)
                continue
            if not (pixels.flags.c_contiguous and pixels.flags.writeable):
                pixels = np.array(pixels, order="C")  # odd widths come with padded rows; cv2 draws on contiguous arrays
            overlay.draw(pixels, index)
            writer.write(pixels)
    assert writer is not None  # iter_video_frames raises when no frame decodes
    return RenderStats(
        frames=writer.frames_written,
        fps=float(writer.rate),
        width=writer.width,
        height=writer.height,
        seconds=time.perf_counter() - start,
    )
