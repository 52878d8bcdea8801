"""Labelled media in their published layouts -> a flat list of ``Sample`` (path, label, group, panel).

Layouts recognised by ``discover(root)`` (first match wins):

- ``MANIFEST.csv`` (the project's shared training folder): columns ``path, label, layout, pair_group, identity``.
  Side-by-side composites are cut to their fake panel (``layout`` says which one); ``unknown`` labels are left
  out. ``group`` is the pair_group (else the identity), so a real clip and its fakes stay on one side of a split.
- FaceForensics++: ``original_sequences/**/videos/*.mp4`` (real), ``manipulated_sequences/<method>/**/*.mp4``
  (fake). Group: the target id (``033`` of ``033_097.mp4``), so a real video and its manipulations stay together.
- DFDC: ``metadata.json`` (``{"x.mp4": {"label": "FAKE", "original": "y.mp4"}}``) in the root or its folders;
  group: the original video.
- Celeb-DF: ``List_of_testing_videos.txt`` (``1 Celeb-real/id0_0000.mp4``; 1 = real, 0 = fake) and/or the
  ``Celeb-real``, ``YouTube-real``, ``Celeb-synthesis`` folders; group: the identity (``id0``).
- ``SOURCES.csv`` with a ``label_hint`` column (the shared real-faces folder): ``unlabelled`` rows are left out.
- Plain folders: ``real/`` and ``fake/`` (any depth below them); group: the file stem.
- Anything else: every video/image below the root is REAL (a folder of real footage for self-blending).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Sample",
    "discover",
    "group_split",
    "originals",
    "parse_panel",
]

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".gif", ".mpg", ".mpeg", ".flv"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
REAL, FAKE = 0, 1


@dataclass(frozen=True)
class Sample:
    """One labelled video or photo. ``label``: 0 real, 1 fake. ``panel``: (index, count) of the side-by-side
    panel to keep (frames are cut into ``count`` equal vertical strips), or None for the whole frame."""

    path: Path
    label: int
    group: str
    source: str  # dataset / method name, for per-source reporting
    panel: tuple[int, int] | None = None

    @property
    def is_image(self) -> bool:
        return self.path.suffix.lower() in IMAGE_EXTENSIONS

    @property
    def name(self) -> str:
        return self.path.name


def _media(root: Path) -> list[Path]:
    exts = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)


_PANEL_WORDS = {"LEFT": 0, "MIDDLE": 1, "RIGHT": -1}


def parse_panel(layout: str) -> tuple[int, int] | None:
    """The fake panel of a manifest ``layout``: ``"side-by-side 3 panels: LEFT=..., MIDDLE=generated (fake),
    RIGHT=..."`` -> (1, 3). None for single-panel layouts; ValueError when the fake panel can't be told."""
    match = re.search(r"(\d+)\s+panels", layout)
    if not match:
        return None
    count = int(match.group(1))
    for part in layout.split(":", 1)[1].split(","):
        word, _, role = part.strip().partition("=")
        if "(fake)" in role.lower() and word.strip().upper() in _PANEL_WORDS:
            index = _PANEL_WORDS[word.strip().upper()]
            return (index % count, count)
    raise ValueError(f"can't tell the fake panel of layout {layout!r}")


def _manifest(root: Path) -> list[Sample]:
    out = []
    with open(root / "MANIFEST.csv", newline="") as f:
        for row in csv.DictReader(f):
            label = row.get("label", "").strip().lower()
            if label not in ("real", "fake"):
                continue
            panel = parse_panel(row.get("layout", "")) if label == "fake" else None
            group = row.get("pair_group") or row.get("identity") or row["path"]
            method = row.get("method") or label
            out.append(Sample(root / row["path"], REAL if label == "real" else FAKE, group, method or label, panel))
    return out


def _sources_csv(root: Path) -> list[Sample]:
    out = []
    with open(root / "SOURCES.csv", newline="") as f:
        for row in csv.DictReader(f):
            hint = row.get("label_hint", "").strip().lower()
            if hint not in ("real", "fake"):
                continue
            path = root / row["file"]
            out.append(Sample(path, REAL if hint == "real" else FAKE, path.stem, "real-faces"))
    return out


def _faceforensics(root: Path) -> list[Sample]:
    out = []
    for path in _media(root / "original_sequences"):
        out.append(Sample(path, REAL, path.stem.split("_")[0], "ff++/original"))
    manipulated = root / "manipulated_sequences"
    for method_dir in sorted(p for p in manipulated.iterdir() if p.is_dir()):
        for path in _media(method_dir):
            out.append(Sample(path, FAKE, path.stem.split("_")[0], f"ff++/{method_dir.name}"))
    return out


