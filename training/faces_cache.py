"""The serving face pipeline applied offline, with its results cached on disk.

Exactly what Triton does per video (``video_decode`` -> ``face_detector`` -> ``face_crop``), with the same shared
code: ``sample_video`` (T evenly spaced frames at analysis resolution), ``track_faces`` (the MTCNN cascade on key
frames, O-Net following faces in between; nets run with ONNX Runtime on the very
``model_repository/mtcnn_*/1/model.onnx`` files Triton serves, or the torch nets), ``main_face_track`` (training:
the main face) or ``analysed_tracks`` (``FaceExtractor.faces``, evaluation: every face Triton analyses) and
``crop_faces``. Training and evaluation read the uint8 crops from the cache, so an
epoch never re-detects faces and the classifier sees the crops serving would give it.

Extras that serving doesn't have: side-by-side composites are cut to one panel before detection, and photos
(a single frame) are accepted for self-blended training.

Cache entry: ``<cache>/<sha256 of file bytes + pipeline settings>.npz`` holding ``crops [T,224,224,3] uint8``,
``present [T] bool``, ``landmarks [T,5,2] float32`` (in crop pixels), ``boxes [T,4]`` (frame pixels),
``scores [T]``; an entry of every face holds them stacked (``[F, T, ...]``).
``python -m training.faces_cache --data DIR [DIR ...] --cache DIR`` fills a cache ahead of time (the main tracks
that training reads; evaluation adds its every-face entries).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deepfake_core import constants as C
from deepfake_core.crop import crop_faces, crop_region
from deepfake_core.decode import analysis_size, sample_video
from deepfake_core.face_following import track_faces
from deepfake_core.face_tracks import FaceTrack, analysed_tracks, main_face_track
from deepfake_core.mtcnn_cascade import DetectorParams, FrameFaces, MtcnnNets
from deepfake_core.paths import MODEL_REPOSITORY
from training.datasets import Sample, discover_all

__all__ = ["DEFAULT_CACHE", "FaceClip", "FaceExtractor", "cache_clips", "onnx_nets", "torch_nets"]

DEFAULT_CACHE = Path(os.environ.get("DEEPFAKE_FACE_CACHE", Path.home() / ".cache" / "deepfake-faces"))
PIPELINE_VERSION = "2"  # bump when the pipeline's output changes, to invalidate caches


@dataclass
class FaceClip:
    """Face crops of one video (or photo) as the served pipeline makes them."""

    crops: np.ndarray  # uint8 [T, S, S, 3] RGB; black where no face
    present: np.ndarray  # bool [T]
    landmarks: np.ndarray  # float32 [T, 5, 2], crop pixel coordinates
    boxes: np.ndarray  # float32 [T, 4], frame pixel coordinates (analysis resolution)
    scores: np.ndarray  # float32 [T]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez(tmp, **self.__dict__)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> FaceClip:
        with np.load(path) as z:
            return cls(**{k: z[k] for k in ("crops", "present", "landmarks", "boxes", "scores")})


def onnx_nets(model_repository: Path = MODEL_REPOSITORY, threads: int = 0) -> MtcnnNets:
    """The cascade's nets on ONNX Runtime, from the ONNX files Triton serves (``make export`` writes them)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {}
    for name in ("pnet", "rnet", "onet"):
        path = model_repository / f"mtcnn_{name}" / "1" / "model.onnx"
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: run `make export`")
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def call(name: str):  # type: ignore[no-untyped-def]
        return lambda x: sessions[name].run(None, {"image": x})

    return MtcnnNets(pnet=call("pnet"), rnet=call("rnet"), onet=call("onet"))


def torch_nets() -> MtcnnNets:
    """The cascade's nets in torch (no ONNX files needed)."""
    import torch

    from deepfake_core.mtcnn import load_mtcnn

    pnet, rnet, onet = load_mtcnn()

    def wrap(net: torch.nn.Module):  # type: ignore[no-untyped-def]
        def run(x: np.ndarray) -> list[np.ndarray]:
            with torch.no_grad():
                return [t.numpy() for t in net(torch.from_numpy(x))]

        return run

    return MtcnnNets(pnet=wrap(pnet), rnet=wrap(rnet), onet=wrap(onet))


