"""The load test's clips: a small catalogue of generated videos (cached on disk) and a weighted mix of them.

A mix is written ``name:weight,name:weight`` (e.g. ``hd720:8,lowres:2,noface:1``); each request picks a clip at
random with these weights. The runner and the Locust users share the catalogue (this module) and the mix string.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deepfake_core.paths import REPO_ROOT

DEFAULT_CACHE = REPO_ROOT / "results" / "loadtest-clips"
DEFAULT_MIX = "hd720:8,lowres:2,short:1,noface:1"


@dataclass(frozen=True)
class Clip:
    """One generated video: a face video (tests.media.face_video) or one without any face."""

    name: str
    width: int
    height: int
    fps: int
    seconds: float
    face: bool

    @property
    def file(self) -> str:
        kind = "face" if self.face else "noface"
        return f"{self.name}_{kind}_{self.width}x{self.height}_{self.fps}fps_{self.seconds:g}s.mp4"


CATALOGUE = {
    c.name: c
    for c in (
        Clip("hd720", 1280, 720, 30, 10.0, face=True),  # the target's clip: 10 s 720p
        Clip("lowres", 480, 270, 25, 6.0, face=True),
        Clip("short", 640, 360, 25, 2.0, face=True),
        Clip("noface", 640, 360, 25, 4.0, face=False),
    )
}


@dataclass(frozen=True)
class MixEntry:
    clip: Clip
    weight: int


def parse_mix(spec: str) -> list[MixEntry]:
    """``hd720:8,noface:1`` -> entries; a name without a weight counts 1. Unknown names are a ValueError."""
    entries = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, weight = part.partition(":")
        if name not in CATALOGUE:
            raise ValueError(f"unknown clip {name!r} in the mix; known: {', '.join(CATALOGUE)}")
        try:
            w = int(weight) if weight else 1
        except ValueError:
            raise ValueError(f"the weight of {name!r} must be a whole number, not {weight!r}") from None
        if w < 1:
            raise ValueError(f"the weight of {name!r} must be at least 1")
        entries.append(MixEntry(CATALOGUE[name], w))
    if not entries:
        raise ValueError("the clip mix is empty")
    return entries


def ensure_clips(entries: Sequence[MixEntry], cache: Path = DEFAULT_CACHE) -> Path:
    """Generate the mix's clips that are not cached yet; returns ``cache``."""
    from tests.media import face_video, faceless_video  # the generators live with the test media

    cache.mkdir(parents=True, exist_ok=True)
    for e in entries:
        c = e.clip
        path = cache / c.file
        if path.exists():
            continue
        tmp = path.with_suffix(".part.mp4")
        if c.face:
            face_video(tmp, width=c.width, height=c.height, fps=c.fps, seconds=c.seconds)
        else:
            faceless_video(tmp, width=c.width, height=c.height, fps=c.fps, seconds=c.seconds)
        tmp.replace(path)  # a clip interrupted half-way is never taken for a finished one
    return cache


def pick(entries: Sequence[MixEntry], rng: random.Random | None = None) -> Clip:
    """A clip drawn with the mix's weights."""
    r = rng or random
    return r.choices([e.clip for e in entries], weights=[e.weight for e in entries])[0]
