"""What validation measures: each clip's family and domain, and the per-family AUCs.

Families: each FaceForensics++ method, DFDC, the talking-head / face-swap / lip-sync / reenactment fakes of
``train``, and self-blends (a self-blended twin of each held-out real clip). A family's AUC compares its fakes with
the held-out reals of its own domain (FF++ originals for FF++ methods; DFD actors and the DFDC original for DFDC;
the reals of ``train`` for its families; the blended clips' own originals for self-blends). ``dataset-style``:
every fake of ``dataset_clips`` against its reals, the headline. ``FF++ c23``: the c23 FaceForensics++ fakes against
the c23 originals.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.evaluate import roc_auc

__all__ = ["FFPP_METHODS", "Clip", "Unit", "family_aucs", "family_of", "manifest_rows"]

FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")


@dataclass
class Clip:
    """One source file with its variants' video-level features (mean over face frames)."""

    path: str
    label: int
    group: str
    root: str
    family: str
    domain: str  # which reals a family's fakes are compared with
    variants: dict[str, np.ndarray] = field(default_factory=dict)  # variant -> [D] float32
    frames: dict[str, np.ndarray] = field(default_factory=dict)  # variant -> [F, D] float32


def manifest_rows(data_root: Path | None) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    if data_root is None:
        return rows
    for manifest in data_root.glob("*/MANIFEST.csv"):
        with open(manifest, newline="") as f:
            for row in csv.DictReader(f):
                rows[str((manifest.parent / row["path"]).resolve())] = row
    return rows


def family_of(root: str, label: int, source: str, row: dict[str, str] | None) -> tuple[str, str]:
    """(family, domain) of a clip; see the module docstring. FaceForensics++ is two domains, c23 and c40: a fake
    is judged against originals of its own compression, so compression alone can't separate them."""
    dataset = (row or {}).get("dataset", "")
    if root == "dataset_clips":
        if "DFDC" in dataset or "DeepFakeDetection" in dataset:
            return ("real" if label == 0 else "DFDC"), "dfd+dfdc"
        domain = "ff++ c40" if "c40" in dataset else "ff++ c23"
        if label == 0:
            return "real", domain
        if domain == "ff++ c40":
            return "FF++ c40", domain
        for method in FFPP_METHODS:
            if source.endswith(method):
                return f"FF++ c23 {method}", domain
        return "FF++ c23 other", domain
    if root == "train":
        return ("real" if label == 0 else source.replace("faceswap", "face swap")), "train"
    return "real", root


Unit = tuple[Clip, str, int, str, str]  # (clip, variant, label, family, domain)


def family_aucs(units: list[Unit], scores: np.ndarray) -> dict[str, float]:
    labels = np.array([u[2] for u in units])
    fams = np.array([u[3] for u in units])
    domains = np.array([u[4] for u in units])
    roots = np.array([u[0].root for u in units])
    variants = np.array([u[1] for u in units])
    clean = variants == "clean"
    out: dict[str, float] = {}
    ds = clean & (roots == "dataset_clips")
    out["dataset-style"] = roc_auc(labels[ds], scores[ds])
    out["all clips"] = roc_auc(labels[clean], scores[clean])
    real_clean = clean & (labels == 0)
    c23 = clean & (domains == "ff++ c23")
    out["FF++ c23"] = roc_auc(labels[c23], scores[c23])
    for fam in sorted(set(fams[labels == 1])):
        fakes = fams == fam
        if fam == "self-blend":
            reals = real_clean
        else:
            domain = domains[fakes][0]
            reals = real_clean & (domains == domain)
        sel = fakes | reals
        out[fam] = roc_auc(labels[sel], scores[sel])
    return out
