"""Quality measure functions (QMFs) for quality-aware calibration (IDLab VoxSRC-20, sec. 1.3).

A QMF turns one value per side of a trial into two symmetric trial features, the minimum and
the maximum of the enrollment and test values, so that swapping the sides gives the same
features. IDLab uses (i) the amount of speech found by a VAD and (ii) the mean of the top-100
imposter scores against the AS-Norm cohort, by inner product.

The speech amount comes from :func:`wildvox.audio.vad.speech_duration`.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from wildvox.scoring.asnorm import cohort_stats

logger = logging.getLogger(__name__)

MIN_DURATION = 0.1  # seconds: the floor of the log-duration measure

__all__ = ["duration_quality", "imposter_mean_quality", "symmetric_quality"]


def symmetric_quality(q_enroll: ArrayLike, q_test: ArrayLike) -> np.ndarray:
    """``[min(q_e, q_t), max(q_e, q_t)]`` per trial: (N,) and (N,) -> (N, 2) float64."""
    qe = np.asarray(q_enroll, dtype=np.float64)
    qt = np.asarray(q_test, dtype=np.float64)
    if qe.ndim != 1 or qe.shape != qt.shape:
        raise ValueError(f"quality values must be (N,) and (N,), got {qe.shape} and {qt.shape}")
    if not (np.isfinite(qe).all() and np.isfinite(qt).all()):
        raise ValueError("quality values contain NaN or infinite entries")
    return np.column_stack([np.minimum(qe, qt), np.maximum(qe, qt)])


def duration_quality(
    dur_enroll: ArrayLike,
    dur_test: ArrayLike,
    lo: float | None = None,
    hi: float | None = None,
) -> np.ndarray:
    """Log-duration QMF: ``[log min(d_e, d_t), log max(d_e, d_t)]``, (N, 2).

    Args:
        dur_enroll: (N,) enrollment durations (or speech durations) in seconds, >= 0.
        dur_test: (N,) test durations in seconds, >= 0.
        lo: durations are raised to ``lo`` seconds (default 0.1 s, so 0 s stays finite).
        hi: durations are capped at ``hi`` seconds (default: no cap). A calibration clips to
            the range it was fitted on, so it never extrapolates.

    >>> duration_quality([0.0, 4.0], [1.0, 100.0], hi=10.0).round(3)
    array([[-2.303,  0.   ],
           [ 1.386,  2.303]])
    """
    de = np.asarray(dur_enroll, dtype=np.float64)
    dt = np.asarray(dur_test, dtype=np.float64)
    if np.any(~(de >= 0)) or np.any(~(dt >= 0)):
        raise ValueError("durations must be >= 0 seconds (no NaN or negatives)")
    low = MIN_DURATION if lo is None else max(lo, MIN_DURATION)
    high = np.inf if hi is None else max(hi, low)
    return symmetric_quality(np.log(np.clip(de, low, high)), np.log(np.clip(dt, low, high)))


def imposter_mean_quality(
    enroll_emb: ArrayLike,
    test_emb: ArrayLike,
    cohort: ArrayLike,
    top_n: int | None = 100,
    metric: Literal["cosine", "dot"] = "cosine",
    *,
    enroll_index: ArrayLike | None = None,
    test_index: ArrayLike | None = None,
    chunk_size: int = 4096,
) -> np.ndarray:
    """Imposter-mean QMF: min/max over the two sides of the mean top-N cohort score, (N, 2).

    Args:
        enroll_emb: (N, D) per trial, or (E, D) with ``enroll_index`` (N,).
        test_emb: (N, D) per trial, or (T, D) with ``test_index`` (N,).
        cohort: (C, D) imposter cohort (the AS-Norm cohort).
        top_n: cohort entries averaged per side; None averages the whole cohort.
        metric: ``"cosine"`` or ``"dot"`` (inner product; IDLab's best with top-100).
        chunk_size: rows scored against the cohort at once.
    """
    means = []
    for emb, index, name in ((enroll_emb, enroll_index, "enroll"), (test_emb, test_index, "test")):
        e = np.asarray(emb)
        if e.ndim != 2:
            raise ValueError(f"{name}_emb must be (N, D), got shape {e.shape}")
        mean, _ = cohort_stats(e, cohort, top_n, chunk_size, metric=metric)
        if index is not None:
            idx = np.asarray(index)
            if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
                raise ValueError(f"{name}_index must be 1-D integers, got {idx.shape} {idx.dtype}")
            if idx.size and (idx.min() < 0 or idx.max() >= e.shape[0]):
                raise ValueError(f"{name}_index points outside the {e.shape[0]} rows")
            mean = mean[idx]
        means.append(mean)
    if means[0].shape != means[1].shape:
        raise ValueError(
            f"enroll side has {means[0].shape[0]} trials, test side {means[1].shape[0]}"
        )
    return symmetric_quality(means[0], means[1])
