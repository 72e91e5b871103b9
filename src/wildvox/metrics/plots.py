"""DET curves on normal-deviate (probit) axes and confusion-matrix images.

Uses matplotlib's object API with the Agg canvas (no pyplot, no global state); matplotlib is an
optional dependency imported on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from wildvox.metrics.verification import compute_eer, det_curve
from wildvox.registry import optional_import

logger = logging.getLogger(__name__)

__all__ = ["det_points", "plot_det", "probit"]

_TICKS = [0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8]
_CLIP = 1e-5


def probit(p: ArrayLike) -> np.ndarray:
    """Normal deviate of probabilities, clipped to [1e-5, 1 - 1e-5] so 0 and 1 stay finite."""
    return np.asarray(norm.ppf(np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1 - _CLIP)))


def det_points(
    scores: ArrayLike, labels: ArrayLike, max_points: int = 4000
) -> tuple[np.ndarray, np.ndarray]:
    """Probit DET coordinates ``(x = probit(P_fa), y = probit(P_miss))``, at most ``max_points``.

    Long curves are thinned to operating points evenly spaced along the curve's index; the
    first and last points are always kept.
    """
    fpr, fnr, _ = det_curve(scores, labels)
    if fpr.size > max_points:
        keep = np.unique(np.linspace(0, fpr.size - 1, max_points).round().astype(np.int64))
        fpr, fnr = fpr[keep], fnr[keep]
    return probit(fpr), probit(fnr)


def _matplotlib() -> Any:
    return optional_import("matplotlib.figure", "plots", "plotting").Figure


def _tick_labels(ticks: Sequence[float]) -> list[str]:
    return [f"{100 * t:g}" for t in ticks]


def plot_det(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | Path,
    title: str | None = None,
    limits: tuple[float, float] = (0.001, 0.6),
) -> Path:
    """Draw DET curves of several systems in one figure and save it (PNG, PDF or SVG).

    Args:
        curves: system name -> ``(scores (N,), labels (N,))``; the legend shows each EER.
        path: output file; the format follows the suffix.
        title: optional figure title.
        limits: axis range as error-rate fractions.

    Returns:
        The written path.
    """
    if not curves:
        raise ValueError("plot_det needs at least one curve")
    figure = _matplotlib()
    fig = figure(figsize=(5.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    for name, (scores, labels) in curves.items():
        x, y = det_points(scores, labels)
        eer, _ = compute_eer(scores, labels)
        ax.plot(x, y, label=f"{name} (EER {100 * eer:.2f}%)")
    lo, hi = probit(limits[0]), probit(limits[1])
    ax.plot([lo, hi], [lo, hi], color="0.7", linewidth=0.8, linestyle="--")
    ticks = [t for t in _TICKS if limits[0] <= t <= limits[1]]
    ax.set_xticks(probit(ticks), _tick_labels(ticks))
    ax.set_yticks(probit(ticks), _tick_labels(ticks))
    ax.set_xlim(float(lo), float(hi))
    ax.set_ylim(float(lo), float(hi))
    ax.set_xlabel("False alarm rate (%)")
    ax.set_ylabel("Miss rate (%)")
    ax.grid(True, linewidth=0.4, alpha=0.6)
    ax.legend(loc="upper right", fontsize="small")
    if title:
        ax.set_title(title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    logger.info("wrote DET plot of %d system(s) to %s", len(curves), out)
    return out
