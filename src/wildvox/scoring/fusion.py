"""Score-level fusion of several systems.

IDLab (VoxSRC-20) calibrates each system on the calibration trials, averages the calibrated
scores (:func:`average_fusion`) and applies quality-aware calibration to the mean;
:class:`LogisticFusion` instead learns one weight per system (plus optional quality measures)
with the same prior-weighted logistic objective as
:class:`~wildvox.scoring.calibration.LogisticCalibrator`.

>>> import numpy as np
>>> average_fusion([np.array([1.0, -2.0]), np.array([3.0, 0.0])]).tolist()
[2.0, -1.0]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from wildvox.scoring.calibration import LogisticCalibrator

logger = logging.getLogger(__name__)

__all__ = ["LogisticFusion", "average_fusion", "stack_systems"]


def stack_systems(systems: Sequence[ArrayLike] | np.ndarray) -> np.ndarray:
    """Scores of S systems on the same N trials as an (N, S) float64 matrix.

    Args:
        systems: a list of S arrays of shape (N,), or an (N, S) array.
    """
    if isinstance(systems, np.ndarray):
        if systems.ndim != 2:
            raise ValueError(f"system score matrix must be (N, S), got shape {systems.shape}")
        m = systems.astype(np.float64)
    else:
        if len(systems) == 0:
            raise ValueError("no systems to fuse")
        arrays = [np.asarray(s, dtype=np.float64) for s in systems]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1 or arrays[0].ndim != 1:
            raise ValueError(
                f"every system must score the same N trials as (N,), got {sorted(shapes)}"
            )
        m = np.column_stack(arrays)
    if m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"empty system score matrix {m.shape}")
    bad = ~np.isfinite(m)
    if bad.any():
        per = bad.sum(axis=0)
        raise ValueError(
            "system scores contain NaN/inf: "
            + ", ".join(f"system {i}: {int(c)}" for i, c in enumerate(per) if c)
        )
    return m


def average_fusion(llrs: Sequence[ArrayLike] | np.ndarray) -> np.ndarray:
    """Mean of S systems' (calibrated) scores, (N,)."""
    return stack_systems(llrs).mean(axis=1)


class LogisticFusion:
    """Linear fusion ``llr = sum_s w_s * score_s [+ sum_q v_q * quality_q] + b``."""

    def __init__(self, p_target: float = 0.05, l2: float = 0.0) -> None:
        self.calibrator = LogisticCalibrator(p_target=p_target, l2=l2)
        self.n_systems: int | None = None

    def _features(
        self, systems: Sequence[ArrayLike] | np.ndarray, quality: ArrayLike | None
    ) -> np.ndarray:
        m = stack_systems(systems)
        if quality is None:
            return m
        q = np.asarray(quality, dtype=np.float64)
        if q.ndim == 1:
            q = q[:, None]
        if q.ndim != 2 or q.shape[0] != m.shape[0]:
            raise ValueError(f"quality must be ({m.shape[0]}, Q), got shape {q.shape}")
        return np.hstack([m, q])

    def fit(
        self,
        systems: Sequence[ArrayLike] | np.ndarray,
        labels: ArrayLike,
        quality: ArrayLike | None = None,
    ) -> LogisticFusion:
        """Fit on calibration trials.

        Args:
            systems: S arrays (N,) or an (N, S) matrix of scores.
            labels: (N,) 1 target / 0 non-target.
            quality: optional (N, Q) quality measures (e.g. from :mod:`.quality`).
        """
        feats = self._features(systems, quality)
        self.n_systems = stack_systems(systems).shape[1]
        self.calibrator.fit(feats, labels)
        return self

    @property
    def weights(self) -> np.ndarray | None:
        """(S + Q,) fusion weights, systems first."""
        return self.calibrator.weights

    @property
    def bias(self) -> float | None:
        return self.calibrator.bias

    def transform(
        self, systems: Sequence[ArrayLike] | np.ndarray, quality: ArrayLike | None = None
    ) -> np.ndarray:
        """Fused LLRs (N,)."""
        feats = self._features(systems, quality)
        if self.n_systems is not None and stack_systems(systems).shape[1] != self.n_systems:
            raise ValueError(f"fusion was fitted on {self.n_systems} systems")
        return self.calibrator.transform(feats)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe parameters."""
        d = self.calibrator.to_dict()
        return {"kind": "logistic_fusion", "n_systems": self.n_systems, "calibrator": d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogisticFusion:
        """Rebuild from :meth:`to_dict` output."""
        if set(d) != {"kind", "n_systems", "calibrator"} or d["kind"] != "logistic_fusion":
            raise ValueError(f"not a logistic fusion: keys {sorted(d)}")
        cal = LogisticCalibrator.from_dict(d["calibrator"])
        fusion = cls(p_target=cal.p_target, l2=cal.l2)
        fusion.calibrator = cal
        fusion.n_systems = int(d["n_systems"])
        return fusion
