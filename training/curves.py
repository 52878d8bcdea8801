"""Learning curves of ``training.folds`` runs: train loss and held-out AUC per step, one line per fold (dashed:
the starting checkpoint on the same held-out clips).

``python -m training.curves --folds-dir runs/r3 --out docs/model_card/learning_curves.png``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_curves"]

PANELS = ("dataset-style", "FF++ c23", "self-blend")


def _losses(folds_dir: Path, name: str) -> list[float]:
    path = folds_dir / f"{name}.losses.json"
    if path.exists():
        return list(json.loads(path.read_text()))
    state = folds_dir / f"{name}.pt.state.pt"  # a fold still training
    if state.exists():
        import torch

        return list(torch.load(state, map_location="cpu", weights_only=False)["losses"])
    return []


def plot_curves(folds_dir: Path, out: Path, smooth: int = 25) -> Path:
    """A PNG: the smoothed train loss, then the held-out AUC of each ``PANELS`` family, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = sorted(folds_dir.glob("*.curve.jsonl"))
    fig, axes = plt.subplots(1, 1 + len(PANELS), figsize=(4.2 * (1 + len(PANELS)), 3.6))
    for path in curves:
        name = path.name.split(".")[0]
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        losses = _losses(folds_dir, name)
        if len(losses) >= smooth:
            kernel = np.ones(smooth) / smooth
            axes[0].plot(np.arange(smooth, len(losses) + 1), np.convolve(losses, kernel, "valid"), label=name)
        for ax, family in zip(axes[1:], PANELS, strict=True):
            points = [
                (e["step"], e["auc"][family])
                for e in entries
                if e.get("model") != "baseline" and np.isfinite(e["auc"].get(family, np.nan))
            ]
            if points:
                (line,) = ax.plot(*zip(*points, strict=True), marker="o", label=name)
                for e in entries:  # the checkpoint it started from, on the same held-out clips
                    if e.get("model") == "baseline" and np.isfinite(e["auc"].get(family, np.nan)):
                        ax.axhline(e["auc"][family], color=line.get_color(), linestyle="--", linewidth=0.8)
    axes[0].set_title(f"train loss ({smooth}-step mean)")
    for ax, family in zip(axes[1:], PANELS, strict=True):
        ax.set_title(f"held-out AUC: {family}")
        ax.set_ylim(0.4, 1.0)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.curves", description=__doc__.split("\n\n")[0])
    p.add_argument("--folds-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("docs/model_card/learning_curves.png"))
    args = p.parse_args(argv)
    print(plot_curves(args.folds_dir, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