def _read_image(path: Path) -> np.ndarray:
    data = np.frombuffer(path.read_bytes(), np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    new_w, new_h, scale = analysis_size(w, h, C.ANALYSIS_MAX_SIDE)  # as video_decode does for videos
    if scale < 1.0:
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return rgb[None]


def _cut_panel(frames: np.ndarray, panel: tuple[int, int] | None) -> np.ndarray:
    if panel is None:
        return frames
    index, count = panel
    width = frames.shape[2]
    x0, x1 = round(index * width / count), round((index + 1) * width / count)
    return np.ascontiguousarray(frames[:, :, x0:x1])


def landmarks_in_crops(landmarks: np.ndarray, boxes: np.ndarray, size: int = C.CROP_SIZE) -> np.ndarray:
    """Landmarks [T,5,2] in frame pixels -> crop pixels (the crop is ``crop_face``'s rounded square region)."""
    out = np.zeros_like(landmarks, dtype=np.float32)
    for i, box in enumerate(boxes):
        region = np.round(crop_region(box)).astype(np.float64)
        side = max(region[2] - region[0], 1.0)
        out[i] = (landmarks[i] - region[:2]) * (size / side)
    return out


class FaceExtractor:
    """Video/photo -> ``FaceClip`` with the serving pipeline; cached by file content and settings."""

    def __init__(
        self,
        num_frames: int = C.NUM_FRAMES,
        cache_dir: Path | None = DEFAULT_CACHE,
        nets: MtcnnNets | None = None,
        params: DetectorParams | None = None,
    ) -> None:
        self.num_frames = num_frames
        self.cache_dir = cache_dir
        self._nets = nets
        self.params = params or DetectorParams()

    @property
    def nets(self) -> MtcnnNets:
        if self._nets is None:
            try:
                self._nets = onnx_nets()
            except FileNotFoundError:
                self._nets = torch_nets()
        return self._nets

    def key(self, sample: Sample, faces: int | None = None) -> str:
        """The cache entry's name: file content and pipeline settings (``faces``: every analysed face, at most that
        many; None: the main track)."""
        digest = hashlib.sha256()
        with open(sample.path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        settings = {
            "v": PIPELINE_VERSION,
            "T": self.num_frames,
            "panel": sample.panel,
            "params": repr(self.params),
            "crop": [C.CROP_SIZE, C.CROP_MARGIN, C.ANALYSIS_MAX_SIDE],
        }
        if faces is not None:
            settings["faces"] = faces
        digest.update(json.dumps(settings, sort_keys=True).encode())
        return digest.hexdigest()[:32]

    def _detections(self, sample: Sample) -> tuple[np.ndarray, list[FrameFaces]]:
        """The sampled frames (one panel of a composite; a photo's one frame) and the faces found on each."""
        if sample.is_image:
            frames = _read_image(sample.path)
        else:
            frames = sample_video(str(sample.path), self.num_frames, C.ANALYSIS_MAX_SIDE).frames
        frames = _cut_panel(frames, sample.panel)
        return frames, track_faces(frames, self.nets, self.params)

    @staticmethod
    def _clip(frames: np.ndarray, track: FaceTrack) -> FaceClip:
        return FaceClip(
            crops=crop_faces(frames, track.boxes, track.present),
            present=track.present,
            landmarks=landmarks_in_crops(track.landmarks, track.boxes),
            boxes=track.boxes,
            scores=track.scores,
        )

    def extract(self, sample: Sample) -> FaceClip:
        """Run the pipeline (no cache): the main face track's clip."""
        frames, found = self._detections(sample)
        return self._clip(frames, main_face_track(found))

    def extract_faces(self, sample: Sample, max_faces: int = C.MAX_FACES) -> list[FaceClip]:
        """Run the pipeline (no cache) for every analysed face, as Triton's face_detector chooses them
        (``analysed_tracks``): most prominent first (the first is ``extract``'s main track), one clip each; one empty
        clip (no face in any frame) when none was found, as the ensemble's one empty row."""
        frames, found = self._detections(sample)
        tracks = analysed_tracks(found, max_faces).tracks or [main_face_track(found)]
        return [self._clip(frames, track) for track in tracks]

    def __call__(self, sample: Sample) -> FaceClip:
        return self._cached(lambda: self.key(sample), lambda: self.extract(sample))

    def faces(self, sample: Sample, max_faces: int = C.MAX_FACES) -> list[FaceClip]:
        """``extract_faces``, cached (one entry holding the clips stacked, ``[F, ...]`` per field)."""
        stacked = self._cached(
            lambda: self.key(sample, max_faces), lambda: _stack(self.extract_faces(sample, max_faces))
        )
        return _unstack(stacked)

    def _cached(self, key: Callable[[], str], compute: Callable[[], FaceClip]) -> FaceClip:
        """``compute()``, kept in the cache under ``key()`` (a damaged entry is recomputed)."""
        if self.cache_dir is None:
            return compute()
        path = self.cache_dir / f"{key()}.npz"
        if path.exists():
            try:
                return FaceClip.load(path)
            except Exception:  # noqa: BLE001 - a damaged entry is recomputed
                path.unlink(missing_ok=True)
        clip = compute()
        clip.save(path)
        return clip


def _stack(clips: list[FaceClip]) -> FaceClip:
    """F clips -> one clip with each field stacked ``[F, ...]``."""
    return FaceClip(**{k: np.stack([getattr(c, k) for c in clips]) for k in FaceClip.__dataclass_fields__})


def _unstack(stacked: FaceClip) -> list[FaceClip]:
    """Clips stacked ``[F, ...]`` per field -> F clips."""
    return [
        FaceClip(**{k: getattr(stacked, k)[i] for k in FaceClip.__dataclass_fields__})
        for i in range(len(stacked.present))
    ]


def cache_clips(
    samples: Sequence[Sample], extractor: FaceExtractor, progress: bool = True
) -> list[tuple[Sample, FaceClip]]:
    """Extract (or load) every sample; unreadable files are reported and skipped."""
    from tqdm import tqdm

    out = []
    for sample in tqdm(samples, desc="faces", unit="clip", disable=not progress):
        try:
            out.append((sample, extractor(sample)))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop a dataset
            print(f"skipped {sample.path}: {exc}", file=sys.stderr)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.faces_cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="dataset folders (any known layout)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="cache folder (default: %(default)s)")
    parser.add_argument("--num-frames", type=int, default=C.NUM_FRAMES)
    args = parser.parse_args(argv)
    samples = discover_all(args.data)
    clips = cache_clips(samples, FaceExtractor(args.num_frames, args.cache))
    with_face = sum(bool(c.present.any()) for _, c in clips)
    print(f"{len(clips)}/{len(samples)} cached in {args.cache}; {with_face} with a face")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