def _dfdc(root: Path) -> list[Sample]:
    out = []
    for meta in sorted(root.rglob("metadata.json")):
        entries = json.loads(meta.read_text())
        for name, info in sorted(entries.items()):
            path = meta.parent / name
            if not path.exists():
                continue
            label = FAKE if str(info.get("label", "")).upper() == "FAKE" else REAL
            group = Path(info.get("original") or name).stem
            out.append(Sample(path, label, group, "dfdc"))
    return out


def _celeb_id(stem: str) -> str:
    return stem.split("_")[0]  # id0_0000 -> id0; id0_id16_0000 -> id0 (the target)


def _celebdf(root: Path) -> list[Sample]:
    out: dict[Path, Sample] = {}
    listing = root / "List_of_testing_videos.txt"
    if listing.exists():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) != 2:
                continue
            path = root / parts[1]
            if path.exists():
                out[path] = Sample(path, REAL if parts[0] == "1" else FAKE, _celeb_id(path.stem), "celeb-df")
    for folder, label in (("Celeb-real", REAL), ("YouTube-real", REAL), ("Celeb-synthesis", FAKE)):
        if (root / folder).is_dir():
            for path in _media(root / folder):
                out.setdefault(path, Sample(path, label, _celeb_id(path.stem), f"celeb-df/{folder}"))
    return sorted(out.values(), key=lambda s: str(s.path))


def _real_fake_folders(root: Path) -> list[Sample]:
    out: list[Sample] = []
    for folder, label in (("real", REAL), ("fake", FAKE)):
        if (root / folder).is_dir():
            out.extend(Sample(p, label, p.stem, folder) for p in _media(root / folder))
    return out


def discover(root: str | Path) -> list[Sample]:
    """Samples of a dataset folder in any of the layouts above (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if (root / "MANIFEST.csv").exists():
        return _manifest(root)
    if (root / "original_sequences").is_dir() or (root / "manipulated_sequences").is_dir():
        return _faceforensics(root)
    if (root / "List_of_testing_videos.txt").exists() or (root / "Celeb-synthesis").is_dir():
        return _celebdf(root)
    if (root / "metadata.json").exists() or any(root.glob("*/metadata.json")):
        return _dfdc(root)
    if (root / "SOURCES.csv").exists():
        return _sources_csv(root)
    if (root / "real").is_dir() or (root / "fake").is_dir():
        return _real_fake_folders(root)
    return [Sample(p, REAL, p.stem, root.name) for p in _media(root)]


def discover_all(roots: Iterable[str | Path]) -> list[Sample]:
    """``discover`` over several folders, concatenated."""
    out: list[Sample] = []
    for root in roots:
        out.extend(discover(root))
    return out


def group_split(samples: Sequence[Sample], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(train, validation): whole groups go to one side; about ``val_fraction`` of the groups to validation,
    chosen per label mix so both sides get reals and fakes. Deterministic for a seed."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.group, []).append(s)
    rng = np.random.default_rng(seed)
    val_groups: set[str] = set()
    # Stratify groups by what they hold (only real, only fake, both) so each kind is split in proportion.
    by_kind: dict[tuple[int, ...], list[str]] = {}
    for name, members in sorted(groups.items()):
        by_kind.setdefault(tuple(sorted({m.label for m in members})), []).append(name)
    for names in by_kind.values():
        order = rng.permutation(len(names))
        count = int(round(val_fraction * len(names)))
        val_groups.update(names[i] for i in order[:count])
    train = [s for s in samples if s.group not in val_groups]
    val = [s for s in samples if s.group in val_groups]
    return train, val


_FFPP_IDS = re.compile(r"(?<![0-9])([0-9]{3})_([0-9]{3})(?![0-9])")


def originals(samples: Sequence[Sample]) -> dict[Path, Sample]:
    """fake path -> the real clip it was made from, where the folder holds it (FaceForensics++ naming).

    A FaceForensics++ fake ``<target>_<source>`` keeps the target video's footage and changes only the face, so
    its original is the real clip of the same group whose name holds ``<target>`` at the same compression (a
    ``c40`` fake pairs with a ``c40`` original). Fakes without one (DFDC, talking heads) are left out."""
    reals: dict[str, list[Sample]] = {}
    for s in samples:
        if s.label == REAL:
            reals.setdefault(s.group, []).append(s)
    out: dict[Path, Sample] = {}
    for s in samples:
        match = _FFPP_IDS.search(s.path.stem) if s.label == FAKE else None
        if match is None:
            continue
        target, c40 = match.group(1), "c40" in s.path.stem
        for real in reals.get(s.group, []):
            stem = real.path.stem
            if re.search(rf"(?<![0-9]){target}(?![0-9])", stem) and ("c40" in stem) == c40:
                out[s.path] = real
                break
    return out
